"""Converting a checkpoint between formats: Hugging Face, T5X and aya_t5x, training runs too.

`convert_checkpoint` is what `aya-t5x convert` runs, callable from a notebook: it finds
what the source is (a Hugging Face or T5X folder, an aya_t5x parameter checkpoint, a
training MODEL_DIR whose latest step it takes, or one step folder), reads the model from
the checkpoint where it stores one, and writes the target format.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from aya_t5x.model_config import MT5Config

SOURCE_FORMATS = ("hf", "t5x", "aya_t5x")
TARGET_FORMATS = ("hf", "aya_t5x")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conversion:
  """What a conversion read and wrote."""

  destination: Path
  config: MT5Config
  train_state_dir: Path | None  # the step folder of a training run, if the source was one


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, *,
                       source_format: str, target_format: str,
                       config: MT5Config | None = None) -> Conversion:
  """Converts `source` (in `source_format`) to `destination` (in `target_format`).

  `config` is the model when the caller knows it (from gin); without it the model is read
  from the checkpoint. Training checkpoints always hold the per-layer layout, so a config
  with `scan_layers=True` is read as its per-layer twin.
  """
  from aya_t5x.checkpoints import formats, loading, native

  if source_format not in SOURCE_FORMATS:
    raise ValueError(f"unknown source format {source_format!r}; choose from {SOURCE_FORMATS}")
  if target_format not in TARGET_FORMATS:
    raise ValueError(f"unknown target format {target_format!r}; choose from {TARGET_FORMATS}")
  if config is not None:
    config = dataclasses.replace(config, scan_layers=False)
  src = Path(source).absolute()
  # A training run (its latest step) or one step folder: `infer` and `eval` read the same.
  state_dir = loading.train_state_dir(src) if source_format == "aya_t5x" else None
  if state_dir is None:
    params, config = formats.load_params(str(source), config, fmt=source_format)
  else:
    config = config or loading.stored_config(src)
    if config is None:
      raise ValueError(
          f"{source} is a training checkpoint ({state_dir}) from a run that did not save "
          f"its model ({native.CONFIG_FILE}): pass the gin files the run was trained with "
          "(the model size and any file or --gin.MT5Config binding that changed it), e.g. "
          f"aya-t5x convert --from aya_t5x --to {target_format} --gin_file "
          f"models/mt5_small.gin {source} {destination} (for the demo: --gin_file "
          "models/mt5_tiny.gin --gin_file demo/recipe.gin).")
    params = loading.load_params(src, config)
  formats.save_params(params, config, str(destination), fmt=target_format)
  return Conversion(destination=Path(destination), config=config, train_state_dir=state_dir)
