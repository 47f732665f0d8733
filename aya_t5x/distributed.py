"""Multi-host runs: joining the cluster (`jax.distributed`), and checking the hosts agree.

A multi-host run starts the same command on every host. On TPU VM pods and on clusters
jax recognises (SLURM, Open MPI) `--multihost` finds the coordinator, the process count
and this process's index by itself; elsewhere (GPU clusters, several processes on one
machine) they are given explicitly:

    aya-t5x train --coordinator_address node0:1234 --num_processes 8 --process_id $RANK ...

Joining is bounded in time: a process that cannot reach the coordinator stops after
`--initialization_timeout` seconds with the address in the message. Once joined, the
trainer checks that every host runs the same configuration with the same seed and stops
with a message naming the first items that differ.

jax itself loads only when a process joins: the CLI builds its flags from this module.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import re
import signal
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

DEFAULT_TIMEOUT_S = 300
DEFAULT_HEARTBEAT_TIMEOUT_S = 100  # jax's own default


class ClusterError(ValueError):
  """This process cannot join the run, or the hosts disagree; the message says why."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterConfig:
  """How this process joins a multi-host run (nothing set: a single-process run).

  Attributes:
    multihost: let jax find the cluster (TPU VM pods, SLURM, Open MPI).
    coordinator_address: 'host:port' of process 0's coordination service.
    num_processes: processes in the run (one per host, usually).
    process_id: this process's index, 0 on the coordinator's host.
    timeout_s: how long to wait for the coordinator and the other processes.
    heartbeat_timeout_s: how long a process may go silent before the coordination
      service declares it lost and aborts every other process of the run.
  """

  multihost: bool = False
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  timeout_s: int = DEFAULT_TIMEOUT_S
  heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_TIMEOUT_S

  @property
  def enabled(self) -> bool:
    return self.multihost or self.coordinator_address is not None


def add_flags(parser: argparse.ArgumentParser) -> None:
  """The multi-host flags of `aya-t5x train`."""
  group = parser.add_argument_group("multi-host runs (the same command on every host)")
  group.add_argument("--multihost", action="store_true",
                     help="join a multi-host run found by jax (TPU VM pods, SLURM, Open MPI)")
  group.add_argument("--coordinator_address", metavar="HOST:PORT",
                     help="process 0's address; with --num_processes and --process_id")
  group.add_argument("--num_processes", type=int, metavar="N")
  group.add_argument("--process_id", type=int, metavar="I")
  group.add_argument("--initialization_timeout", type=int, default=DEFAULT_TIMEOUT_S,
                     metavar="SECONDS",
                     help="stop if the coordinator or another process is not there by then")
  group.add_argument("--heartbeat_timeout", type=int, default=DEFAULT_HEARTBEAT_TIMEOUT_S,
                     metavar="SECONDS",
                     help="a process silent this long counts as lost, and jax aborts the "
                          "others (a peer that closes its connections is seen sooner, at "
                          "the next collective on CPU)")


def config_from_args(args: argparse.Namespace) -> ClusterConfig:
  for flag in ("initialization_timeout", "heartbeat_timeout"):
    if getattr(args, flag) < 1:
      raise ClusterError(f"--{flag} {getattr(args, flag)} must be at least 1 (seconds).")
  return ClusterConfig(multihost=args.multihost, coordinator_address=args.coordinator_address,
                       num_processes=args.num_processes, process_id=args.process_id,
                       timeout_s=args.initialization_timeout,
                       heartbeat_timeout_s=args.heartbeat_timeout)


def _split_address(address: str) -> tuple[str, int]:
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise ClusterError(f"--coordinator_address {address!r} must be HOST:PORT, for example "
                       "node0:1234.")
  return host.strip("[]"), int(port)


def _wait_for_coordinator(address: str, deadline: float, timeout_s: int) -> None:
  """Returns once `address` accepts TCP connections; raises naming it at `deadline`.

  jax would abort the process without a Python error when the coordinator never
  answers, so the address is probed first.
  """
  host, port = _split_address(address)
  while True:
    try:
      wait = max(0.1, min(2.0, deadline - time.time()))
      with socket.create_connection((host, port), timeout=wait):
        return
    except OSError as e:
      if time.time() >= deadline:
        raise ClusterError(
            f"Could not reach the coordinator at {address} within {timeout_s} s ({e}). Start "
            "process 0 on that host, check the host name and port, and that the port is "
            "open between the hosts.") from e
      time.sleep(0.25)


def _check_port_free(address: str) -> None:
  _, port = _split_address(address)
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    # A port left in TIME_WAIT by an earlier run is usable; one that is listening is not.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("", port))
    except OSError as e:
      raise ClusterError(f"Process 0 cannot serve the coordinator at {address}: port {port} "
                         f"is in use on this host ({e}); choose another port.") from e


