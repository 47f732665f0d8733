"""Training checkpoints with Orbax: the train state plus the data position, every N steps.

A model directory holds `checkpoints/<step>/` folders, each with two items: `state` (the
`TrainState`: step, parameters, optimizer state) and `data` (the input iterator's
position as JSON). Saves are asynchronous (training continues while the arrays are
written) and atomic (a step folder appears only once complete), the last K are kept,
and a restore can target any mesh: arrays are read straight into the new shardings.

Faults are named, never a traceback: a save that fails for lack of space stops with the
folder and the bytes needed (earlier steps stay intact); a step that cannot be restored
names the step, the folder and the array or file that failed, and — when asked to — the
newest step that does restore is used instead, the bad one set aside beside it. A kill at
any moment (during a save too) leaves at worst an unfinished temporary folder, which
Orbax never lists as a step and which is removed at the next start.

In a multi-host run every host calls `save` and `restore`: each array shard is written
once (by the host that holds its first replica) and the data position by the first
host; a restore reads only the shards a host's devices need, on any host count.
`model_dir` may be a local folder or a bucket path (gs://...).
"""

from __future__ import annotations

import errno
import inspect
import os
import re
import shutil
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

CHECKPOINT_SUBDIR = "checkpoints"
# Where a step that failed to restore is moved when resuming falls back to an older one:
# not a step name, so Orbax ignores it, and its files are kept for inspection.
SET_ASIDE_SUFFIX = ".unrestorable"
# Files every finished step has; a missing one is named (Orbax itself reports a missing
# array metadata file as a tree-structure mismatch).
_REQUIRED_FILES = ("state/_METADATA", "data/metadata")
# Orbax writes per-array metadata beside the data (a few hundred bytes to a few KB each).
_METADATA_BYTES_PER_ARRAY = 4096
_SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_SPACE_TEXTS = ("no space left on device", "file too large", "disk quota exceeded")


class CheckpointError(ValueError):
  """A checkpoint cannot be written or read; the message names the step, folder and fix."""


class CheckpointSpaceError(CheckpointError):
  """A save failed (or would fail) for lack of space; earlier steps are intact."""


class CheckpointRestoreError(CheckpointError):
  """A step cannot be restored; `reason` is a one-line account of what failed."""

  def __init__(self, message: str, *, step: int, reason: str):
    super().__init__(message)
    self.step = step
    self.reason = reason


def _is_abandoned_read_noise(unraisable) -> bool:
  """Whether an unraisable exception is the leftover of an abandoned restore.

  Two kinds, both after the real error was raised:
  - `RuntimeError: Event loop is closed`: TensorStore completes a read after Orbax closed
    the read's event loop and calls that loop from a C++ thread;
  - an exception raised by a coroutine while it is being closed (its context is the
    `GeneratorExit` that closing throws in): Orbax closes the loop of a failed read without
    cancelling the reads still pending, and their coroutines are closed when they are
    collected, mostly at interpreter exit. Orbax's read catches `BaseException` and raises
    an `Exception` with the whole TensorStore spec, one per pending shard. How many reads
    are still pending when the first fails depends on thread timing: under load, about one
    run in five printed dozens of these tracebacks after the error.
  """
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
    return True
  return (inspect.iscoroutine(unraisable.object) and error is not None
          and isinstance(error.__context__, GeneratorExit))


