"""Kill soak: SIGKILL a training run at random moments, resume each time, compare bit for bit.

The harness is `aya_t5x.testing.kill_soak` (its docstring says what each kill does and
what is checked); this script runs it at length and prints one JSON line.

    python benchmarks/soak.py                    # 20 kills: the figures in BENCHMARKS.md
    python benchmarks/soak.py --kills 2 --steps 40 --max_delay 0.3   # the tests' short form
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from aya_t5x.testing import kill_soak


def main() -> None:
  for name, value in kill_soak.ENV.items():  # this process's checks read arrays with jax
    os.environ.setdefault(name, value)
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--steps", type=int, default=200, help="the run's TRAIN_STEPS")
  parser.add_argument("--every", type=int, default=2, help="save every N steps")
  parser.add_argument("--keep", type=int, default=3, help="checkpoints kept")
  parser.add_argument("--max_delay", type=float, default=1.0,
                      help="'training' kills land 0 to this many seconds after a step")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", help="where the runs go (default: a temporary folder)")
  args = parser.parse_args()
  workdir = Path(args.workdir or tempfile.mkdtemp(prefix="aya_t5x_soak_"))
  figures = kill_soak.soak(workdir, kills=args.kills, steps=args.steps, every=args.every,
                 keep=args.keep, max_delay=args.max_delay, seed=args.seed)
  print(json.dumps({"benchmark": "soak", **figures, "steps": args.steps,
                    "every": args.every, "keep": args.keep, "seed": args.seed,
                    "machine": platform.machine(), "cpus": os.cpu_count(),
                    "workdir": str(workdir)}))


if __name__ == "__main__":
  main()
