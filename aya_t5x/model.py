"""mT5 (the T5 v1.1 encoder-decoder) in Flax linen, with T5X parameter names and logical axes.

The network follows the T5X layout one to one, so that T5X checkpoints map without a
table and Hugging Face checkpoints map by a fixed one (see `aya_t5x.checkpoints.hf`):

    token_embedder/embedding                      [vocab, embed]
    encoder/relpos_bias/rel_embedding             [heads, relpos_buckets]
    encoder/layers_N/pre_attention_layer_norm/scale
    encoder/layers_N/attention/{query,key,value}/kernel   [embed, joined_kv]
    encoder/layers_N/attention/out/kernel         [joined_kv, embed]
    encoder/layers_N/pre_mlp_layer_norm/scale
    encoder/layers_N/mlp/{wi_0,wi_1}/kernel       [embed, mlp]
    encoder/layers_N/mlp/wo/kernel                [mlp, embed]
    encoder/encoder_norm/scale
    decoder/layers_N/{self_attention,encoder_decoder_attention}/...
    decoder/layers_N/pre_{self,cross}_attention_layer_norm/scale
    decoder/decoder_norm/scale, decoder/relpos_bias/rel_embedding
    decoder/logits_dense/kernel                   [embed, vocab]

Every parameter is created with `nn.with_logical_partitioning`, and the main activations
carry `nn.with_logical_constraint`; the mapping from logical to mesh axes lives in gin
(`gin/partitioning/*.gin`). This module never names a mesh axis.

Packed inputs: segment ids keep attention inside one example (pad tokens are segment 0),
and positions, when given, restart at 0 in each example, so that the relative position
bias sees each example's own offsets.

Incremental decoding (`MT5.decode(..., decode=True)`) keeps the decoder's `cache_index` and
each attention layer's `cached_key`/`cached_value` [batch, length, heads, kv] in the flax
'cache' collection; the encoder-decoder keys are projected once per sequence.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aya_t5x import layer_stack

Array = jax.Array
Initializer = Callable[..., Array]

# Additive attention bias for masked positions; large enough that exp() underflows to 0
# in float32 and bfloat16, small enough that adding two of them stays finite.
_MASKED_BIAS = -1e10

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
  layer_norm_epsilon: float = 1e-6
  mlp_activations: tuple[str, ...] = ("gelu", "linear")
  dtype: str = "float32"
  param_dtype: str = "float32"
  float32_attention_logits: bool = True
  remat_policy: str = "none"
  scan_layers: bool = False

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
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"MT5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}.")

  @property
  def activation_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def parameter_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)

  @property
  def joined_kv(self) -> int:
    return self.num_heads * self.d_kv


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
    """Returns the bias [batch or 1, heads, q_length, k_length] in float32.

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
    # [heads, buckets] gathered by [b, q, k] -> [b, q, k, heads] -> [b, heads, q, k].
    bias = jnp.asarray(table, jnp.float32).T[buckets]
    return jnp.transpose(bias, (0, 3, 1, 2))


# ----------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------


def attention_mask_bias(key_valid: Array, *, causal: bool = False,
                        query_segment_ids: Array | None = None,
                        key_segment_ids: Array | None = None,
                        query_length: int | None = None) -> Array:
  """Additive float32 bias [batch, 1, q_length, k_length]: 0 where attention is allowed.

  Only keys are masked, never queries: a padded query row still attends somewhere (its
  output is ignored downstream), which keeps every softmax row well defined.
  """
  batch, k_len = key_valid.shape
  q_len = query_length if query_length is not None else k_len
  allowed = jnp.broadcast_to(key_valid[:, None, :], (batch, q_len, k_len))
  if causal:
    allowed &= jnp.tril(jnp.ones((q_len, k_len), jnp.bool_))[None]
  if query_segment_ids is not None and key_segment_ids is not None:
    allowed &= query_segment_ids[:, :, None] == key_segment_ids[:, None, :]
  return jnp.where(allowed, 0.0, _MASKED_BIAS).astype(jnp.float32)[:, None]


# ----------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------


