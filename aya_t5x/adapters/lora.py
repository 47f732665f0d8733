"""LoRA: a low-rank update `(alpha / rank) * dropout(x) @ A @ B` beside a frozen kernel.

`LoraConfig` names the kernels that get adapters (by their T5X module names: 'query',
'key', 'value', 'out', 'wi_0', 'wi_1', 'wo', 'logits_dense'), the rank, alpha, the
adapter dropout and the storage dtypes. It is a field of `MT5Config` (`lora`), so every
place that builds the network (training, teacher-forced eval, decoding, AOT compiles)
builds the adapted one from the config alone.

`Dense` (`aya_t5x.layers`) calls `lora_delta` for its own name: A [in, rank] is drawn
like Hugging Face peft's default (Kaiming-uniform with a = sqrt(5)), B [rank, out]
starts at zero, so an untrained adapter leaves the network exactly as it was. Both carry
logical axes (the kernel's input axis and 'lora_rank'; 'lora_rank' and the kernel's
output axis), so every partitioning preset shards them like their kernels.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

# Every kernel an adapter may be attached to, by the module name T5X gives it.
ATTENTION_KERNELS = ("query", "key", "value", "out")
MLP_KERNELS = ("wi_0", "wi_1", "wo")
TARGETS = ATTENTION_KERNELS + MLP_KERNELS + ("logits_dense",)
RANK_AXIS = "lora_rank"  # the logical name of the rank axis (replicated by every preset)
A_NAME, B_NAME = "lora_a", "lora_b"


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoraConfig:
  """Which kernels get a LoRA adapter, and its shape.

  targets: kernel names from `TARGETS`; each names the kernel in every layer and in
    both stacks (self- and cross-attention alike).
  rank, alpha: the update is scaled by alpha / rank (peft's `lora_alpha`, `r`).
  dropout: dropout on the adapter's input, only while training (peft's `lora_dropout`).
  param_dtype: storage dtype of A and B (trained: float32).
  base_dtype: storage dtype of the frozen base parameters while training adapters
    ('bfloat16' halves their memory; they are never updated, so no precision is lost
    to accumulation).
  """

  targets: tuple[str, ...] = ATTENTION_KERNELS + MLP_KERNELS
  rank: int = 16
  alpha: float = 32.0
  dropout: float = 0.0
  param_dtype: str = "float32"
  base_dtype: str = "float32"

  def __post_init__(self):
    object.__setattr__(self, "targets", tuple(self.targets))
    unknown = [t for t in self.targets if t not in TARGETS]
    if unknown or not self.targets:
      raise ValueError(f"LoraConfig.targets={self.targets!r}: unknown {unknown}; choose "
                       f"from {list(TARGETS)}.")
    if not isinstance(self.rank, int) or self.rank < 1:
      raise ValueError(f"LoraConfig.rank must be a positive integer, got {self.rank!r}.")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"LoraConfig.dropout must be in [0, 1), got {self.dropout}.")
    for name in ("param_dtype", "base_dtype"):
      try:
        jnp.dtype(getattr(self, name))
      except TypeError as e:
        raise ValueError(f"LoraConfig.{name}={getattr(self, name)!r} is not a dtype; use "
                         "'float32' or 'bfloat16'.") from e

  @property
  def scale(self) -> float:
    return self.alpha / self.rank

  def to_dict(self) -> dict:
    return dataclasses.asdict(self) | {"targets": list(self.targets)}

  @classmethod
  def from_dict(cls, fields: dict) -> LoraConfig:
    return cls(**{**fields, "targets": tuple(fields["targets"])})


def a_init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """peft's default for A: Kaiming-uniform with a = sqrt(5), i.e. U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(shape[0])
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def lora_delta(module: nn.Module, lora: LoraConfig, inputs: jax.Array,
               kernel_axes: tuple[str, str], features: int, dtype: jnp.dtype, *,
               deterministic: bool) -> jax.Array:
  """The adapter's update for 2-D `inputs` [tokens, in] -> [tokens, features].

  Creates `lora_a` and `lora_b` in `module` (a `Dense`). The two small products run in
  the activation dtype, like the kernel's; dropout draws from the 'dropout' rng.
  """
  param_dtype = jnp.dtype(lora.param_dtype)
  a = module.param(A_NAME, nn.with_logical_partitioning(a_init, (kernel_axes[0], RANK_AXIS)),
                   (inputs.shape[-1], lora.rank), param_dtype)
  b = module.param(B_NAME, nn.with_logical_partitioning(nn.initializers.zeros,
                                                        (RANK_AXIS, kernel_axes[1])),
                   (lora.rank, features), param_dtype)
  x = nn.Dropout(lora.dropout, name="lora_dropout")(inputs, deterministic=deterministic)
  low = jnp.dot(x, jnp.asarray(a, dtype))
  return jnp.dot(low * jnp.asarray(lora.scale, dtype), jnp.asarray(b, dtype))


def is_adapter_path(path: tuple[str, ...]) -> bool:
  """Whether a parameter path (tuple of keys) is a LoRA A or B."""
  return bool(path) and path[-1] in (A_NAME, B_NAME)


def merged_kernel(dense_params: dict, lora: LoraConfig) -> jax.Array:
  """`kernel + (alpha / rank) A @ B` in float32: the kernel the adapted `Dense` computes."""
  kernel = jnp.asarray(dense_params["kernel"], jnp.float32)
  if A_NAME not in dense_params:
    return kernel
  delta = jnp.dot(jnp.asarray(dense_params[A_NAME], jnp.float32),
                  jnp.asarray(dense_params[B_NAME], jnp.float32))
  return kernel + lora.scale * delta


def output_kernel(dense_params: dict, config) -> jax.Array:
  """The output projection's kernel for the tiled loss (`aya_t5x.vocab_tiling`).

  The tiled loss multiplies the decoder's hidden states by the kernel itself, tile by
  tile; with an adapter on 'logits_dense' it takes the merged kernel instead (the
  gradient reaches A and B through the merge). Adapter dropout cannot apply to a merged
  kernel, so that combination is refused.
  """
  lora = config.lora
  if lora is None or A_NAME not in dense_params:
    return dense_params["kernel"]
  if lora.dropout > 0:
    raise ValueError("LoRA on 'logits_dense' with the tiled loss (LossConfig.vocab_tile_size) "
                     f"merges the adapter, which has no dropout; set LoraConfig.dropout=0 "
                     f"(now {lora.dropout}) or drop 'logits_dense' from LoraConfig.targets.")
  return merged_kernel(dense_params, lora).astype(config.activation_dtype)
