"""Optimisers and learning-rate schedules with T5X semantics, built from optax.

Adafactor as T5X configures it for mT5 fine-tuning: factored second moments for matrices,
decay rate 0.8 (beta2 = 1 - (step + 1)^-0.8), update clipping at RMS 1.0, updates scaled
by the parameter's RMS (at least 1e-3), no momentum, no weight decay. optax's
`adafactor` implements exactly this algorithm; this module fixes its T5X defaults and
adds the schedules T5X users know.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import optax

from aya_t5x import layer_stack
from aya_t5x.model_config import MT5Config

SCHEDULES = ("constant", "linear_warmup", "rsqrt_decay", "cosine")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LearningRateSchedule:
  """A learning rate as a function of the step.

  kind:
    constant: `base_learning_rate` throughout (the Aya recipe: 3e-4).
    linear_warmup: rises linearly from 0 to the base over `warmup_steps`, then constant.
    rsqrt_decay: constant for `warmup_steps`, then base * sqrt(warmup_steps / step)
      (T5X's pre-training schedule, normalised so the base is the peak).
    cosine: linear warmup, then cosine decay to `final_fraction` x base at `decay_steps`.
  """

  kind: str = "constant"
  base_learning_rate: float = 1e-3
  warmup_steps: int = 0
  decay_steps: int = 0
  final_fraction: float = 0.0

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise ValueError(f"LearningRateSchedule.kind={self.kind!r}; choose from {SCHEDULES}.")
    if self.kind == "rsqrt_decay" and self.warmup_steps < 1:
      raise ValueError("rsqrt_decay needs LearningRateSchedule.warmup_steps >= 1 (T5X: 10000).")
    if self.kind == "cosine" and self.decay_steps <= self.warmup_steps:
      raise ValueError("cosine needs LearningRateSchedule.decay_steps > warmup_steps.")

  def __call__(self, step) -> jnp.ndarray:
    step = jnp.asarray(step, jnp.float32)
    base = self.base_learning_rate
    if self.kind == "constant":
      return jnp.full_like(step, base)
    warmup = jnp.minimum(1.0, step / max(self.warmup_steps, 1)) if self.warmup_steps else 1.0
    if self.kind == "linear_warmup":
      return base * warmup * jnp.ones_like(step)
    if self.kind == "rsqrt_decay":
      return base * jnp.sqrt(self.warmup_steps / jnp.maximum(step, self.warmup_steps))
    progress = jnp.clip((step - self.warmup_steps) / (self.decay_steps - self.warmup_steps),
                        0.0, 1.0)
    cosine = self.final_fraction + (1 - self.final_fraction) * 0.5 * (
        1 + jnp.cos(jnp.pi * progress))
    return base * warmup * cosine


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdafactorConfig:
  """Adafactor hyperparameters; the defaults are T5X's for mT5."""

  decay_rate: float = 0.8
  clipping_threshold: float = 1.0
  multiply_by_parameter_scale: bool = True
  min_dim_size_to_factor: int = 128
  epsilon: float = 1e-30
  momentum: float | None = None
  weight_decay_rate: float | None = None
  global_gradient_clip_norm: float | None = None


def make_optimizer(schedule: LearningRateSchedule,
                   config: AdafactorConfig = AdafactorConfig()) -> optax.GradientTransformation:
  """Adafactor driven by `schedule`, optionally after global-norm gradient clipping."""
  adafactor = optax.adafactor(
      learning_rate=schedule,
      min_dim_size_to_factor=config.min_dim_size_to_factor,
      decay_rate=config.decay_rate,
      multiply_by_parameter_scale=config.multiply_by_parameter_scale,
      clipping_threshold=config.clipping_threshold,
      momentum=config.momentum,
      weight_decay_rate=config.weight_decay_rate,
      eps=config.epsilon,
      factored=True)
  if config.global_gradient_clip_norm:
    return optax.chain(optax.clip_by_global_norm(config.global_gradient_clip_norm), adafactor)
  return adafactor


def make_run_optimizer(model_config: MT5Config, schedule: LearningRateSchedule,
                       optimizer: AdafactorConfig) -> optax.GradientTransformation:
  """The optimizer of a run; with scanned layers it still works per layer."""
  if not model_config.scan_layers:
    return make_optimizer(schedule, optimizer)
  # The global norm is the same in both layouts: clip before the per-layer update, as the
  # unscanned chain does (its state has the same structure too).
  clip = optimizer.global_gradient_clip_norm
  per_layer = layer_stack.per_layer_optimizer(make_optimizer(
      schedule, dataclasses.replace(optimizer, global_gradient_clip_norm=None)))
  return optax.chain(optax.clip_by_global_norm(clip), per_layer) if clip else per_layer