class Dense(nn.Module):
  """A bias-free projection whose kernel is stored 2-D, as T5X stores it."""

  features: int
  kernel_axes: tuple[str, str]
  kernel_init: Initializer
  config: MT5Config

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    kernel = self.param(
        "kernel", nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
        (inputs.shape[-1], self.features), self.config.parameter_dtype)
    dtype = self.config.activation_dtype
    # A 2-D matmul (leading dims flattened) keeps the backward pass's weight gradient a
    # plain matmul too; contracting over [batch, length] directly is ~1.7x slower on CPU.
    flat = inputs.reshape(-1, inputs.shape[-1]).astype(dtype)
    out = jnp.dot(flat, jnp.asarray(kernel, dtype))
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
  def __call__(self, queries_in: Array, keys_in: Array | None, bias: Array, *,
               deterministic: bool, decode: bool = False, cache_index: Array | None = None,
               cache_length: int | None = None) -> Array:
    """Attends `queries_in` [b, q, embed] to `keys_in` [b, k, embed] with `bias`.

    `bias` is additive and broadcastable to [b, heads, q, k] (masks plus relative
    positions, float32). With `decode=True` the keys come from the 'cache' collection
    (see `_cached_keys_values`).
    """
    cfg = self.config
    fan_in = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

    def query_init(*args):
      return fan_in(*args) / np.sqrt(cfg.d_kv).astype(np.float32)

    def project(name: str, inputs: Array, init: Initializer) -> Array:
      x = Dense(cfg.joined_kv, ("embed", "joined_kv"), init, cfg, name=name)(inputs)
      x = x.reshape(x.shape[:2] + (cfg.num_heads, cfg.d_kv))
      return nn.with_logical_constraint(x, ("batch", "length", "heads", "kv"))

    query = project("query", queries_in, query_init)
    if decode:
      key, value = self._cached_keys_values(project, fan_in, keys_in, cache_index, cache_length)
    else:
      key = project("key", keys_in, fan_in)
      value = project("value", keys_in, fan_in)

    if cfg.float32_attention_logits:
      query, key = query.astype(jnp.float32), key.astype(jnp.float32)
    # Heads next to batch ([b, h, len, kv]) make both attention products plain batched
    # matmuls; with heads between the lengths XLA's CPU dots run ~3x slower (measured).
    query, key = jnp.swapaxes(query, 1, 2), jnp.swapaxes(key, 1, 2)
    value = jnp.swapaxes(value.astype(cfg.activation_dtype), 1, 2)
    # Without float32 inputs the product still accumulates and returns float32 (a bf16
    # tensor-core product on GPU and TPU); only the queries and keys are rounded.
    logits = jnp.einsum("bhqd,bhkd->bhqk", query, key, preferred_element_type=jnp.float32)
    logits = logits + bias
    weights = jax.nn.softmax(logits, axis=-1).astype(cfg.activation_dtype)
    weights = nn.Dropout(cfg.dropout_rate)(weights, deterministic=deterministic)
    attended = jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", weights, value), 1, 2)
    attended = attended.reshape(attended.shape[:2] + (cfg.joined_kv,))
    attended = nn.with_logical_constraint(attended, ("batch", "length", "joined_kv"))
    return Dense(cfg.d_model, ("joined_kv", "embed"), fan_in, cfg, name="out")(attended)

  def _cached_keys_values(self, project: Callable, init: Initializer, keys_in: Array | None,
                          cache_index: Array | None, cache_length: int | None
                          ) -> tuple[Array, Array]:
    """Keys and values [b, k, heads, kv] for incremental decoding.

    Self-attention (`cache_index` given) writes the new keys and values at `cache_index`
    into zero-initialised buffers of `cache_length` positions and attends over the whole
    buffer (the caller's bias hides unwritten positions), so every step has static shapes.
    Cross-attention (`cache_index` None) projects the encoder output when given (the first
    call) and reads it back afterwards: it does not change while a sequence is decoded.
    """
    axes = ("batch", "length", "heads", "kv")
    if cache_index is None:
      if keys_in is not None:
        for name in ("key", "value"):
          self.put_variable("cache", f"cached_{name}",
                            nn.with_logical_constraint(project(name, keys_in, init), axes))
      elif not self.has_variable("cache", "cached_key"):
        raise ValueError("Cross-attention has no cache yet: the first decode=True call must "
                         "pass the encoder output.")
      return self.get_variable("cache", "cached_key"), self.get_variable("cache", "cached_value")
    cached = []
    for name in ("key", "value"):
      new = project(name, keys_in, init)
      buffer = self.variable("cache", f"cached_{name}", jnp.zeros,
                             (new.shape[0], cache_length) + new.shape[2:], new.dtype)
      buffer.value = nn.with_logical_constraint(
          jax.lax.dynamic_update_slice(buffer.value, new, (0, cache_index, 0, 0)), axes)
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
          Dense(cfg.d_ff, ("embed", "mlp"), init, cfg, name=f"wi_{i}")(inputs))
      hidden = branch if hidden is None else hidden * branch
    hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
    hidden = nn.Dropout(cfg.dropout_rate)(hidden, deterministic=deterministic)
    return Dense(cfg.d_model, ("mlp", "embed"), init, cfg, name="wo")(hidden)


