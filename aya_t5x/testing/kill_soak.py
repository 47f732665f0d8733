"""The kill soak's harness: SIGKILL a training run at random moments, resume, compare.

Trains the tiny model on the fixture task (`aya_t5x.testing.tiny_runs.gin_args`) with
`aya-t5x train`, saving asynchronously every `every` steps and keeping `keep`, and kills
it with SIGKILL `kills` times, cycling through three kinds of moment:

* save: once the restarted run has finished a save of its own, as soon as the next save's
  temporary folder appears, after a random 0-30 ms;
* training: a random 0-`max_delay` s after the restarted run has finished a save;
* any: a random moment from the process's start (imports, restore and compilation too).

After every kill it records whether a save was under way (its unfinished temporary
folder is there) and checks that the step Orbax would resume from restores. Then one
last run finishes, and its final state (parameters, optimizer state, step, data
position) is compared bit for bit with an uninterrupted run's. `soak` returns the
figures; `benchmarks/soak.py` runs it at length, tests/test_faults.py in its short form.
The checks in this process read arrays with jax: call it with JAX_PLATFORMS=cpu set.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from aya_t5x.testing.tiny_runs import gin_args

MODES = ("save", "training", "save", "training", "any")
TMP_MARK = ".orbax-checkpoint-tmp"
# The same 8 simulated CPU devices in every run (FSDP over 8), and this process's checks.
ENV = {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
       "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0.2"}


def train_command(model_dir: Path, steps: int, every: int, keep: int) -> list[str]:
  """The tiny fixture run of the test suite (`tiny_runs.gin_args`), saving every `every`
  steps and keeping `keep`."""
  return [sys.executable, "-m", "aya_t5x.cli", "train", *gin_args(
      model_dir, steps, f"--gin.CheckpointConfig.every_steps={every}",
      f"--gin.CheckpointConfig.keep={keep}", "--gin.train.log_every=1")]


def start(command: list[str], log: Path) -> subprocess.Popen:
  # Restarts reuse the compiled step (the same executable: bits do not change).
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(log.parent / "jax_cache")
  env = {**os.environ, **ENV, "JAX_COMPILATION_CACHE_DIR": cache}
  with log.open("a") as out:
    return subprocess.Popen(command, cwd=log.parent, env=env, stdout=out,
                            stderr=subprocess.STDOUT)


def temporary_folders(model_dir: Path) -> list[str]:
  folder = model_dir / "checkpoints"
  return [p.name for p in folder.iterdir() if TMP_MARK in p.name] if folder.exists() else []


def committed(model_dir: Path) -> list[int]:
  """The finished steps (a run started now resumes from the newest)."""
  folder = model_dir / "checkpoints"
  return [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.exists() else []


def logged_steps(model_dir: Path) -> int:
  metrics = model_dir / "metrics.jsonl"
  return metrics.read_text().count("train/loss") if metrics.exists() else 0


def wait_for(condition, process: subprocess.Popen, timeout: float, poll: float) -> bool:
  """Polls `condition` until true (True), the process exits or `timeout` passes (False)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    if process.poll() is not None:
      return False
    time.sleep(poll)
  return False


def restore_latest(model_dir: Path) -> tuple[int | None, dict | None]:
  """(the step a resume would pick, its restored state and data) as Orbax lists them."""
  import orbax.checkpoint as ocp

  from aya_t5x.checkpoints.train_checkpoints import CHECKPOINT_SUBDIR

  folder = model_dir / CHECKPOINT_SUBDIR
  if not folder.exists():
    return None, None
  # Read only: the listing a resume uses, without removing the killed save's leftovers
  # (the next run does that).
  manager = ocp.CheckpointManager(folder, options=ocp.CheckpointManagerOptions(
      read_only=True), item_names=("state", "data"))
  step = manager.latest_step()
  manager.close()
  if step is None:
    return None, None
  reader = ocp.StandardCheckpointer()
  try:  # the arrays as saved (no target): any damage fails here
    state = reader.restore(folder / str(step) / "state")
  finally:
    reader.close()
  data = json.loads((folder / str(step) / "data" / "metadata").read_text())
  return step, {"state": state, "data": data}


