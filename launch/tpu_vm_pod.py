#!/usr/bin/env python3
"""Run `aya-t5x train` on every host of a Cloud TPU VM slice (a v4-128 has 16 hosts).

    python launch/tpu_vm_pod.py --tpu aya-v4-128 --zone us-central2-b \
      --model_dir gs://my-bucket/aya_xxl --copy --setup --dry_run -- \
      --gin_file models/mt5_xxl.gin --gin_file runs/aya_recipe.gin \
      --gin_file mixtures/translation_heavy.gin --gin_file topologies/xxl_v4_128.gin

Every step is one `gcloud compute tpus tpu-vm` command over all workers; `--dry_run`
prints them exactly as they would run (copy them into a terminal to run them by hand):

  --copy   packs this checkout's committed files (git archive) and unpacks them into
           WORKDIR on every host;
  --setup  creates WORKDIR/.venv there and installs aya_t5x with the pinned dependency set
           and libtpu (`pip install -c requirements/constraints.txt -e '.[tpu]'`);
  always   starts `aya-t5x train --multihost ARGS --gin.MODEL_DIR=...` on every host at
           once: jax finds the pod's coordinator and each host's index from the TPU VM
           metadata. With --background it runs under nohup, writing WORKDIR/train.log on
           each host, and the command returns at once.

The model directory must be a bucket path that every host can write (checkpoints are
written by all hosts together; metrics by the first). Standard library only: this runs
on a workstation that has gcloud, not aya_t5x.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHIVE = "aya_t5x.tar.gz"
# Every host's environment: unbuffered logs, and no TensorFlow chatter (TensorFlow only
# reads data here; the TPU belongs to jax).
BASE_ENV = {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}


_PLAIN = re.compile(r"[\w@%+=:,./-]+")


def _quote(word: str) -> str:
  """Shell quoting that prefers double quotes around gin's single-quoted strings."""
  if _PLAIN.fullmatch(word):
    return word
  if not re.search(r'["$`\\!]', word):
    return f'"{word}"'
  return shlex.quote(word)


def display(command: list[str]) -> str:
  """`command` as a line to paste into bash; the remote command stays readable."""
  words = []
  for word in command:
    if word.startswith("--command="):
      remote = word.removeprefix("--command=")
      words.append('--command="' + re.sub(r'(["$`\\])', r"\\\1", remote) + '"')
    else:
      words.append(_quote(word))
  return " ".join(words)


def _gcloud(args: argparse.Namespace, verb: str, *rest: str) -> list[str]:
  command = ["gcloud", "compute", "tpus", "tpu-vm", verb, *rest, f"--zone={args.zone}",
             "--worker=all"]
  if args.project:
    command.append(f"--project={args.project}")
  return command


def _ssh(args: argparse.Namespace, remote: str) -> list[str]:
  return _gcloud(args, "ssh", args.tpu, f"--command={remote}")


def commands(args: argparse.Namespace) -> list[list[str]]:
  """The local commands that copy, set up and start the run, in order."""
  workdir = args.workdir
  steps = []
  if args.copy:
    steps.append(["git", "-C", str(REPO), "archive", "--format=tar.gz", "-o",
                  f"/tmp/{ARCHIVE}", "HEAD"])
    steps.append(_gcloud(args, "scp", f"/tmp/{ARCHIVE}", f"{args.tpu}:{ARCHIVE}"))
    steps.append(_ssh(args, f"mkdir -p {workdir} && tar -xzf {ARCHIVE} -C {workdir}"))
  if args.setup:
    steps.append(_ssh(args, (
        f"cd {workdir} && python3 -m venv .venv && .venv/bin/pip install --quiet --upgrade "
        "pip && .venv/bin/pip install --quiet -c requirements/constraints.txt -e '.[tpu]'")))
  env = {**BASE_ENV, **dict(item.split("=", 1) for item in args.env)}
  train = " ".join(_quote(w) for w in [".venv/bin/aya-t5x", "train", "--multihost",
                                        *args.train_args, f"--gin.MODEL_DIR='{args.model_dir}'"])
  exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
  remote = f"cd {workdir} && {exports} {train}"
  if args.background:
    remote = (f"cd {workdir} && nohup env {exports} {train} > train.log 2>&1 < /dev/null & "
              f"echo started on $(hostname), log: {workdir}/train.log")
  steps.append(_ssh(args, remote))
  return steps


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tpu", required=True, help="the TPU VM's name")
  parser.add_argument("--zone", required=True, help="its zone, e.g. us-central2-b")
  parser.add_argument("--project", help="its project (default: gcloud's)")
  parser.add_argument("--model_dir", required=True,
                      help="gs:// path for checkpoints and metrics (MODEL_DIR)")
  parser.add_argument("--workdir", default="aya_t5x",
                      help="the checkout on each host, relative to the home folder")
  parser.add_argument("--copy", action="store_true", help="copy this checkout to the hosts")
  parser.add_argument("--setup", action="store_true", help="install aya_t5x on the hosts")
  parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                      help="environment variable for the run (repeatable)")
  parser.add_argument("--background", action="store_true",
                      help="run under nohup, logging to WORKDIR/train.log on each host")
  parser.add_argument("--dry_run", action="store_true",
                      help="print the commands instead of running them")
  parser.add_argument("train_args", nargs=argparse.REMAINDER,
                      help="after --: the gin flags of `aya-t5x train`")
  args = parser.parse_args(argv)
  args.train_args = args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args
  if not args.model_dir.startswith("gs://"):
    parser.error(f"--model_dir {args.model_dir!r} must be a bucket path (gs://...): every "
                 "host writes its share of each checkpoint there.")
  bad_env = [item for item in args.env if "=" not in item]
  if bad_env:
    parser.error(f"--env takes NAME=VALUE, got {bad_env}")
  if not any(a == "--gin_file" or a.startswith("--gin_file=") for a in args.train_args):
    parser.error("give the run's gin files after --, e.g. -- --gin_file models/mt5_xxl.gin "
                 "--gin_file runs/aya_recipe.gin ...")
  for command in commands(args):
    if args.dry_run:
      print(display(command))
      continue
    result = subprocess.run(command, check=False)
    if result.returncode:
      print(f"failed ({result.returncode}): {shlex.join(command)}", file=sys.stderr)
      return result.returncode
  return 0


if __name__ == "__main__":
  sys.exit(main())