def _residual(module: nn.Module, branch: Array, residual: Array, deterministic: bool) -> Array:
  branch = nn.Dropout(module.config.dropout_rate)(branch, deterministic=deterministic)
  return nn.with_logical_constraint(branch + residual, ("batch", "length", "embed"))


class EncoderLayer(nn.Module):
  """Pre-norm self-attention and MLP, each with a residual connection.

  Inside a scan (`scanned=True`) it returns `(output, None)`, the scan's carry and output.
  """

  config: MT5Config
  scanned: bool = False

  @nn.compact
  def __call__(self, x: Array, bias: Array, deterministic: bool):
    cfg = self.config
    h = RMSNorm(cfg, name="pre_attention_layer_norm")(x)
    h = MultiHeadAttention(cfg, name="attention")(h, h, bias, deterministic=deterministic)
    x = _residual(self, h, x, deterministic)
    h = RMSNorm(cfg, name="pre_mlp_layer_norm")(x)
    h = MlpBlock(cfg, name="mlp")(h, deterministic=deterministic)
    x = _residual(self, h, x, deterministic)
    return (x, None) if self.scanned else x


class DecoderLayer(nn.Module):
  """Causal self-attention, attention over the encoder output, then the MLP.

  Inside a scan (`scanned=True`) it returns `(output, None)`, the scan's carry and output.
  """

  config: MT5Config
  scanned: bool = False

  @nn.compact
  def __call__(self, x: Array, encoded: Array | None, self_bias: Array, cross_bias: Array,
               deterministic: bool, decode: bool = False, cache_index: Array | None = None,
               max_decode_length: int | None = None):
    cfg = self.config
    h = RMSNorm(cfg, name="pre_self_attention_layer_norm")(x)
    h = MultiHeadAttention(cfg, name="self_attention")(
        h, h, self_bias, deterministic=deterministic, decode=decode, cache_index=cache_index,
        cache_length=max_decode_length)
    x = _residual(self, h, x, deterministic)
    h = RMSNorm(cfg, name="pre_cross_attention_layer_norm")(x)
    h = MultiHeadAttention(cfg, name="encoder_decoder_attention")(
        h, encoded, cross_bias, deterministic=deterministic, decode=decode)
    x = _residual(self, h, x, deterministic)
    h = RMSNorm(cfg, name="pre_mlp_layer_norm")(x)
    h = MlpBlock(cfg, name="mlp")(h, deterministic=deterministic)
    x = _residual(self, h, x, deterministic)
    return (x, None) if self.scanned else x


