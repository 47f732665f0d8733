"""Adapter checkpoints: the base's fingerprint, loading adapters, merging, PEFT export.

A LoRA run's train checkpoints hold only the adapters and their optimizer state
(megabytes); its MODEL_DIR also holds `aya_adapters.json`, written at the first start:

    {"trainable": "lora", "lora": {LoraConfig fields},
     "base": {"path": ..., "dtype": "bfloat16", "fingerprint": "sha256:..."}}

The fingerprint is a digest of every frozen parameter's name, shape, dtype and two
integer checksums of its bits (computed on the devices, exact on any mesh and in the
scanned and per-layer layouts alike). A run resumed against another base, and
`--adapters` given with another base, are refused with both paths named.

`merge_adapters` folds `kernel + (alpha / rank) A @ B` into a plain parameter tree
(written as an aya_t5x or Hugging Face checkpoint by `aya-t5x convert --merge_adapters`);
`save_peft` writes `adapter_model.safetensors` and `adapter_config.json` in Hugging Face
peft's LoRA format (`aya-t5x convert --to hf_peft`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aya_t5x import layer_stack
from aya_t5x.adapters import lora as lora_lib
from aya_t5x.adapters.lora import LoraConfig
from aya_t5x.model_config import MT5Config

RUN_FILE = "aya_adapters.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
# Our kernel names -> the Hugging Face module names peft's target_modules match.
_HF_MODULES = {"query": "q", "key": "k", "value": "v", "out": "o", "wi_0": "wi_0",
               "wi_1": "wi_1", "wo": "wo", "logits_dense": "lm_head"}


class AdapterBaseMismatchError(ValueError):
  """Adapters were trained on another base checkpoint than the one given."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdapterInfo:
  """What a LoRA run trained and on which base."""

  lora: LoraConfig
  base_path: str
  base_dtype: str
  fingerprint: str

  def to_json(self) -> str:
    return json.dumps({"trainable": "lora", "lora": self.lora.to_dict(),
                       "base": {"path": self.base_path, "dtype": self.base_dtype,
                                "fingerprint": self.fingerprint}}, indent=2) + "\n"

  @classmethod
  def read(cls, directory: str | os.PathLike) -> AdapterInfo:
    """Reads MODEL_DIR/aya_adapters.json (a local folder or a bucket path)."""
    from etils import epath

    file = epath.Path(os.fspath(directory)) / RUN_FILE
    if not file.exists():
      raise FileNotFoundError(f"{file} is missing: {directory} is not a LoRA run (train "
                              "with --gin_file runs/lora.gin).")
    try:
      fields = json.loads(file.read_text())
      return cls(lora=LoraConfig.from_dict(fields["lora"]), base_path=fields["base"]["path"],
                 base_dtype=fields["base"]["dtype"],
                 fingerprint=fields["base"]["fingerprint"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise ValueError(f"{file}: not a valid adapter description ({e}).") from e


# ------------------------------------------------------------------------ fingerprints


def _leaf_sums(x: jax.Array, stacked: bool) -> tuple[jax.Array, jax.Array]:
  """Two uint32 checksums of `x`'s bits (per layer when `stacked`): a plain sum and a
  position-weighted one. Integer sums wrap and are associative: exact on any sharding."""
  width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
  bits = jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)
  first = 1 if stacked else 0
  index = jnp.zeros(x.shape, jnp.uint32)
  stride = 1
  for dim in reversed(range(first, x.ndim)):
    index = index + jax.lax.broadcasted_iota(jnp.uint32, x.shape, dim) * jnp.uint32(stride)
    stride *= x.shape[dim]
  weights = index % jnp.uint32(65521) + jnp.uint32(1)
  axes = tuple(range(first, x.ndim))
  return (jnp.sum(bits, axis=axes, dtype=jnp.uint32),
          jnp.sum(bits * weights, axis=axes, dtype=jnp.uint32))


def fingerprint(params: Any) -> str:
  """A digest of a parameter tree that is the same in the scanned and per-layer layouts."""
  flat = traverse_util.flatten_dict(dict(params)) if params else {}
  names = sorted(flat)
  stacked = [layer_stack.STACKED in name for name in names]
  leaves = [flat[n] for n in names]
  # Replicated results, so that every host of a multi-host run can read them.
  meshes = [x.sharding.mesh for x in leaves
            if isinstance(getattr(x, "sharding", None), jax.sharding.NamedSharding)]
  replicated = (jax.sharding.NamedSharding(meshes[0], jax.sharding.PartitionSpec())
                if meshes else None)
  sums = jax.jit(lambda leaves: [_leaf_sums(x, s) for x, s in zip(leaves, stacked)],
                 out_shardings=replicated)(leaves)
  lines = []
  for name, is_stacked, (plain, weighted) in zip(names, stacked, jax.device_get(sums)):
    x = flat[name]
    if is_stacked:
      for i in range(x.shape[0]):
        layer = tuple(f"layers_{i}" if k == layer_stack.STACKED else k for k in name)
        lines.append(f"{'/'.join(layer)} {x.shape[1:]} {x.dtype} {plain[i]} {weighted[i]}")
    else:
      lines.append(f"{'/'.join(name)} {tuple(x.shape)} {x.dtype} {plain} {weighted}")
  digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
  return f"sha256:{digest}"


def check_run_base(model_dir: str, info: AdapterInfo, *, write: bool) -> None:
  """Writes MODEL_DIR/aya_adapters.json on a run's first start, or refuses a resume whose
  base (fingerprint) or adapter shape differs from the one the run started with."""
  from etils import epath

  file = epath.Path(model_dir) / RUN_FILE
  if file.exists():
    stored = AdapterInfo.read(model_dir)
    if stored.fingerprint != info.fingerprint or stored.base_dtype != info.base_dtype:
      raise AdapterBaseMismatchError(
          f"{model_dir} trains adapters on base {stored.base_path} (fingerprint "
          f"{stored.fingerprint[:19]}..., {stored.base_dtype}), not on {info.base_path} "
          f"({info.fingerprint[:19]}..., {info.base_dtype}): resume with "
          f"INITIAL_CHECKPOINT_PATH={stored.base_path!r}, or use a new MODEL_DIR.")
    if stored.lora != info.lora:
      raise ValueError(f"{model_dir} trains adapters {stored.lora}, not {info.lora}: resume "
                       "with the run's LoraConfig, or use a new MODEL_DIR.")
    return
  if write:
    epath.Path(model_dir).mkdir(parents=True, exist_ok=True)
    temporary = file.parent / f"{RUN_FILE}.tmp"
    temporary.write_text(info.to_json())
    temporary.replace(file)


# ------------------------------------------------------------------- loading adapters


def load_adapters(path: str | os.PathLike) -> tuple[dict, AdapterInfo]:
  """(adapter parameters in the per-layer layout, their description) from a LoRA run's
  MODEL_DIR (latest step) or one of its step folders."""
  import orbax.checkpoint as ocp

  from aya_t5x.checkpoints.loading import train_state_dir

  path = Path(path).absolute()
  state_dir = train_state_dir(path)
  if state_dir is None:
    raise FileNotFoundError(f"{path}: no training checkpoint (checkpoints/<step>/state) "
                            "here; give a LoRA run's MODEL_DIR or one of its step folders.")
  run = path.parent.parent if (path / "state").is_dir() else path
  info = AdapterInfo.read(run)
  with ocp.StandardCheckpointer() as checkpointer:
    state = checkpointer.restore(state_dir)
  adapters = jax.tree.map(np.asarray, state["params"])
  flat = traverse_util.flatten_dict(adapters)
  if not flat or not all(lora_lib.is_adapter_path(k) for k in flat):
    raise ValueError(f"{state_dir}: the checkpoint holds parameters other than LoRA "
                     "adapters; it is not a LoRA run's checkpoint.")
  return adapters, info


def base_for_adapters(base_params: Any, info: AdapterInfo, *, base_source: str) -> Any:
  """The base parameters in the dtype the adapters were trained on, after checking that
  they are the base the adapters were trained on (by fingerprint)."""
  dtype = jnp.dtype(info.base_dtype)
  base = jax.tree.map(lambda x: np.asarray(x).astype(dtype), base_params)
  got = fingerprint(base)
  if got != info.fingerprint:
    raise AdapterBaseMismatchError(
        f"the adapters were trained on base {info.base_path} (fingerprint "
        f"{info.fingerprint[:19]}...), not on {base_source} ({got[:19]}...): give the "
        "base checkpoint they were trained on.")
  return base


def attach_adapters(base_params: Any, config: MT5Config, adapters_dir: str | os.PathLike, *,
                    base_source: str) -> tuple[Any, MT5Config]:
  """(parameters, model config) of the base with the adapters of `adapters_dir` attached,
  unmerged (what `infer --adapters` and `eval --adapters` run)."""
  from aya_t5x.adapters import trainable

  adapters, info = load_adapters(adapters_dir)
  base = base_for_adapters(base_params, info, base_source=base_source)
  return trainable.combine(adapters, base), dataclasses.replace(config, lora=info.lora)


# -------------------------------------------------------------------------- merging


def merge_adapters(base_params: Any, adapters: Any, lora: LoraConfig) -> dict:
  """A plain parameter tree: each adapted kernel replaced by `kernel + scale A @ B`, in the
  base kernel's dtype; the other parameters unchanged."""
  flat = traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(base_params)))
  lora_flat = traverse_util.flatten_dict(dict(adapters))
  owners = {k[:-1] for k in lora_flat}
  for owner in owners:
    dense = {"kernel": flat[owner + ("kernel",)], lora_lib.A_NAME:
             lora_flat[owner + (lora_lib.A_NAME,)], lora_lib.B_NAME:
             lora_flat[owner + (lora_lib.B_NAME,)]}
    kernel = flat[owner + ("kernel",)]
    flat[owner + ("kernel",)] = np.asarray(lora_lib.merged_kernel(dense, lora)).astype(
        kernel.dtype)
  return traverse_util.unflatten_dict(flat)


