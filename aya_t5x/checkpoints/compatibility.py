"""Checks that a loaded parameter tree fits the model that the gin configuration chose.

Every importer (Hugging Face, T5X, Orbax) calls `check_params_match` before handing
parameters to the trainer, so a wrong size or a foreign checkpoint fails with the first
mismatching parameter named, instead of deep inside a jitted step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flax import traverse_util


class CheckpointMismatchError(ValueError):
  """A checkpoint's parameter names or shapes differ from the configured model."""


def _flat(tree: Mapping[str, Any]) -> dict[str, Any]:
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(dict(tree)).items()}


def check_params_match(expected: Mapping[str, Any], loaded: Mapping[str, Any], *,
                       source: str) -> None:
  """Raises `CheckpointMismatchError` naming the first parameter that differs.

  Args:
    expected: the model's parameter tree (arrays or `jax.ShapeDtypeStruct`s).
    loaded: the tree read from a checkpoint.
    source: where `loaded` came from (a path), quoted in the message.
  """
  want, got = _flat(expected), _flat(loaded)
  for name in sorted(want):
    if name not in got:
      raise CheckpointMismatchError(
          f"{source}: parameter {name} with shape {tuple(want[name].shape)} is missing from "
          f"the checkpoint. Check that the gin model file (--gin_file gin/models/...) is "
          f"the size the checkpoint was trained at.")
    if tuple(want[name].shape) != tuple(got[name].shape):
      raise CheckpointMismatchError(
          f"{source}: parameter {name} has shape {tuple(got[name].shape)} in the checkpoint "
          f"but {tuple(want[name].shape)} in the configured model. Choose the gin model "
          f"file that matches the checkpoint (for example gin/models/mt5_small.gin).")
  extra = sorted(set(got) - set(want))
  if extra:
    raise CheckpointMismatchError(
        f"{source}: the checkpoint has {len(extra)} parameter(s) the configured model does "
        f"not, the first being {extra[0]} with shape {tuple(got[extra[0]].shape)}. The "
        f"checkpoint has more layers or another architecture than the gin model file.")