def _apply_layers(parent: nn.Module, layer: type[nn.Module], count: int, x: Array,
                  *args) -> Array:
  """Runs `count` layers over `x` (same extra `args` each), unrolled or scanned.

  The last of `args` is the static `deterministic` flag. Rematerialisation follows
  `config.remat_policy`; inside a scan, CSE prevention is unnecessary (the loop already
  keeps XLA from merging the recomputation with the forward pass).
  """
  cfg = parent.config
  scan = cfg.scan_layers
  if cfg.remat_policy != "none":
    layer = nn.remat(layer, policy=REMAT_POLICIES[cfg.remat_policy],
                     static_argnums=(len(args) + 1,), prevent_cse=not scan)
  if scan:
    stack = layer_stack.scanned(layer, length=count, num_broadcast_args=len(args))
    x, _ = stack(cfg, scanned=True, name=layer_stack.STACKED)(x, *args)
    return x
  for i in range(count):
    x = layer(cfg, name=f"layers_{i}")(x, *args)
  return x


def _positions_or_arange(positions: Array | None, length: int) -> Array:
  if positions is None:
    return jnp.arange(length, dtype=jnp.int32)[None]
  return positions.astype(jnp.int32)


class Encoder(nn.Module):
  """The bidirectional encoder stack."""

  config: MT5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None, positions: Array | None, *,
               deterministic: bool) -> Array:
    cfg = self.config
    positions = _positions_or_arange(positions, tokens.shape[1])
    bias = RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(
        positions, positions)
    bias = bias + attention_mask_bias(
        tokens > 0, query_segment_ids=segment_ids, key_segment_ids=segment_ids)
    x = self.shared_embedding(tokens)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = _apply_layers(self, EncoderLayer, cfg.num_encoder_layers, x, bias, deterministic)
    x = RMSNorm(cfg, name="encoder_norm")(x)
    return nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """The causal decoder stack and the untied output projection."""

  config: MT5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, encoded: Array | None, encoder_tokens: Array, tokens: Array,
               encoder_segment_ids: Array | None, segment_ids: Array | None,
               positions: Array | None, *, deterministic: bool, decode: bool = False,
               max_decode_length: int | None = None) -> Array:
    cfg = self.config
    if decode:
      packed = any(a is not None for a in (segment_ids, encoder_segment_ids, positions))
      if max_decode_length is None or packed:
        raise ValueError("decode=True needs max_decode_length (the cache's length) and an "
                         "unpacked batch: no segment ids or positions (the cache index is "
                         "the position).")
      if cfg.scan_layers:
        raise ValueError("Incremental decoding uses the per-layer layout: decode with "
                         "scan_layers=False and layer_stack.unstack_layers(params).")
      return self._decode_incrementally(encoded, encoder_tokens, tokens, max_decode_length)
    positions = _positions_or_arange(positions, tokens.shape[1])
    self_bias = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(
        positions, positions)
    self_bias = self_bias + attention_mask_bias(
        jnp.ones(tokens.shape, jnp.bool_), causal=True,
        query_segment_ids=segment_ids, key_segment_ids=segment_ids)
    cross_bias = attention_mask_bias(
        encoder_tokens > 0, query_segment_ids=segment_ids,
        key_segment_ids=encoder_segment_ids, query_length=tokens.shape[1])
    x = self.shared_embedding(tokens)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = _apply_layers(self, DecoderLayer, cfg.num_decoder_layers, x, encoded, self_bias,
                      cross_bias, deterministic)
    return self._logits(x, deterministic)

  def _decode_incrementally(self, encoded: Array | None, encoder_tokens: Array, tokens: Array,
                            max_decode_length: int) -> Array:
    """Logits for `tokens` [b, n] continuing the cached sequence (n = 0 creates the cache).

    Queries sit at cache_index + 0 ... n - 1 and keys at every buffer position, which gives
    the relative position buckets and causal mask of the teacher-forced pass.
    """
    cfg = self.config
    index = self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32))
    query_positions = index.value + jnp.arange(tokens.shape[1], dtype=jnp.int32)[None]
    key_positions = jnp.arange(max_decode_length, dtype=jnp.int32)[None]
    self_bias = RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(
        query_positions, key_positions)
    future = key_positions[:, None, :] > query_positions[:, :, None]
    self_bias = self_bias + jnp.where(future, _MASKED_BIAS, 0.0).astype(jnp.float32)[:, None]
    cross_bias = attention_mask_bias(encoder_tokens > 0, query_length=tokens.shape[1])
    x = nn.with_logical_constraint(self.shared_embedding(tokens), ("batch", "length", "embed"))
    for i in range(cfg.num_decoder_layers):
      # No remat: nothing is differentiated while decoding.
      x = DecoderLayer(cfg, name=f"layers_{i}")(
          x, encoded, self_bias, cross_bias, True, decode=True, cache_index=index.value,
          max_decode_length=max_decode_length)
    index.value = index.value + tokens.shape[1]
    return self._logits(x, deterministic=True)

  def _logits(self, x: Array, deterministic: bool) -> Array:
    cfg = self.config
    x = RMSNorm(cfg, name="decoder_norm")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    logits = Dense(cfg.vocab_size, ("embed", "vocab"),
                   nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"),
                   cfg, name="logits_dense")(x)
    logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
    # Logits stay in the activation dtype: at a 250,112-token vocabulary a float32 copy
    # (and its gradient) would be the largest tensors of the step. Losses and decoding
    # upcast where they reduce over the vocabulary.
    return logits


