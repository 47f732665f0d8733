"""The building blocks of mT5: relative position bias, attention masks, dense, RMS norm,
embedding, multi-head attention with its decoding caches, and the gated MLP.

Each block reads its sizes from an `MT5Config` (`aya_t5x.model_config`), creates its parameters
with `nn.with_logical_partitioning` under T5X's names and logical axes, and constrains its
main activations with `nn.with_logical_constraint`; `aya_t5x.model` assembles them into
the encoder, the decoder and the network.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aya_t5x import attention
from aya_t5x.adapters import lora as lora_lib
from aya_t5x.attention import AttentionBias
from aya_t5x.model_config import ACTIVATIONS, MT5Config

Array = jax.Array
Initializer = Callable[..., Array]




# ----------------------------------------------------------------------------------------
# Relative positions
# ----------------------------------------------------------------------------------------


def relative_position_bucket(relative_position: Array, *, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> Array:
  """Maps `key_position - query_position` to T5's log-spaced buckets.

  Half the buckets (all of them when causal) cover exact offsets below
  `num_buckets // 2`; the rest grow logarithmically up to `max_distance`, beyond which
  everything shares the last bucket. In the bidirectional case keys after the query use
  the upper half of the buckets. The float32 arithmetic matches the reference
  implementation, so that bucket boundaries agree exactly.
  """
  relative_position = jnp.asarray(relative_position, jnp.int32)
  buckets = jnp.zeros_like(relative_position)
  if bidirectional:
    num_buckets //= 2
    buckets += (relative_position > 0).astype(jnp.int32) * num_buckets
    distance = jnp.abs(relative_position)
  else:
    distance = -jnp.minimum(relative_position, 0)
  max_exact = num_buckets // 2
  is_small = distance < max_exact
  # Clamp before the log so that distance 0 does not produce -inf (it is "small" anyway).
  safe = jnp.maximum(distance, 1).astype(jnp.float32)
  log_ratio = jnp.log(safe / max_exact) / np.float32(np.log(max_distance / max_exact))
  if_large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
  if_large = jnp.minimum(if_large, num_buckets - 1)
  return buckets + jnp.where(is_small, distance, if_large)


class RelativePositionBias(nn.Module):
  """One learned scalar per (head, bucket), shared by every layer of a stack."""

  config: MT5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, query_positions: Array, key_positions: Array) -> Array:
    """Returns the bias [batch or 1, heads, q_length, k_length] in the activation dtype.

    Computed once per stack and shared by its layers. Packed rows need no positions of
    their own: within one example, key minus query position equals the difference of
    the row indices, and pairs across examples are masked; so the bias of
    `arange(length)` positions, [1, heads, q, k], serves every row.

    Args:
      query_positions: int [batch or 1, q_length].
      key_positions: int [batch or 1, k_length].
    """
    cfg = self.config
    table = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
            ("heads", "relpos_buckets")),
        (cfg.num_heads, cfg.relative_attention_num_buckets), cfg.parameter_dtype)
    relative = key_positions[:, None, :] - query_positions[:, :, None]
    buckets = relative_position_bucket(
        relative, bidirectional=self.bidirectional,
        num_buckets=cfg.relative_attention_num_buckets,
        max_distance=cfg.relative_attention_max_distance)
    # A gather from the [heads, buckets] table by [b, q, k] -> [heads, b, q, k].
    bias = jnp.take(jnp.asarray(table, cfg.activation_dtype), buckets, axis=1)
    return jnp.swapaxes(bias, 0, 1)


# ----------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------


class Dense(nn.Module):
  """A bias-free projection whose kernel is stored 2-D, as T5X stores it.

  When `config.lora` names this module, a LoRA adapter adds its low-rank update
  (`aya_t5x.adapters.lora`); its dropout is active unless `deterministic`.
  """

  features: int
  kernel_axes: tuple[str, str]
  kernel_init: Initializer
  config: MT5Config

  @nn.compact
  def __call__(self, inputs: Array, *, deterministic: bool = True) -> Array:
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
        (inputs.shape[-1], self.features), self.config.parameter_dtype)
    dtype = self.config.activation_dtype
    # A 2-D matmul (leading dims flattened) keeps the backward pass's weight gradient a
    # plain matmul too; contracting over [batch, length] directly is ~1.7x slower on CPU.
    flat = inputs.reshape(-1, inputs.shape[-1]).astype(dtype)
    out = jnp.dot(flat, jnp.asarray(kernel, dtype))
    lora = self.config.lora
    if lora is not None and self.name in lora.targets:
      out = out + lora_lib.lora_delta(self, lora, flat, self.kernel_axes, self.features, dtype,
                                      deterministic=deterministic)
    return out.reshape(inputs.shape[:-1] + (self.features,))


class RMSNorm(nn.Module):
  """T5's layer norm: scale only, no mean subtraction, no bias; computed in float32."""

  config: MT5Config

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    scale = self.param(
        "scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        (inputs.shape[-1],), self.config.parameter_dtype)
    x = inputs.astype(jnp.float32)
    variance = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
    x = x * jax.lax.rsqrt(variance + self.config.layer_norm_epsilon)
    return (x * jnp.asarray(scale, jnp.float32)).astype(self.config.activation_dtype)


class Embed(nn.Module):
  """The token embedding table shared by the encoder and the decoder inputs."""

  config: MT5Config

  def setup(self):
    self.embedding = self.param(
        "embedding",
        nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        (self.config.vocab_size, self.config.d_model), self.config.parameter_dtype)

  def __call__(self, tokens: Array) -> Array:
    embedded = jnp.take(jnp.asarray(self.embedding), tokens, axis=0)
    return embedded.astype(self.config.activation_dtype)


class MultiHeadAttention(nn.Module):
  """Dot-product attention without the 1/sqrt(d_kv) factor (T5 folds it into the init)."""

  config: MT5Config

  @nn.compact
  def __call__(self, queries_in: Array, keys_in: Array | None, bias: AttentionBias, *,
               deterministic: bool, decode: bool = False, cache_index: Array | None = None,
               cache_length: int | None = None) -> Array:
    """Attends `queries_in` [b, q, embed] to `keys_in` [b, k, embed] with `bias`.

    `bias` holds the relative position bias and the mask; `config.attention_implementation`
    picks the kernel (`aya_t5x.attention`), which applies `config.attention_dropout` to
    the attention weights unless `deterministic`. With `decode=True` the keys come from the
    'cache' collection (see `_cached_keys_values`) and attention is always 'xla'.
    """
    cfg = self.config
    fan_in = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

    def query_init(*args):
      return fan_in(*args) / np.sqrt(cfg.d_kv).astype(np.float32)

    # Heads next to batch ([b, h, len, kv]) make both attention products plain batched
    # matmuls; with heads between the lengths XLA's CPU dots run ~3x slower (measured).
    def project(name: str, inputs: Array, init: Initializer) -> Array:
      x = Dense(cfg.joined_kv, ("embed", "joined_kv"), init, cfg, name=name)(
          inputs, deterministic=deterministic)
      x = jnp.swapaxes(x.reshape(x.shape[:2] + (cfg.num_heads, cfg.d_kv)), 1, 2)
      return nn.with_logical_constraint(x, ("batch", "heads", "length", "kv"))

    query = project("query", queries_in, query_init)
    if decode:
      key, value = self._cached_keys_values(project, fan_in, keys_in, cache_index, cache_length)
    else:
      key = project("key", keys_in, fan_in)
      value = project("value", keys_in, fan_in)

    implementation = "xla" if decode else cfg.attention_implementation
    if implementation == "auto":  # not chosen by the caller: the platform it runs on
      implementation = attention.choose_implementation(
          cfg, jax.default_backend(), (query.shape[2], key.shape[2])).attention_implementation
    rate = 0.0 if deterministic else cfg.attention_dropout
    if implementation == "xla":
      attended = self._xla_attention(query, key, value, bias, rate)
    else:
      refusal = attention.dropout_refusal(implementation, rate, scan_layers=cfg.scan_layers)
      if refusal:
        raise ValueError(
            f"attention_implementation={implementation!r} cannot apply "
            f"MT5Config.attention_dropout_rate={rate}: {refusal}; or set "
            "MT5Config.attention_dropout_rate=0.0, or use 'xla'.")
      attended = attention.fused_attention(
          implementation, query, key.astype(query.dtype), value.astype(query.dtype), bias,
          dropout_rate=rate, dropout_rng=self.make_rng("dropout") if rate > 0 else None,
          call_site="/".join(self.scope.path))
    attended = jnp.swapaxes(attended, 1, 2)
    attended = attended.reshape(attended.shape[:2] + (cfg.joined_kv,))
    attended = nn.with_logical_constraint(attended, ("batch", "length", "joined_kv"))
    return Dense(cfg.d_model, ("joined_kv", "embed"), fan_in, cfg, name="out")(
        attended, deterministic=deterministic)

  def _xla_attention(self, query: Array, key: Array, value: Array, bias: AttentionBias,
                     rate: float) -> Array:
    """The reference attention [b, heads, q, kv]: softmax over float32 logits in XLA."""
    cfg = self.config
    if cfg.float32_attention_logits:
      query, key = query.astype(jnp.float32), key.astype(jnp.float32)
    value = value.astype(cfg.activation_dtype)
    # Without float32 inputs the product still accumulates and returns float32 (a bf16
    # tensor-core product on GPU and TPU); only the queries and keys are rounded.
    logits = jnp.einsum("bhqd,bhkd->bhqk", query, key, preferred_element_type=jnp.float32)
    logits = logits + bias.additive(query.shape[2])
    weights = jax.nn.softmax(logits, axis=-1).astype(cfg.activation_dtype)
    weights = nn.Dropout(rate)(weights, deterministic=rate == 0)
    return jnp.einsum("bhqk,bhkd->bhqd", weights, value)

  def _cached_keys_values(self, project: Callable, init: Initializer, keys_in: Array | None,
                          cache_index: Array | None, cache_length: int | None
                          ) -> tuple[Array, Array]:
    """Keys and values [b, heads, k, kv] (heads-major, as cached) for incremental decoding.

    Self-attention (`cache_index` given) writes the new keys and values at `cache_index`
    into zero-initialised buffers of `cache_length` positions and attends over the whole
    buffer (the caller's bias hides unwritten positions), so every step has static shapes.
    Cross-attention (`cache_index` None) projects the encoder output when given (the first
    call) and reads it back afterwards: it does not change while a sequence is decoded.
    The buffers are stored heads-major, the order the attention products read, so that
    no step copies a whole buffer into that order (in beam search on CPU, those copies
    were a fifth of the time).
    """
    axes = ("batch", "heads", "length", "kv")
    if cache_index is None:
      if keys_in is not None:
        for name in ("key", "value"):
          self.put_variable("cache", f"cached_{name}", project(name, keys_in, init))
      elif not self.has_variable("cache", "cached_key"):
        raise ValueError("Cross-attention has no cache yet: the first decode=True call must "
                         "pass the encoder output.")
      return self.get_variable("cache", "cached_key"), self.get_variable("cache", "cached_value")
    cached = []
    for name in ("key", "value"):
      new = project(name, keys_in, init)
      buffer = self.variable("cache", f"cached_{name}", jnp.zeros,
                             new.shape[:2] + (cache_length,) + new.shape[3:], new.dtype)
      buffer.value = nn.with_logical_constraint(
          jax.lax.dynamic_update_slice(buffer.value, new, (0, 0, cache_index, 0)), axes)
      cached.append(buffer.value)
    return cached[0], cached[1]


class MlpBlock(nn.Module):
  """The gated feed-forward block: activation(wi_0 x) * wi_1 x, then wo."""

  config: MT5Config

  @nn.compact
  def __call__(self, inputs: Array, *, deterministic: bool) -> Array:
    cfg = self.config
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    hidden = None
    for i, activation in enumerate(cfg.mlp_activations):
      branch = ACTIVATIONS[activation](
          Dense(cfg.d_ff, ("embed", "mlp"), init, cfg, name=f"wi_{i}")(
              inputs, deterministic=deterministic))
      hidden = branch if hidden is None else hidden * branch
    hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
    return Dense(cfg.d_model, ("mlp", "embed"), init, cfg, name="wo")(
        hidden, deterministic=deterministic)
