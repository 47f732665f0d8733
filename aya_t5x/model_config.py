"""The configuration of one mT5 network (`MT5Config`) and the names it may choose from.

A model size is one gin file binding `MT5Config` (`gin/models/mt5_*.gin`). The activation
functions of the gated MLP and the rematerialisation policies live here, beside the
fields that name them, so that the blocks (`aya_t5x.layers`) and the network
(`aya_t5x.model`) both read the configuration without importing each other.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from aya_t5x.adapters.lora import LoraConfig

Array = jax.Array

# The MLP's activation functions by the name `MT5Config.mlp_activations` uses.
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    # T5 v1.1 and mT5 use the tanh approximation ("gelu_new" in Hugging Face).
    "gelu": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_exact": functools.partial(jax.nn.gelu, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "linear": lambda x: x,
}


# Rematerialisation of each layer in the backward pass: what the forward pass may keep.
# 'none' keeps everything (fastest, most memory); 'full' keeps only the layer inputs;
# 'dots' keeps matmul outputs without a batch dimension (T5X's usual trade-off).
REMAT_POLICIES: dict[str, Callable | None] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "dots_saveable": jax.checkpoint_policies.checkpoint_dots,
}


# The attention kernels `MT5Config.attention_implementation` may name (`aya_t5x.attention`),
# and 'auto': the fused kernel of the platform the step runs on
# (`aya_t5x.attention.choose_implementation`).
ATTENTION_IMPLEMENTATIONS = ("xla", "cudnn", "pallas_tpu")
ATTENTION_CHOICES = ("auto", *ATTENTION_IMPLEMENTATIONS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MT5Config:
  """Hyperparameters of one mT5 network; a model size is one gin file binding these.

  `dtype` is the activation (compute) dtype and `param_dtype` the storage dtype of the
  parameters; the recipe trains with bfloat16 activations and float32 parameters.
  `scan_layers` runs each stack's layers as one scanned module with stacked parameters
  (fast compilation of large models; see `aya_t5x.layer_stack`).
  `float32_attention_logits` casts queries and keys to float32 before their product (as
  T5X does); without it they stay in the activation dtype and the product still
  accumulates and returns float32.
  `attention_implementation`: 'xla' (the reference), 'cudnn' (GPU, bfloat16 or float16
  activations), 'pallas_tpu' (TPU flash attention) or 'auto' (the platform's fused
  kernel, chosen where the step is built); see `aya_t5x.attention`.
  `dropout_rate` applies to the embeddings, residual branches and MLP hidden layer;
  `attention_dropout_rate` to the attention weights (None: the same as `dropout_rate`,
  as in T5).
  `lora`: LoRA adapters on the kernels it names (`aya_t5x.adapters.lora`); None: none.
  """

  vocab_size: int = 250_112
  d_model: int
  num_heads: int
  d_kv: int = 64
  d_ff: int
  num_encoder_layers: int
  num_decoder_layers: int
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.0
  attention_dropout_rate: float | None = None
  layer_norm_epsilon: float = 1e-6
  mlp_activations: tuple[str, ...] = ("gelu", "linear")
  dtype: str = "float32"
  param_dtype: str = "float32"
  float32_attention_logits: bool = True
  remat_policy: str = "none"
  scan_layers: bool = False
  attention_implementation: str = "xla"
  lora: LoraConfig | None = None

  def __post_init__(self):
    for name in ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff",
                 "num_encoder_layers", "num_decoder_layers"):
      value = getattr(self, name)
      if not isinstance(value, int) or value <= 0:
        raise ValueError(f"MT5Config.{name} must be a positive integer, got {value!r}.")
    unknown = [a for a in self.mlp_activations if a not in ACTIVATIONS]
    if unknown or not self.mlp_activations:
      raise ValueError(
          f"MT5Config.mlp_activations={self.mlp_activations!r}: unknown {unknown}; "
          f"choose from {sorted(ACTIVATIONS)}.")
    for name in ("dtype", "param_dtype"):
      try:
        jnp.dtype(getattr(self, name))
      except TypeError as e:
        raise ValueError(
            f"MT5Config.{name}={getattr(self, name)!r} is not a dtype; use 'float32' or "
            "'bfloat16'.") from e
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"MT5Config.remat_policy={self.remat_policy!r}; choose from "
                       f"{sorted(REMAT_POLICIES)}.")
    if self.attention_implementation not in ATTENTION_CHOICES:
      raise ValueError(f"MT5Config.attention_implementation="
                       f"{self.attention_implementation!r}; choose from "
                       f"{list(ATTENTION_CHOICES)}.")
    if self.attention_implementation == "cudnn" and self.dtype not in ("bfloat16", "float16"):
      raise ValueError(f"attention_implementation='cudnn' needs bfloat16 or float16 "
                       f"activations (cuDNN's flash attention), not dtype={self.dtype!r}; "
                       "set MT5Config.dtype='bfloat16' or use 'xla'.")
    for name in ("dropout_rate", "attention_dropout_rate"):
      rate = getattr(self, name)
      if rate is not None and not 0.0 <= rate < 1.0:
        raise ValueError(f"MT5Config.{name} must be in [0, 1), got {rate}.")

  @property
  def attention_dropout(self) -> float:
    """The dropout rate of the attention weights."""
    if self.attention_dropout_rate is None:
      return self.dropout_rate
    return self.attention_dropout_rate

  @property
  def activation_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  @property
  def joined_kv(self) -> int:
    return self.num_heads * self.d_kv

