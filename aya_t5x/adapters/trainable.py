"""Which parameters a run trains: a component chosen by name ('all', 'lora'), read by the
trainer and the train step alike, so that neither has a branch per method.

A `TrainableSet` says which network it trains (`model_config`: LoRA adds adapters) and
which of that network's parameters are trained (`is_trainable` on a parameter path);
the rest are frozen, stored in `frozen_dtype`, never differentiated and never in the
optimizer state or the train checkpoints. `split` and `combine` move between the whole
parameter tree and its (trained, frozen) halves.

    train.trainable = @trainable_parameters()
    trainable_parameters.name = 'lora'
    trainable_parameters.lora = @LoraConfig()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol

from flax import traverse_util

from aya_t5x import registry
from aya_t5x.adapters.lora import LoraConfig, is_adapter_path
from aya_t5x.model_config import MT5Config


class TrainableSet(Protocol):
  """The parameters a run trains (see the module docstring)."""

  name: str

  def model_config(self, config: MT5Config) -> MT5Config: ...

  def is_trainable(self, path: tuple[str, ...]) -> bool: ...

  @property
  def frozen_dtype(self) -> str | None: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class AllParameters:
  """Full fine-tuning: every parameter trains; nothing is frozen."""

  name: str = "all"

  def model_config(self, config: MT5Config) -> MT5Config:
    return config

  def is_trainable(self, path: tuple[str, ...]) -> bool:
    return True

  @property
  def frozen_dtype(self) -> str | None:
    return None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraAdapters:
  """LoRA: only the adapters train; the base network is frozen (in `lora.base_dtype`)."""

  lora: LoraConfig = LoraConfig()
  name: str = "lora"

  def model_config(self, config: MT5Config) -> MT5Config:
    return dataclasses.replace(config, lora=self.lora)

  def is_trainable(self, path: tuple[str, ...]) -> bool:
    return is_adapter_path(path)

  @property
  def frozen_dtype(self) -> str | None:
    return self.lora.base_dtype


ALL = AllParameters()
_REGISTRY = {"all": lambda lora: ALL,
             "lora": lambda lora: LoraAdapters(lora=lora or LoraConfig())}


def trainable_parameters(name: str = "all", lora: LoraConfig | None = None) -> TrainableSet:
  """The trainable set registered as `name` (for gin: `@trainable_parameters()`)."""
  return registry.lookup(_REGISTRY, name, what="trainable parameter set")(lora)


def split(params: Mapping[str, Any], trainable: TrainableSet) -> tuple[dict, dict]:
  """(trained, frozen) halves of a parameter tree (or of a tree of shapes or axes)."""
  flat = traverse_util.flatten_dict(dict(params))
  trained = {k: v for k, v in flat.items() if trainable.is_trainable(k)}
  frozen = {k: v for k, v in flat.items() if not trainable.is_trainable(k)}
  return traverse_util.unflatten_dict(trained), traverse_util.unflatten_dict(frozen)


def combine(trained: Mapping[str, Any], frozen: Mapping[str, Any]) -> dict:
  """The whole parameter tree from its halves (the inverse of `split`)."""
  flat = traverse_util.flatten_dict(dict(frozen))
  flat.update(traverse_util.flatten_dict(dict(trained)))
  return traverse_util.unflatten_dict(flat)
