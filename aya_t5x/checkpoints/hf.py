"""Hugging Face mT5 checkpoints (safetensors + config.json) to aya_t5x parameters and back.

The mapping is a fixed table between Hugging Face's `MT5ForConditionalGeneration` names
and T5X names. Hugging Face stores linear layers as [out, in] and the relative position
table as [buckets, heads]; T5X stores [in, out] and [heads, buckets], so those are
transposed. Conversion is exact in both directions (no dtype change unless asked).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from flax import traverse_util

from aya_t5x.checkpoints.compatibility import CheckpointMismatchError, check_params_match
from aya_t5x.model_config import MT5Config

_ATTENTION = {"q": "query", "k": "key", "v": "value", "o": "out"}
_TIED_EMBEDDING_NAMES = ("shared.weight", "encoder.embed_tokens.weight",
                         "decoder.embed_tokens.weight")

# Hugging Face activation names <-> aya_t5x activation names.
_HF_ACTIVATION = {"gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu", "silu": "silu"}
_FROM_HF_ACTIVATION = {v: k for k, v in _HF_ACTIVATION.items()} | {"gelu_pytorch_tanh": "gelu"}


def _name_table(config: MT5Config) -> Iterator[tuple[str, str, bool]]:
  """Yields (hugging_face_name, t5x_path, transpose) for every parameter."""
  yield "shared.weight", "token_embedder/embedding", False
  yield "lm_head.weight", "decoder/logits_dense/kernel", True
  mlp = ([f"wi_{i}" for i in range(len(config.mlp_activations))]
         if len(config.mlp_activations) > 1 else ["wi"]) + ["wo"]
  stacks = (("encoder", config.num_encoder_layers,
             (("SelfAttention", "attention", "pre_attention_layer_norm"),)),
            ("decoder", config.num_decoder_layers,
             (("SelfAttention", "self_attention", "pre_self_attention_layer_norm"),
              ("EncDecAttention", "encoder_decoder_attention",
               "pre_cross_attention_layer_norm"))))
  for stack, num_layers, attentions in stacks:
    yield (f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
           f"{stack}/relpos_bias/rel_embedding", True)
    yield f"{stack}.final_layer_norm.weight", f"{stack}/{stack}_norm/scale", False
    for i in range(num_layers):
      hf_block, ours = f"{stack}.block.{i}.layer", f"{stack}/layers_{i}"
      for j, (hf_attention, attention, norm) in enumerate(attentions):
        for hf_proj, proj in _ATTENTION.items():
          yield (f"{hf_block}.{j}.{hf_attention}.{hf_proj}.weight",
                 f"{ours}/{attention}/{proj}/kernel", True)
        yield f"{hf_block}.{j}.layer_norm.weight", f"{ours}/{norm}/scale", False
      j = len(attentions)
      for proj in mlp:
        ours_proj = "wi_0" if proj == "wi" else proj
        yield (f"{hf_block}.{j}.DenseReluDense.{proj}.weight",
               f"{ours}/mlp/{ours_proj}/kernel", True)
      yield f"{hf_block}.{j}.layer_norm.weight", f"{ours}/pre_mlp_layer_norm/scale", False


def hf_config_dict(config: MT5Config) -> dict:
  """The `config.json` Hugging Face's `MT5ForConditionalGeneration` loads for `config`."""
  gated = len(config.mlp_activations) > 1
  activation = _HF_ACTIVATION[config.mlp_activations[0]]
  return {
      "architectures": ["MT5ForConditionalGeneration"],
      "model_type": "mt5",
      "vocab_size": config.vocab_size,
      "d_model": config.d_model,
      "d_kv": config.d_kv,
      "d_ff": config.d_ff,
      "num_layers": config.num_encoder_layers,
      "num_decoder_layers": config.num_decoder_layers,
      "num_heads": config.num_heads,
      "relative_attention_num_buckets": config.relative_attention_num_buckets,
      "relative_attention_max_distance": config.relative_attention_max_distance,
      "dropout_rate": config.dropout_rate,
      "layer_norm_epsilon": config.layer_norm_epsilon,
      "feed_forward_proj": f"gated-{activation}" if gated else activation,
      "is_encoder_decoder": True,
      "tie_word_embeddings": False,
      "pad_token_id": 0,
      "eos_token_id": 1,
      "decoder_start_token_id": 0,
      "torch_dtype": config.param_dtype,
  }