def initialize(cluster: ClusterConfig) -> None:
  """Joins the multi-host run `cluster` describes; does nothing for a single process."""
  if not cluster.enabled:
    return
  import jax

  deadline = time.time() + cluster.timeout_s
  if cluster.coordinator_address is None:  # --multihost: jax finds everything
    try:
      jax.distributed.initialize(initialization_timeout=cluster.timeout_s,
                                 heartbeat_timeout_seconds=cluster.heartbeat_timeout_s)
    except ValueError as e:
      raise ClusterError(
          f"--multihost found no cluster to join ({e}): on a TPU VM pod run the command on "
          "every host; elsewhere pass --coordinator_address, --num_processes and "
          "--process_id.") from e
    return
  if cluster.num_processes is None or cluster.process_id is None:
    raise ClusterError("--coordinator_address needs --num_processes and --process_id too.")
  if not 0 <= cluster.process_id < cluster.num_processes:
    raise ClusterError(f"--process_id {cluster.process_id} is not in 0 ... "
                       f"{cluster.num_processes - 1} (--num_processes "
                       f"{cluster.num_processes}).")
  if cluster.process_id == 0:
    _check_port_free(cluster.coordinator_address)
  else:
    _wait_for_coordinator(cluster.coordinator_address, deadline, cluster.timeout_s)
  # If a process never arrives, jax ends this one from C++ once the timeout passes; this
  # line is what tells the reader which run it was waiting for.
  print(f"aya-t5x: process {cluster.process_id} of {cluster.num_processes} joining via "
        f"{cluster.coordinator_address} (waiting up to {cluster.timeout_s} s for the others)",
        file=sys.stderr, flush=True)
  jax.distributed.initialize(
      cluster.coordinator_address, cluster.num_processes, cluster.process_id,
      initialization_timeout=max(1, int(deadline - time.time())),
      heartbeat_timeout_seconds=cluster.heartbeat_timeout_s)


# What gloo says when a peer process is gone (killed, crashed, its host lost).
_LOST_PEER_TEXTS = ("Connection reset by peer", "Connection closed by peer", "Broken pipe",
                    "Socket closed", "Connection refused")


def lost_peer(error: BaseException) -> str | None:
  """The line to print when `error` is a collective that failed because a process is gone.

  None for any other error. With two processes the lost one is the other; with more,
  gloo names only its address.
  """
  import jax

  text = str(error)
  if "Gloo" not in text or not any(t in text for t in _LOST_PEER_TEXTS):
    return None
  me, count = jax.process_index(), jax.process_count()
  lost = f"process {1 - me}" if count == 2 else "another process"
  detail = text.splitlines()[0].split("] ")[-1]
  return (f"process {me} of {count} lost {lost} of the run ({detail}) and stopped. Restart "
          "every process with the same command: the run resumes from its last checkpoint "
          "with the batches it would have seen.")


def is_first_process() -> bool:
  """Whether this process logs for the run (process 0; a single process is first)."""
  import jax

  return jax.process_index() == 0


# ------------------------------------------------------------------------ agreement


def describe(**arguments: Any) -> dict[str, str]:
  """Named items of a run's arguments; dataclasses are expanded field by field."""
  items: dict[str, str] = {}

  def add(name: str, value: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
      for field in dataclasses.fields(value):
        if field.repr:
          add(f"{name}.{field.name}", getattr(value, field.name))
    else:
      # Default reprs carry a memory address, which differs between processes.
      items[name] = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))

  for name, value in arguments.items():
    add(name, value)
  return items


def gather_text(text: str) -> list[str]:
  """Every process's `text`, in process order (a collective: all processes must call)."""
  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  if jax.process_count() == 1:
    return [text]
  data = np.frombuffer(text.encode("utf-8"), np.uint8)
  lengths = multihost_utils.process_allgather(np.asarray([data.size], np.int64))
  padded = np.zeros(int(lengths.max()), np.uint8)
  padded[:data.size] = data
  gathered = multihost_utils.process_allgather(padded)
  return [bytes(row[:int(n)]).decode("utf-8") for row, (n,) in zip(gathered, lengths)]


def _difference(name: str, first: str | None, other: str | None, host: int) -> str:
  if first is not None and other is not None and "\n" in first + other:
    changed = [line for line in difflib.unified_diff(first.splitlines(), other.splitlines(),
                                                     lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    return f"{name} (host 0 '-', host {host} '+'): " + " | ".join(changed[:6])
  return f"{name}: {first if first is not None else '(missing)'} on host 0, " \
         f"{other if other is not None else '(missing)'} on host {host}"


def disagreements(everyone: list[Mapping[str, str]]) -> list[str]:
  """One line per item whose value on a host differs from host 0's (hosts in order)."""
  first, lines = everyone[0], []
  for host, other in enumerate(everyone[1:], start=1):
    for name in sorted(set(first) | set(other)):
      if first.get(name) != other.get(name):
        lines.append(_difference(name, first.get(name), other.get(name), host))
  return lines


def check_hosts_agree(items: Mapping[str, str], *, limit: int = 5) -> None:
  """Raises `ClusterError` naming the items whose values differ between hosts.

  Every host sees every host's items and so computes the same message: all of them stop,
  none waits for the others in a collective. Does nothing in a single-process run.
  """
  differences = disagreements([json.loads(text) for text in gather_text(json.dumps(dict(items)))])
  if differences:
    shown = "\n  ".join(differences[:limit])
    more = f"\n  ... and {len(differences) - limit} more" if len(differences) > limit else ""
    raise ClusterError("The hosts of this run disagree on its configuration; start every "
                       f"host with the same command and files:\n  {shown}{more}")


@contextlib.contextmanager
def preemption_notice():
  """Yields `requested(step)`: whether to save and stop after `step` (SIGTERM arrived).

  With several processes jax's preemption service hears SIGTERM on any host and picks a
  step at which `requested` is True on every host together, so that all of them save
  that step and none waits in a collective for one that stopped. Call it every step.
  """
  import jax

  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    yield multihost_utils.reached_preemption_sync_point
    return
  flag = {"requested": False}

  def handler(signum, frame):
    flag["requested"] = True

  def requested(step: int) -> bool:
    return flag["requested"]

  try:
    previous = signal.signal(signal.SIGTERM, handler)
  except ValueError:  # not the main thread: no signal handling possible
    yield requested
    return
  try:
    yield requested
  finally:
    signal.signal(signal.SIGTERM, previous)
