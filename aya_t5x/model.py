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

Packed inputs: segment ids keep attention inside one example (pad tokens are segment 0).
Positions restart at 0 in each example, so within an example the offset of two tokens
is the difference of their row indices: the relative position bias is computed once per
stack from the row layout, [1, heads, q, k], and the positions arguments are accepted
for the feature converter's layout but not needed.

The blocks (attention, MLP, norms, relative position bias) are in `aya_t5x.layers`; this
module holds the configuration and assembles them.

Incremental decoding (`MT5.decode(..., decode=True)`) keeps the decoder's `cache_index` and
each attention layer's `cached_key`/`cached_value` [batch, heads, length, kv] in the flax
'cache' collection; the encoder-decoder keys are projected once per sequence.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from aya_t5x import layer_stack
from aya_t5x.attention import MASKED_BIAS, AttentionBias
from aya_t5x.layers import (
  Dense,
  Embed,
  MlpBlock,
  MultiHeadAttention,
  RelativePositionBias,
  RMSNorm,
)
from aya_t5x.model_config import REMAT_POLICIES, MT5Config

Array = jax.Array


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
  def __call__(self, x: Array, bias: AttentionBias, deterministic: bool):
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
  def __call__(self, x: Array, encoded: Array | None, self_bias: AttentionBias,
               cross_bias: AttentionBias,
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


def _row_positions(length: int) -> Array:
  return jnp.arange(length, dtype=jnp.int32)[None]


class Encoder(nn.Module):
  """The bidirectional encoder stack."""

  config: MT5Config
  shared_embedding: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None, positions: Array | None, *,
               deterministic: bool) -> Array:
    cfg = self.config
    del positions  # see the module docstring: the row layout gives the same offsets
    rows = _row_positions(tokens.shape[1])
    bias = AttentionBias(
        relative=RelativePositionBias(cfg, bidirectional=True, name="relpos_bias")(rows, rows),
        key_valid=tokens > 0, query_segment_ids=segment_ids, key_segment_ids=segment_ids)
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
               max_decode_length: int | None = None, return_hidden: bool = False) -> Array:
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
    del positions  # see the module docstring
    rows = _row_positions(tokens.shape[1])
    self_bias = AttentionBias(
        relative=RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(rows, rows),
        key_valid=jnp.ones(tokens.shape, jnp.bool_), query_segment_ids=segment_ids,
        key_segment_ids=segment_ids, causal=True)
    cross_bias = AttentionBias(
        relative=None, key_valid=encoder_tokens > 0, query_segment_ids=segment_ids,
        key_segment_ids=encoder_segment_ids)
    x = self.shared_embedding(tokens)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    x = _apply_layers(self, DecoderLayer, cfg.num_decoder_layers, x, encoded, self_bias,
                      cross_bias, deterministic)
    return self._logits(x, deterministic, return_hidden)

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
    future = key_positions[:, None, :] > query_positions[:, :, None]
    self_bias = AttentionBias(
        relative=RelativePositionBias(cfg, bidirectional=False, name="relpos_bias")(
            query_positions, key_positions),
        key_valid=jnp.ones((tokens.shape[0], max_decode_length), jnp.bool_),
        extra=jnp.where(future, MASKED_BIAS, 0.0).astype(jnp.float32)[:, None])
    cross_bias = AttentionBias(relative=None, key_valid=encoder_tokens > 0)
    x = nn.with_logical_constraint(self.shared_embedding(tokens), ("batch", "length", "embed"))
    for i in range(cfg.num_decoder_layers):
      # No remat: nothing is differentiated while decoding.
      x = DecoderLayer(cfg, name=f"layers_{i}")(
          x, encoded, self_bias, cross_bias, True, decode=True, cache_index=index.value,
          max_decode_length=max_decode_length)
    index.value = index.value + tokens.shape[1]
    return self._logits(x, deterministic=True)

  def _logits(self, x: Array, deterministic: bool, return_hidden: bool = False) -> Array:
    cfg = self.config
    x = RMSNorm(cfg, name="decoder_norm")(x)
    x = nn.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    if return_hidden:
      # The input of logits_dense, for a loss that projects it tile by tile
      # (`aya_t5x.vocab_tiling`); the same dtype and sharding as the Dense's input.
      return nn.with_logical_constraint(x, ("batch", "length", "embed"))
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
             decode: bool = False, max_decode_length: int | None = None,
             return_hidden: bool = False) -> Array:
    """Logits [batch, target_length, vocab] (activation dtype) for the decoder inputs.

    With `decode=True` (apply with `mutable=['cache']`) the decoder inputs continue the
    sequence held in the cache, one token per call when decoding: a first call with
    `decoder_input_tokens` of shape [batch, 0] and the encoder output creates the cache
    for `max_decode_length` positions; later calls pass `encoded=None` and the same
    `max_decode_length`. Logits equal the teacher-forced pass at the same positions.
    With `return_hidden=True` (teacher-forced only) it returns the input of the output
    projection instead, [batch, target_length, embed]: the logits are then
    `hidden @ params['decoder']['logits_dense']['kernel']`.
    """
    return self.decoder(encoded, encoder_input_tokens, decoder_input_tokens,
                        encoder_segment_ids, decoder_segment_ids, decoder_positions,
                        deterministic=not enable_dropout, decode=decode,
                        max_decode_length=max_decode_length, return_hidden=return_hidden)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None,
               encoder_positions: Array | None = None,
               decoder_positions: Array | None = None, *, enable_dropout: bool = False,
               return_hidden: bool = False) -> Array:
    """Teacher-forced logits [batch, target_length, vocab] in the activation dtype (or the
    output projection's input with `return_hidden`, see `decode`)."""
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                          enable_dropout=enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       encoder_segment_ids, decoder_segment_ids, decoder_positions,
                       enable_dropout=enable_dropout, return_hidden=return_hidden)


def _for_initialising(config: MT5Config) -> MT5Config:
  """The config that creates the parameters: they do not depend on the attention
  implementation, and the fused kernels refuse the one-token inputs that init traces."""
  return dataclasses.replace(config, attention_implementation="xla")


def _abstract_variables(config: MT5Config) -> dict:
  """The boxed variable tree (shapes and logical axes), traced without allocating."""
  dummy = jax.ShapeDtypeStruct((1, 1), jnp.int32)
  return jax.eval_shape(
      lambda tokens: MT5(_for_initialising(config)).init(jax.random.key(0), tokens, tokens),
      dummy)


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
  return nn.unbox(MT5(_for_initialising(config)).init(rng, tokens, tokens))["params"]