class MT5(nn.Module):
  """The mT5 encoder-decoder. `__call__` is the teacher-forced forward pass.

  Token id 0 is padding (and the decoder's start token); segment id 0 marks padding in
  packed batches. Dropout is active only with `enable_dropout=True` and a `dropout` rng.
  """

  config: MT5Config

  def setup(self):
    self.token_embedder = Embed(self.config)
    self.encoder = Encoder(self.config, shared_embedding=self.token_embedder)
    self.decoder = Decoder(self.config, shared_embedding=self.token_embedder)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             encoder_positions: Array | None = None, *, enable_dropout: bool = False
             ) -> Array:
    """Encodes int tokens [batch, in_length] to [batch, in_length, embed]."""
    return self.encoder(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                        deterministic=not enable_dropout)

  def decode(self, encoded: Array | None, encoder_input_tokens: Array,
             decoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None,
             decoder_positions: Array | None = None, *, enable_dropout: bool = False,
             decode: bool = False, max_decode_length: int | None = None) -> Array:
    """Logits [batch, target_length, vocab] (activation dtype) for the decoder inputs.

    With `decode=True` (apply with `mutable=['cache']`) the decoder inputs continue the
    sequence held in the cache, one token per call when decoding: a first call with
    `decoder_input_tokens` of shape [batch, 0] and the encoder output creates the cache
    for `max_decode_length` positions; later calls pass `encoded=None` and the same
    `max_decode_length`. Logits equal the teacher-forced pass at the same positions.
    """
    return self.decoder(encoded, encoder_input_tokens, decoder_input_tokens,
                        encoder_segment_ids, decoder_segment_ids, decoder_positions,
                        deterministic=not enable_dropout, decode=decode,
                        max_decode_length=max_decode_length)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None,
               encoder_positions: Array | None = None,
               decoder_positions: Array | None = None, *, enable_dropout: bool = False
               ) -> Array:
    """Teacher-forced logits [batch, target_length, vocab] in the activation dtype."""
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                          enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       encoder_segment_ids, decoder_segment_ids, decoder_positions,
                       enable_dropout=enable_dropout)


def _abstract_variables(config: MT5Config) -> dict:
  """The boxed variable tree (shapes and logical axes), traced without allocating."""
  dummy = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(
      lambda tokens: MT5(config).init(jax.random.key(0), tokens, tokens), dummy)


def param_shapes(config: MT5Config) -> dict:
  """The parameter tree as `jax.ShapeDtypeStruct`s, computed without allocating.

  Works for every size, xxl included, in well under a second.
  """
  return nn.unbox(_abstract_variables(config))["params"]


def param_logical_axes(config: MT5Config) -> dict:
  """The logical axis names of every parameter, as a tree of `PartitionSpec`s."""
  return nn.get_partition_spec(_abstract_variables(config))["params"]


def init_params(config: MT5Config, rng: Array) -> dict:
  """Randomly initialised parameters (unboxed), for tests and from-scratch runs."""
  tokens = jnp.ones((1, 1), jnp.int32)
  return nn.unbox(MT5(config).init(rng, tokens, tokens))["params"]
