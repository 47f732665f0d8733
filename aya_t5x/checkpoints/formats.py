"""One entry point for every checkpoint format: detect it, load parameters, save them.

Formats:
  aya_t5x  Orbax parameters + `mt5_config.json` (`aya_t5x.checkpoints.native`).
  hf       Hugging Face `config.json` + safetensors (`aya_t5x.checkpoints.hf`).
  t5x      legacy T5X msgpack `checkpoint` + TensorStore arrays
           (`aya_t5x.checkpoints.t5x_legacy`). T5X checkpoints carry no model config:
           the configured gin model is used, or, without one, the config is read off
           the parameter shapes.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from aya_t5x.model_config import MT5Config

FORMATS = ("aya_t5x", "hf", "t5x")


def detect_format(path: str | os.PathLike) -> str:
  """Names the format of the checkpoint at `path`, or raises naming what was looked for."""
  path = Path(path)
  if not path.exists():
    raise FileNotFoundError(f"Checkpoint {path} does not exist.")
  if path.is_file() and path.name == "checkpoint":
    return "t5x"
  from aya_t5x.checkpoints import native

  if (path / native.CONFIG_FILE).exists():
    return "aya_t5x"
  if (path / "checkpoint").is_file():
    return "t5x"
  if (path / "config.json").exists():
    return "hf"
  raise ValueError(
      f"{path}: not a known checkpoint. Expected {native.CONFIG_FILE} (aya_t5x), a "
      "msgpack 'checkpoint' file (T5X) or config.json with safetensors (Hugging Face).")


def config_from_t5x_params(params: dict, **overrides) -> MT5Config:
  """Reads an `MT5Config` off T5X parameter shapes (the gated-GELU mT5 architecture).

  The relative position max distance is not stored in a checkpoint; mT5's 128 is
  assumed unless overridden.
  """
  try:
    vocab, d_model = params["token_embedder"]["embedding"].shape
    heads, buckets = params["encoder"]["relpos_bias"]["rel_embedding"].shape
    layer = params["encoder"]["layers_0"]
    joined_kv = layer["attention"]["query"]["kernel"].shape[1]
    d_ff = layer["mlp"]["wi_0"]["kernel"].shape[1]
    gated = "wi_1" in layer["mlp"]
  except KeyError as e:
    raise ValueError(f"T5X checkpoint lacks parameter {e}; it is not an mT5 / T5 v1.1 "
                     "model, or pass the gin model file that describes it.") from e
  fields = dict(
      vocab_size=int(vocab), d_model=int(d_model), num_heads=int(heads),
      d_kv=int(joined_kv) // int(heads), d_ff=int(d_ff),
      num_encoder_layers=sum(k.startswith("layers_") for k in params["encoder"]),
      num_decoder_layers=sum(k.startswith("layers_") for k in params["decoder"]),
      relative_attention_num_buckets=int(buckets),
      mlp_activations=("gelu", "linear") if gated else ("relu",))
  fields.update(overrides)
  return MT5Config(**fields)


def load_params(path: str | os.PathLike, config: MT5Config | None = None, *,
                fmt: str | None = None) -> tuple[dict, MT5Config]:
  """Loads parameters (host numpy or jax arrays) and the model config from any format.

  When `config` is given, the checkpoint must match it exactly; the error names the
  first parameter that does not.
  """
  fmt = fmt or detect_format(path)
  if fmt == "aya_t5x":
    from aya_t5x.checkpoints import native
    return native.load_params(path, config)
  if fmt == "hf":
    from aya_t5x.checkpoints import hf
    return hf.load_hf_checkpoint(path, config)
  if fmt == "t5x":
    from aya_t5x.checkpoints import t5x_legacy
    from aya_t5x.checkpoints.compatibility import check_params_match
    from aya_t5x.model import param_shapes

    params = t5x_legacy.read_t5x_checkpoint(path)
    config = config or config_from_t5x_params(params)
    check_params_match(param_shapes(config), params, source=str(path))
    dtype = config.parameter_dtype
    params = jax.tree.map(lambda a: np.asarray(a).astype(dtype, copy=False), params)
    return params, config
  raise ValueError(f"Unknown checkpoint format {fmt!r}; choose from {FORMATS}.")


def save_params(params: dict, config: MT5Config, path: str | os.PathLike, *, fmt: str
                ) -> None:
  """Writes parameters in `fmt` ('aya_t5x', 'hf' or 't5x', the legacy layout)."""
  if fmt == "aya_t5x":
    from aya_t5x.checkpoints import native
    native.save_params(params, config, path)
  elif fmt == "hf":
    from aya_t5x.checkpoints import hf
    hf.save_hf_checkpoint(jax.tree.map(np.asarray, params), config, path)
  elif fmt == "t5x":
    from aya_t5x.checkpoints import t5x_legacy
    t5x_legacy.write_t5x_checkpoint(jax.tree.map(np.asarray, params), path)
  else:
    raise ValueError(f"Cannot write format {fmt!r}; choose from {FORMATS}.")

