"""Converting a checkpoint between formats: Hugging Face, T5X and aya_t5x, training runs too.

`convert_checkpoint` is what `aya-t5x convert` runs, callable from a notebook: it finds
what the source is (a Hugging Face or T5X folder, an aya_t5x parameter checkpoint, a
training MODEL_DIR whose latest step it takes, or one step folder), reads the model from
the checkpoint where it stores one, and writes the target format.

LoRA runs (`aya_t5x.checkpoints.adapters`): `adapters=RUN_DIR` merges the run's adapters
into the source (its base) before writing; target 'hf_peft' writes the adapters of the
source run itself in Hugging Face peft's format.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from aya_t5x.model_config import MT5Config

SOURCE_FORMATS = ("hf", "t5x", "aya_t5x")
TARGET_FORMATS = ("hf", "aya_t5x", "hf_peft")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conversion:
  """What a conversion read and wrote."""

  destination: Path
  config: MT5Config
  train_state_dir: Path | None  # the step folder of a training run, if the source was one


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, *,
                       source_format: str, target_format: str,
                       config: MT5Config | None = None,
                       adapters: str | os.PathLike | None = None) -> Conversion:
  """Converts `source` (in `source_format`) to `destination` (in `target_format`).

  `config` is the model when the caller knows it (from gin); without it the model is read
  from the checkpoint. Training checkpoints always hold the per-layer layout, so a config
  with `scan_layers=True` is read as its per-layer twin.
  """
  from aya_t5x.checkpoints import formats

  if source_format not in SOURCE_FORMATS:
    raise ValueError(f"unknown source format {source_format!r}; choose from {SOURCE_FORMATS}")
  if target_format not in TARGET_FORMATS:
    raise ValueError(f"unknown target format {target_format!r}; choose from {TARGET_FORMATS}")
  if target_format == "hf_peft":
    return _export_peft(Path(source).absolute(), Path(destination), config, adapters)
  params, config, state_dir = read_checkpoint(
      source, source_format=source_format, config=config,
      example_command=f"aya-t5x convert --from aya_t5x --to {target_format} --gin_file "
                      f"models/mt5_small.gin {source} {destination}")
  if adapters is not None:
    from aya_t5x.checkpoints import adapters as adapters_lib

    tree, info = adapters_lib.load_adapters(adapters)
    adapters_lib.base_for_adapters(params, info, base_source=str(source))  # the right base?
    # Merged into the base as stored (float32 for a float32 checkpoint), not into the
    # rounded copy a bfloat16-base run trained against.
    params = adapters_lib.merge_adapters(params, tree, info.lora)
  formats.save_params(params, config, str(destination), fmt=target_format)
  return Conversion(destination=Path(destination), config=config, train_state_dir=state_dir)


def read_checkpoint(source: str | os.PathLike, *, source_format: str,
                    config: MT5Config | None = None, example_command: str = ""
                    ) -> tuple[dict, MT5Config, Path | None]:
  """(params, config, the step folder or None) of a checkpoint in `source_format`.

  `source` may also be a training MODEL_DIR (its latest step) or one step folder when
  `source_format` is aya_t5x. `example_command` shows, in the error for a run that saved
  no model, how to pass the gin files.
  """
  from aya_t5x.checkpoints import formats, loading, native

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
          "(the model size and any file or --gin.MT5Config binding that changed it)"
          + (f", e.g. {example_command}" if example_command else "")
          + " (for the demo: --gin_file models/mt5_tiny.gin --gin_file demo/recipe.gin).")
    params = loading.load_params(src, config)
  return params, config, state_dir


def write_hf_tokenizer(vocabulary: str | os.PathLike, destination: str | os.PathLike) -> None:
  """Writes a SentencePiece model beside a Hugging Face export as its T5 tokenizer.

  `spiece.model` is the file `T5Tokenizer` reads; `extra_ids: 0` because mT5's sentinels
  are pieces of the model itself (T5Tokenizer would otherwise append 100 more ids).
  """
  import json
  import shutil

  destination = Path(destination)
  shutil.copyfile(vocabulary, destination / "spiece.model")
  (destination / "tokenizer_config.json").write_text(json.dumps(
      {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>",
       "unk_token": "<unk>", "pad_token": "<pad>"}, indent=2) + "\n", encoding="utf-8")


def _export_peft(run: Path, destination: Path, config: MT5Config | None,
                 adapters: str | os.PathLike | None) -> Conversion:
  """Writes a LoRA run's adapters (`run`, or `adapters` when given) for Hugging Face peft."""
  from aya_t5x.checkpoints import adapters as adapters_lib
  from aya_t5x.checkpoints import loading

  source = Path(adapters).absolute() if adapters is not None else run
  tree, info = adapters_lib.load_adapters(source)
  config = config or loading.stored_config(source)
  if config is None:
    raise ValueError(f"{source}: the run did not save its model (mt5_config.json); pass "
                     "its gin model file (--gin_file models/...).")
  adapters_lib.save_peft(tree, info, config, destination)
  return Conversion(destination=destination, config=config,
                    train_state_dir=loading.train_state_dir(source))
