#!/usr/bin/env python3
"""Start a multi-process aya-t5x run on this machine: N processes, one coordinator.

    python launch/local.py --num_processes 2 --cpu_devices_per_process 4 -- \
      train --gin_file models/mt5_tiny.gin --gin_file runs/finetune.gin ...
    python launch/local.py --num_processes 2 --gpus_per_process 4 -- train ...

Each process runs `python -m aya_t5x.cli ARGS --coordinator_address localhost:PORT
--num_processes N --process_id I` with its share of the devices: simulated CPU devices
(JAX_PLATFORMS=cpu), or GPUs through CUDA_VISIBLE_DEVICES. This is how multi-host
training is tested on one machine, and how one machine's GPUs can be run as separate
processes. Output lines carry the process index; when one process fails the others are
stopped and the first failure's exit status is returned. `--dry_run` prints the commands.

Standard library only, so that it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("localhost", 0))
    return probe.getsockname()[1]


def process_commands(args: argparse.Namespace) -> list[tuple[dict[str, str], list[str]]]:
  """(environment additions, argv) of every process."""
  port = args.port or free_port()
  commands = []
  for index in range(args.num_processes):
    env = {"PYTHONUNBUFFERED": "1"}
    if args.cpu_devices_per_process:
      env["JAX_PLATFORMS"] = "cpu"
      env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count="
                          f"{args.cpu_devices_per_process}")
    if args.gpus_per_process:
      first = index * args.gpus_per_process
      env["CUDA_VISIBLE_DEVICES"] = ",".join(
          str(first + i) for i in range(args.gpus_per_process))
    argv = [args.python, "-m", "aya_t5x.cli", *args.command,
            "--coordinator_address", f"localhost:{port}",
            "--num_processes", str(args.num_processes), "--process_id", str(index)]
    commands.append((env, argv))
  return commands


def _relay(stream, index: int) -> None:
  for line in stream:
    sys.stdout.write(f"[process {index}] {line}")
    sys.stdout.flush()


def run(commands: list[tuple[dict[str, str], list[str]]], grace_s: float = 30.0) -> int:
  processes, relays = [], []
  for index, (env, argv) in enumerate(commands):
    process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    relays.append(threading.Thread(target=_relay, args=(process.stdout, index), daemon=True))
    relays[-1].start()
    processes.append(process)
  status = 0
  try:
    while any(p.poll() is None for p in processes):
      failed = [p for p in processes if p.returncode not in (None, 0)]
      if failed:
        status = failed[0].returncode
        break
      time.sleep(0.2)
  except KeyboardInterrupt:
    status = 130
  # A process whose peer died would wait for it until jax's timeouts: stop it now
  # (SIGTERM first, which makes the trainer save and exit).
  for process in processes:
    if process.poll() is None:
      process.send_signal(signal.SIGTERM)
  deadline = time.time() + grace_s
  for process in processes:
    try:
      process.wait(timeout=max(0.1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()
  for relay in relays:  # the last lines of each process
    relay.join(timeout=5)
  return status or next((p.returncode for p in processes if p.returncode), 0)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--num_processes", type=int, required=True)
  devices = parser.add_mutually_exclusive_group()
  devices.add_argument("--cpu_devices_per_process", type=int,
                       help="simulated CPU devices per process (JAX_PLATFORMS=cpu)")
  devices.add_argument("--gpus_per_process", type=int,
                       help="GPUs per process, assigned in order through CUDA_VISIBLE_DEVICES")
  parser.add_argument("--port", type=int, help="coordinator port (default: a free one)")
  parser.add_argument("--python", default=sys.executable, help="interpreter with aya_t5x")
  parser.add_argument("--dry_run", action="store_true", help="print the commands only")
  parser.add_argument("command", nargs=argparse.REMAINDER,
                      help="after --: the aya-t5x subcommand and its flags")
  args = parser.parse_args(argv)
  args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if args.num_processes < 1 or not args.command:
    parser.error("give --num_processes >= 1 and, after --, the aya-t5x command to run "
                 "(e.g. -- train --gin_file ...)")
  commands = process_commands(args)
  if args.dry_run:
    for env, command in commands:
      print(" ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()),
                      shlex.join(command)]))
    return 0
  return run(commands)


if __name__ == "__main__":
  sys.exit(main())