def trees_equal(a, b) -> bool:
  import jax
  import numpy as np

  left, right = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
  return (len(left) == len(right) and all(
      pa == pb and np.array_equal(np.asarray(x), np.asarray(y))
      for (pa, x), (pb, y) in zip(left, right)))


def soak(workdir: Path, *, kills: int, steps: int, every: int = 2, keep: int = 3,
         max_delay: float = 1.0, seed: int = 0, timeout: float = 600.0) -> dict:
  """Runs the soak in `workdir`; returns the figures (see the module docstring)."""
  rng = random.Random(seed)
  workdir.mkdir(parents=True, exist_ok=True)
  run_dir, reference_dir, log = workdir / "killed", workdir / "reference", workdir / "log.txt"
  figures = {"kills": 0, "kills_during_save": 0, "kills_by_mode": {m: 0 for m in MODES},
             "resumes": 0, "finished_before_kill": 0, "latest_unrestorable": 0,
             "latest_steps_after_kills": []}
  started = time.monotonic()
  while figures["kills"] < kills:
    mode = MODES[figures["kills"] % len(MODES)]
    newest = max(committed(run_dir), default=-1)
    figures["resumes"] += newest >= 0
    # A kill before the restarted run cleans up would find the last kill's folder still
    # there: only a folder this run created counts as a save under way.
    leftovers = set(temporary_folders(run_dir))
    process = start(train_command(run_dir, steps, every, keep), log)
    # Every kill but the 'any' ones comes after this run saved once: the soak progresses.
    if mode in ("save", "training") and wait_for(
        lambda n=newest: max(committed(run_dir), default=-1) > n, process, timeout, 0.005):
      if mode == "save":
        ready = wait_for(lambda: bool(temporary_folders(run_dir)), process, timeout, 0.001)
        if ready:
          time.sleep(rng.uniform(0, 0.03))
      else:
        time.sleep(rng.uniform(0, max_delay))
    else:  # the process only ends early by finishing; the check below sees that
      wait_for(lambda: False, process, rng.uniform(0, 25.0), 0.01)
    if process.poll() is not None:  # finished (or failed) before the moment came
      if process.returncode != 0:
        raise RuntimeError(f"training failed (exit {process.returncode}); see {log}")
      figures["finished_before_kill"] += 1
      break
    process.send_signal(signal.SIGKILL)
    process.wait()
    figures["kills"] += 1
    figures["kills_by_mode"][mode] += 1
    during_save = bool(set(temporary_folders(run_dir)) - leftovers)
    figures["kills_during_save"] += during_save
    try:
      latest, _ = restore_latest(run_dir)
    except Exception as e:  # noqa: BLE001  the property under test: report, don't stop
      figures["latest_unrestorable"] += 1
      print(f"kill {figures['kills']}: latest step does not restore: {e}", file=sys.stderr)
      latest = None
    figures["latest_steps_after_kills"].append(latest)
    print(f"kill {figures['kills']} ({mode}): during a save {during_save}"
          f", latest step {latest}", file=sys.stderr, flush=True)
  # The last run finishes; then the uninterrupted reference.
  if figures["finished_before_kill"] == 0:
    figures["resumes"] += bool(committed(run_dir))
    final = start(train_command(run_dir, steps, every, keep), log)
    if final.wait(timeout) != 0:
      raise RuntimeError(f"the last run failed (exit {final.returncode}); see {log}")
  soak_seconds = time.monotonic() - started
  reference = start(train_command(reference_dir, steps, every, keep), log)
  if reference.wait(timeout) != 0:
    raise RuntimeError(f"the reference run failed (exit {reference.returncode}); see {log}")
  (ours_step, ours), (theirs_step, theirs) = restore_latest(run_dir), restore_latest(
      reference_dir)
  figures.update(
      final_step=ours_step, reference_step=theirs_step,
      final_state_equal=bool(ours_step == theirs_step == steps and ours["data"] == theirs["data"]
                             and trees_equal(ours["state"], theirs["state"])),
      soak_seconds=round(soak_seconds, 1))
  return figures