def _drop_closed_loop_callbacks() -> None:
  """Silences the late leftovers of a failed Orbax read (`_is_abandoned_read_noise`).

  Installed once, when a restore fails, and kept until the process exits: the leftovers
  come from other threads and from the interpreter's shutdown, after the error is shown.
  Every other unraisable exception goes to the previous hook.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_aya_t5x_drops_closed_loops", False):
    return

  def hook(unraisable):
    if not _is_abandoned_read_noise(unraisable):
      previous(unraisable)

  hook._aya_t5x_drops_closed_loops = True
  sys.unraisablehook = hook


class _MissingFile(FileNotFoundError):
  """A file every finished step has is not there (the message names it)."""


def _chain(error: BaseException) -> list[BaseException]:
  seen: list[BaseException] = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  return seen


def is_space_error(error: BaseException) -> bool:
  """Whether `error` (or an error it was raised from) is a full disk or a file-size limit."""
  for e in _chain(error):
    if isinstance(e, OSError) and e.errno in _SPACE_ERRNOS:
      return True
    if any(text in str(e).lower() for text in _SPACE_TEXTS):
      return True
  return False


def describe_restore_failure(error: BaseException) -> str:
  """One line: the array or file that failed and the first words of why.

  TensorStore's messages embed the whole store spec (thousands of characters); the
  array's name is the spec's relative kvstore path.
  """
  if isinstance(error, _MissingFile):
    return str(error)
  text = " ".join(str(e) for e in _chain(error))
  arrays = [p for p in re.findall(r"'path': '([^'/][^']*?)/?'", text) if "://" not in p]
  # Without the spec, the key read: Error reading "opt_state.0.v.decoder...kernel/.zarray".
  arrays += re.findall(r'Error reading "([^"/]+)/[^"]*"', text)
  files = [getattr(e, "filename", None) for e in _chain(error)]
  files = [f for f in files if f]
  innermost = _chain(error)[-1]
  why = re.split(r"See full TensorStore details|\n| in OCDBT database", str(innermost),
                 maxsplit=1)[0].strip()
  why = why.rstrip(". ") or type(innermost).__name__
  if len(why) > 160:
    why = why[:157] + "..."
  where = (f"array {arrays[0]}" if arrays else f"file {files[0]}" if files
           else type(innermost).__name__)
  return f"{where}: {why}"


def _state_bytes(state: Any) -> tuple[int, int]:
  leaves = jax.tree.leaves(state)
  return sum(int(getattr(x, "nbytes", 0)) for x in leaves), len(leaves)


def _format_bytes(n: float) -> str:
  for unit in ("B", "KB", "MB", "GB"):
    if n < 1024 or unit == "GB":
      return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  raise AssertionError("unreachable")


def saved_steps_exist(model_dir: str | os.PathLike) -> bool:
  """Whether `model_dir` holds a saved step (a run to resume), without creating anything."""
  path = os.fspath(model_dir)
  folder = epath.Path(path) / CHECKPOINT_SUBDIR
  return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


class TrainCheckpointer:
  """Saves and restores (state, data position) under `model_dir/checkpoints`.

  Use it as a context manager: on leaving, pending saves finish (their errors raised,
  named) and Orbax's threads stop; when leaving by an exception they stop without
  raising again, so that the first error is the only one printed.
  """

  def __init__(self, model_dir: str | os.PathLike, *, save_every_steps: int,
               keep: int | None = 3, async_save: bool = True):
    path = os.fspath(model_dir)
    self._local = "://" not in path
    self.directory = epath.Path(os.path.abspath(path) if self._local else path
                                ) / CHECKPOINT_SUBDIR
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every_steps, max_to_keep=keep,
        enable_async_checkpointing=async_save, create=True,
        # A save killed part way leaves a temporary folder; never a step, but litter.
        cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data"))
    self._saving_step: int | None = None
    self._needed_bytes = 0
    self._closed = False

  def __enter__(self) -> TrainCheckpointer:
    return self

  def __exit__(self, kind, error, traceback) -> None:
    if error is None:
      self.close()
    else:
      self._close_quietly()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  # ---------------------------------------------------------------------------- save

  def save(self, step: int, state: Any, data_state: dict, *, force: bool = False) -> bool:
    """Starts saving `step` if it is due (or `force`); returns whether a save started.

    Raises `CheckpointSpaceError` before writing when the folder's disk has clearly too
    little room, and when a write (this one, or the previous asynchronous one) failed
    for lack of space.
    """
    if not (force or self._manager.should_save(step)):
      return False
    array_bytes, arrays = _state_bytes(state)
    needed = array_bytes + arrays * _METADATA_BYTES_PER_ARRAY
    if self._local:
      free = shutil.disk_usage(self.directory).free
      if free < needed:
        raise self._space_error(step, needed, f"{_format_bytes(free)} are free")
    try:
      started = self._manager.save(
          step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                        data=ocp.args.JsonSave(data_state)),
          force=force)
    except Exception as e:
      if is_space_error(e):  # this save, or the previous one reported late
        raise self._space_error(self._saving_step or step, needed, str(e)) from e
      raise
    if started:
      self._saving_step, self._needed_bytes = step, needed
    return started

  def _space_error(self, step: int, needed: int, why: str) -> CheckpointSpaceError:
    earlier = [s for s in self.all_steps() if s < step]
    resume = (f"the run resumes from step {earlier[-1]}, which is intact" if earlier
              else "no earlier step was saved")
    return CheckpointSpaceError(
        f"Not enough space to save step {step} in {self.directory}: a step needs about "
        f"{_format_bytes(needed)} ({why}). Free space there (or lower "
        f"CheckpointConfig.keep, or use a MODEL_DIR on a larger disk) and rerun: {resume}.")

  def wait(self) -> None:
    """Blocks until every started save is complete on disk."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      if is_space_error(e) and self._saving_step is not None:
        raise self._space_error(self._saving_step, self._needed_bytes, str(e)) from e
      raise

  def close(self) -> None:
    """Waits for pending saves (raising their errors) and stops Orbax's threads."""
    if self._closed:
      return
    try:
      self.wait()
    finally:
      self._close_quietly()

  def _close_quietly(self) -> None:
    if self._closed:
      return
    self._closed = True
    # A save still writing when its event loop closes prints "Event loop is closed" at
    # exit: let it end first. Its own error, if any, is not the one to show.
    for stop in (self._manager.wait_until_finished, self._manager.close):
      try:
        stop()
      except Exception:  # noqa: BLE001  the error that stopped the run is the one shown
        pass

  # ------------------------------------------------------------------------- restore

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores `step` into the shapes and shardings of `abstract_state`."""
    folder = self.directory / str(step)
    try:
      missing = [name for name in _REQUIRED_FILES if not (folder / name).exists()]
      if missing:
        raise _MissingFile(f"file {missing[0]} is missing")
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                        data=ocp.args.JsonRestore()))
      data = dict(restored["data"])
    except Exception as e:  # Orbax and TensorStore raise many types; name the place.
      _drop_closed_loop_callbacks()
      reason = describe_restore_failure(e)
      earlier = [s for s in self.all_steps() if s < step]
      raise CheckpointRestoreError(
          f"Could not restore step {step} from {folder}: {reason}. "
          "The folder is damaged or incomplete: delete it to resume from "
          + (f"step {earlier[-1]}" if earlier else "the start")
          + ", or set --gin.CheckpointConfig.fallback_to_restorable=True to resume from "
          "the newest step that restores, or use a new MODEL_DIR (--verbose shows the "
          "details).", step=step, reason=reason) from e
    return restored["state"], data

  def restore_newest(self, abstract_state: Any, *, fallback: bool = False
                     ) -> tuple[int, Any, dict, list[str]] | None:
    """Restores the latest step: (step, state, data position, notes), or None if none.

    With `fallback`, a step that fails to restore is set aside (renamed
    `<step>.unrestorable`, by the first host) and the next older one is tried; each note
    says which step was skipped and why. Without it the first failure is raised.
    """
    notes = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state, data = self.restore(step, abstract_state)
      except CheckpointRestoreError as e:
        if not fallback:
          raise
        moved = self._set_aside(step)
        notes.append(f"skipped step {step} ({e.reason}); its folder is kept as {moved}")
        continue
      return step, state, data, notes
    if notes:
      raise CheckpointError(
          f"No step in {self.directory} restores: " + "; ".join(notes) + ". Use a new "
          "MODEL_DIR (or INITIAL_CHECKPOINT_PATH to start from other parameters).")
    return None

  def _set_aside(self, step: int) -> epath.Path:
    source = self.directory / str(step)
    target = self.directory / f"{step}{SET_ASIDE_SUFFIX}"
    if jax.process_index() == 0:
      suffix = 1
      while target.exists():  # an earlier fallback set aside the same step number
        suffix += 1
        target = self.directory / f"{step}{SET_ASIDE_SUFFIX}.{suffix}"
      source.rename(target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f"aya_t5x set aside step {step}")
    self._manager.reload()
    return target