def mt5_config_from_hf(hf_config: dict, **overrides) -> MT5Config:
  """Builds the `MT5Config` that a Hugging Face `config.json` describes."""
  if hf_config.get("tie_word_embeddings", False):
    raise CheckpointMismatchError(
        "config.json has tie_word_embeddings=true (an original T5, not T5 v1.1 / mT5); "
        "aya_t5x implements the untied mT5 architecture only.")
  projection = hf_config.get("feed_forward_proj", "relu")
  gated = projection.startswith("gated-")
  activation = projection.removeprefix("gated-")
  if activation not in _FROM_HF_ACTIVATION:
    raise CheckpointMismatchError(
        f"config.json feed_forward_proj={projection!r} is not supported; expected one of "
        f"{sorted(_FROM_HF_ACTIVATION)} (optionally 'gated-').")
  ours = _FROM_HF_ACTIVATION[activation]
  fields = dict(
      vocab_size=hf_config["vocab_size"], d_model=hf_config["d_model"],
      d_kv=hf_config["d_kv"], d_ff=hf_config["d_ff"], num_heads=hf_config["num_heads"],
      num_encoder_layers=hf_config["num_layers"],
      num_decoder_layers=hf_config.get("num_decoder_layers") or hf_config["num_layers"],
      relative_attention_num_buckets=hf_config.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf_config.get("relative_attention_max_distance", 128),
      layer_norm_epsilon=hf_config.get("layer_norm_epsilon", 1e-6),
      mlp_activations=(ours, "linear") if gated else (ours,))
  fields.update(overrides)
  return MT5Config(**fields)


def params_from_hf_state_dict(state_dict: dict[str, np.ndarray], config: MT5Config, *,
                              source: str = "state dict") -> dict:
  """Converts Hugging Face tensors (numpy) to the aya_t5x parameter tree.

  The embedding may be stored under any of its tied names. Raises
  `CheckpointMismatchError` naming the first missing or mis-shaped parameter.
  """
  state_dict = dict(state_dict)
  if "shared.weight" not in state_dict:
    for alias in _TIED_EMBEDDING_NAMES[1:]:
      if alias in state_dict:
        state_dict["shared.weight"] = state_dict[alias]
        break
  flat = {}
  for hf_name, path, transpose in _name_table(config):
    if hf_name not in state_dict:
      raise CheckpointMismatchError(
          f"{source}: tensor {hf_name} (aya_t5x {path}) is missing; the checkpoint does not "
          f"match the configured model (d_model={config.d_model}, "
          f"{config.num_encoder_layers}/{config.num_decoder_layers} layers).")
    value = np.asarray(state_dict[hf_name])
    flat[tuple(path.split("/"))] = value.T if transpose else value
  params = traverse_util.unflatten_dict(flat)
  from aya_t5x.model import param_shapes
  check_params_match(param_shapes(config), params, source=source)
  return params


def params_to_hf_state_dict(params: dict, config: MT5Config) -> dict[str, np.ndarray]:
  """Converts the aya_t5x parameter tree to Hugging Face tensor names (numpy, contiguous)."""
  flat = {"/".join(k): v for k, v in traverse_util.flatten_dict(params).items()}
  out = {}
  for hf_name, path, transpose in _name_table(config):
    if path not in flat:
      raise CheckpointMismatchError(f"parameter {path} is missing from the parameter tree.")
    value = np.asarray(flat[path])
    out[hf_name] = np.ascontiguousarray(value.T if transpose else value)
  return out


def _safetensors_files(path: Path) -> list[Path]:
  index = path / "model.safetensors.index.json"
  if index.exists():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    return [path / shard for shard in shards]
  single = path / "model.safetensors"
  if single.exists():
    return [single]
  raise FileNotFoundError(
      f"{path}: no model.safetensors or model.safetensors.index.json. Give the folder "
      "that save_pretrained wrote (PyTorch .bin checkpoints are not read; re-save them "
      "with safe_serialization=True).")


def read_config(path: str | os.PathLike) -> MT5Config:
  """The model a Hugging Face mT5 folder's config.json describes."""
  config_file = Path(path) / "config.json"
  if not config_file.exists():
    raise FileNotFoundError(f"{config_file} is missing; it says the model's size.")
  return mt5_config_from_hf(json.loads(config_file.read_text()))


def load_hf_checkpoint(path: str | os.PathLike, config: MT5Config | None = None
                       ) -> tuple[dict, MT5Config]:
  """Reads a Hugging Face mT5 folder (config.json + safetensors, sharded or not).

  Args:
    path: the folder `save_pretrained` wrote.
    config: the configured model; when given, the checkpoint must match it. Without it
      the model is built from config.json.

  Returns:
    (params, config).
  """
  from safetensors.numpy import load_file

  path = Path(path)
  if not path.is_dir():
    raise FileNotFoundError(f"Hugging Face checkpoint folder {path} does not exist.")
  if config is None:
    config = read_config(path)
  state_dict: dict[str, np.ndarray] = {}
  for file in _safetensors_files(path):
    try:
      state_dict.update(load_file(str(file)))
    except Exception as e:  # safetensors raises its own SafetensorError.
      raise ValueError(f"{file}: not a readable safetensors file ({e}).") from e
  return params_from_hf_state_dict(state_dict, config, source=str(path)), config


def save_hf_checkpoint(params: dict, config: MT5Config, path: str | os.PathLike) -> None:
  """Writes `params` as a folder `MT5ForConditionalGeneration.from_pretrained` loads."""
  from safetensors.numpy import save_file

  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  save_file(params_to_hf_state_dict(params, config), str(path / "model.safetensors"),
            metadata={"format": "pt"})
  (path / "config.json").write_text(json.dumps(hf_config_dict(config), indent=2) + "\n")
