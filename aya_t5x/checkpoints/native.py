"""aya_t5x's own parameter checkpoints: an Orbax tree of parameters plus the model config.

Layout of a folder written by `save_params`:

    mt5_config.json   the `MT5Config` fields, so the folder says which model it holds
    params/           an Orbax (OCDBT/TensorStore) checkpoint of the parameter tree

Restoring takes optional target shardings, so that a checkpoint written on one mesh
loads directly into the shards of another (no host ever holds xxl whole).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax

from aya_t5x.checkpoints.compatibility import check_params_match
from aya_t5x.model import param_shapes
from aya_t5x.model_config import MT5Config

CONFIG_FILE = "mt5_config.json"
PARAMS_DIR = "params"


def config_to_json(config: MT5Config) -> str:
  return json.dumps(dataclasses.asdict(config), indent=2) + "\n"


def config_from_json(text: str, *, source: str) -> MT5Config:
  try:
    fields = json.loads(text)
    if "mlp_activations" in fields:
      fields["mlp_activations"] = tuple(fields["mlp_activations"])
    if fields.get("lora") is not None:
      from aya_t5x.adapters.lora import LoraConfig

      fields["lora"] = LoraConfig.from_dict(fields["lora"])
    return MT5Config(**fields)
  except (json.JSONDecodeError, TypeError) as e:
    raise ValueError(f"{source}: not a valid aya_t5x model config ({e}).") from e


def save_params(params: dict, config: MT5Config, path: str | os.PathLike) -> None:
  """Writes `params` and `config` to the folder `path` (created; must not hold params)."""
  import orbax.checkpoint as ocp

  path = Path(path).absolute()
  check_params_match(param_shapes(config), params, source="parameters to save")
  path.mkdir(parents=True, exist_ok=True)
  if (path / PARAMS_DIR).exists():
    raise FileExistsError(f"{path / PARAMS_DIR} already exists; choose a new folder.")
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path / PARAMS_DIR, params)
    checkpointer.wait_until_finished()
  (path / CONFIG_FILE).write_text(config_to_json(config))


def read_config(path: str | os.PathLike) -> MT5Config:
  file = Path(path) / CONFIG_FILE
  if not file.exists():
    raise FileNotFoundError(f"{file} is missing: {path} is not an aya_t5x checkpoint.")
  return config_from_json(file.read_text(), source=str(file))


def load_params(path: str | os.PathLike, config: MT5Config | None = None, *,
                shardings: Any = None) -> tuple[dict, MT5Config]:
  """Restores parameters written by `save_params`.

  Args:
    path: the folder.
    config: the configured model; the checkpoint must match it. Defaults to the config
      stored in the folder.
    shardings: optional tree of `jax.sharding.Sharding` matching the parameters; each
      array is restored directly into those shards.

  Returns:
    (params, config).
  """
  import orbax.checkpoint as ocp

  path = Path(path).absolute()
  stored = read_config(path)
  config = config or stored
  expected = param_shapes(config)
  check_params_match(expected, param_shapes(stored), source=str(path))
  if shardings is None:
    target = expected
  else:
    target = jax.tree.map(
        lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
        expected, shardings)
  params_dir = path / PARAMS_DIR
  if not params_dir.is_dir():
    raise FileNotFoundError(f"{params_dir} is missing: the checkpoint is incomplete.")
  with ocp.StandardCheckpointer() as checkpointer:
    try:
      params = checkpointer.restore(params_dir, target)
    except Exception as e:  # Orbax/TensorStore raise many kinds; name the place.
      raise ValueError(f"{params_dir}: could not restore the parameters ({e}). The "
                       "checkpoint is corrupt or was written by another model.") from e
  return params, config


def save_model_config(model_dir: str, config: MT5Config) -> None:
  """Writes the run's model to `MODEL_DIR/mt5_config.json` (local or a bucket).

  `infer`, `eval` and `convert` read it, so a run's checkpoints need no gin model files.
  Written whole through a temporary file and a rename, so a reader never sees half of it.
  """
  from etils import epath

  directory = epath.Path(model_dir)
  directory.mkdir(parents=True, exist_ok=True)
  temporary = directory / f"{CONFIG_FILE}.tmp"
  temporary.write_text(config_to_json(config))
  temporary.replace(directory / CONFIG_FILE)
