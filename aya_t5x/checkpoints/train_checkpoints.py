"""Training checkpoints with Orbax: the train state plus the data position, every N steps.

A model directory holds `checkpoints/<step>/` folders, each with two items: `state` (the
`TrainState`: step, parameters, optimizer state) and `data` (the input iterator's
position as JSON). Saves are asynchronous (training continues while the arrays are
written) and atomic (a step folder appears only once complete), the last K are kept,
and a restore can target any mesh: arrays are read straight into the new shardings.

In a multi-host run every host calls `save` and `restore`: each array shard is written
once (by the host that holds its first replica) and the data position by the first
host; a restore reads only the shards a host's devices need, on any host count.
`model_dir` may be a local folder or a bucket path (gs://...).
"""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp
from etils import epath

CHECKPOINT_SUBDIR = "checkpoints"


class TrainCheckpointer:
  """Saves and restores (state, data position) under `model_dir/checkpoints`."""

  def __init__(self, model_dir: str | os.PathLike, *, save_every_steps: int,
               keep: int | None = 3, async_save: bool = True):
    path = os.fspath(model_dir)
    self.directory = epath.Path(path if "://" in path else os.path.abspath(path)
                                ) / CHECKPOINT_SUBDIR
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every_steps, max_to_keep=keep,
        enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "data"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict, *, force: bool = False) -> bool:
    """Starts saving `step` if it is due (or `force`); returns whether a save started."""
    return self._manager.save(
        step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                      data=ocp.args.JsonSave(data_state)),
        force=force)

  def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
    """Restores `step` into the shapes and shardings of `abstract_state`."""
    try:
      restored = self._manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                        data=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax and TensorStore raise many types; name the place.
      raise ValueError(
          f"Could not restore step {step} from {self.directory / str(step)} ({e}). If the "
          "folder is corrupt, delete it to resume from the previous step "
          f"({[s for s in self.all_steps() if s < step][-1:] or 'none'}), or use a new "
          "MODEL_DIR.") from e
    return restored["state"], dict(restored["data"])

  def wait(self) -> None:
    """Blocks until every started save is complete on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