# ----------------------------------------------------------------------- PEFT export


def peft_state_dict(adapters: Any, config: MT5Config) -> dict[str, np.ndarray]:
  """Adapters under peft's names: `base_model.model.<module>.lora_A.weight` [rank, in]
  and `lora_B.weight` [out, rank] (torch's [out, in] order)."""
  from aya_t5x.checkpoints import hf

  flat = {"/".join(k): np.asarray(v, np.float32)
          for k, v in traverse_util.flatten_dict(dict(adapters)).items()}
  out = {}
  for hf_name, path, _ in hf._name_table(config):  # noqa: SLF001  the one name table
    owner = path.removesuffix("/kernel")
    if f"{owner}/{lora_lib.A_NAME}" not in flat:
      continue
    module = "base_model.model." + hf_name.removesuffix(".weight")
    out[f"{module}.lora_A.weight"] = np.ascontiguousarray(flat[f"{owner}/{lora_lib.A_NAME}"].T)
    out[f"{module}.lora_B.weight"] = np.ascontiguousarray(flat[f"{owner}/{lora_lib.B_NAME}"].T)
  if 2 * len({k.rsplit("/", 1)[0] for k in flat}) != len(out):
    raise ValueError("some adapters have no Hugging Face module name; export only adapters "
                     f"on {sorted(_HF_MODULES)}.")
  return out


def peft_config_dict(info: AdapterInfo, config: MT5Config) -> dict:
  """peft's `adapter_config.json` for these adapters (LoRA on a seq2seq LM)."""
  gated = len(config.mlp_activations) > 1
  modules = sorted({("wi" if t == "wi_0" and not gated else _HF_MODULES[t])
                    for t in info.lora.targets})
  return {"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": info.lora.rank,
          "lora_alpha": info.lora.alpha, "lora_dropout": info.lora.dropout,
          "target_modules": modules, "bias": "none", "fan_in_fan_out": False,
          "use_rslora": False, "use_dora": False, "init_lora_weights": True,
          "inference_mode": True, "modules_to_save": None,
          "base_model_name_or_path": info.base_path}


def save_peft(adapters: Any, info: AdapterInfo, config: MT5Config,
              path: str | os.PathLike) -> None:
  """Writes a folder `peft.PeftModel.from_pretrained(base, path)` loads."""
  from safetensors.numpy import save_file

  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  save_file(peft_state_dict(adapters, config), str(path / PEFT_WEIGHTS),
            metadata={"format": "pt"})
  (path / PEFT_CONFIG).write_text(json.dumps(peft_config_dict(info, config), indent=2) + "\n")
