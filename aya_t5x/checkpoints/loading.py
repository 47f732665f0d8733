"""What any checkpoint path holds: a training run, one of its steps, or a parameter checkpoint.

`infer`, `eval`, `convert`, the judge and the translation backend all take "a checkpoint"
in any of these forms; this module finds the parameters and the model configuration in
each, and names a path that does not exist before anything else is tried.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aya_t5x.checkpoints.train_checkpoints import CHECKPOINT_SUBDIR
from aya_t5x.model_config import MT5Config

_SIZES = "tiny, small, base, large, xl, xxl"


def _is_remote(path: str | os.PathLike) -> bool:
  return "://" in os.fspath(path)


def check_exists(path: str | os.PathLike) -> None:
  """Raises FileNotFoundError naming `path` when a local checkpoint path does not exist."""
  if not _is_remote(path) and not Path(path).exists():
    raise FileNotFoundError(
        f"checkpoint {os.fspath(path)!r} does not exist: give a training MODEL_DIR, one of "
        "its step folders (MODEL_DIR/checkpoints/N), or a parameter checkpoint folder "
        "(aya_t5x, Hugging Face or T5X).")


def train_state_dir(path: Path) -> Path | None:
  """The `state` item of the latest step when `path` is a run or a step folder."""
  if (path / "state").is_dir():
    return path / "state"
  steps = sorted((int(p.name) for p in (path / CHECKPOINT_SUBDIR).glob("*")
                  if p.name.isdigit()), reverse=True) if (path / CHECKPOINT_SUBDIR).is_dir() \
      else []
  return path / CHECKPOINT_SUBDIR / str(steps[0]) / "state" if steps else None


def run_dir(path: str | os.PathLike) -> Path | None:
  """The training run (MODEL_DIR) that `path` is, or whose step folder it is; else None."""
  path = Path(path).absolute()
  if train_state_dir(path) is None:
    return None
  return path.parent.parent if (path / "state").is_dir() else path


def stored_config(path: str | os.PathLike) -> MT5Config | None:
  """The model configuration stored with a checkpoint, or None where none is.

  A training run writes its model to `MODEL_DIR/mt5_config.json` (read here for the run
  and for each of its step folders); an aya_t5x parameter checkpoint holds the same file,
  a Hugging Face folder its `config.json`. Legacy T5X checkpoints, and runs trained
  before runs saved their model, store none.
  """
  from aya_t5x.checkpoints import formats, hf, native

  path = Path(path).absolute()
  run = run_dir(path)
  if run is not None:
    return native.read_config(run) if (run / native.CONFIG_FILE).is_file() else None
  try:
    fmt = formats.detect_format(path)
  except (ValueError, FileNotFoundError):
    return None
  if fmt == "aya_t5x":
    return native.read_config(path)
  if fmt == "hf":
    return hf.read_config(path)
  return None


def model_config(checkpoint: str | os.PathLike, configured: MT5Config | None) -> MT5Config:
  """The model to load `checkpoint` into: `configured` (from gin) where given, else stored.

  The checkpoint must exist (checked first); with no model configured and none stored,
  the error says which gin file to add.
  """
  check_exists(checkpoint)
  if configured is not None:
    return configured
  stored = stored_config(checkpoint)
  if stored is None:
    raise ValueError(
        f"checkpoint {os.fspath(checkpoint)!r} stores no model configuration: add the model "
        f"gin file it was trained with, for example --gin_file models/mt5_small.gin "
        f"(sizes: {_SIZES}).")
  return stored


def load_params(path: str | os.PathLike, config: MT5Config) -> Any:
  """Parameters from a training run, a step folder, or any parameter checkpoint."""
  import orbax.checkpoint as ocp

  from aya_t5x.checkpoints import formats
  from aya_t5x.checkpoints.compatibility import check_params_match
  from aya_t5x.model import param_shapes

  check_exists(path)
  path = Path(path).absolute()
  state_dir = train_state_dir(path)
  if state_dir is None:
    return formats.load_params(path, config)[0]
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(state_dir)
  params = state["params"]
  check_params_match(param_shapes(config), params, source=str(state_dir))
  return params
