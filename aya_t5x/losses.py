"""Cross-entropy with z-loss and label smoothing, and the loss normalisation modes of T5X.

All arithmetic is float32 whatever the activation dtype. Packed batches are handled by
segment ids, so that a packed batch and the same examples unpacked give the same loss.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class LossNormalization(enum.Enum):
  """How the summed token losses of a batch are divided.

  SUM: no division (T5X's pre-training default with a fixed factor of 1).
  FIXED: divide by a constant (for example batch size x target length).
  NUM_REAL_TARGET_TOKENS: divide by the number of non-padding target tokens.
  AVERAGE_PER_SEQUENCE: average the tokens within each sequence, then average the
    sequences; every example counts equally whatever its length (the Aya recipe).
  """

  SUM = "sum"
  FIXED = "fixed"
  NUM_REAL_TARGET_TOKENS = "num_real_target_tokens"
  AVERAGE_PER_SEQUENCE = "average_per_sequence"

  @classmethod
  def parse(cls, value: LossNormalization | str) -> LossNormalization:
    if isinstance(value, cls):
      return value
    try:
      return cls(str(value).lower())
    except ValueError:
      raise ValueError(
          f"Unknown loss normalization {value!r}; choose from "
          f"{[m.value for m in cls]}.") from None


class VocabStatistics(NamedTuple):
  """What the loss and the accuracy need of one token's logits, float32 [batch, length].

  log_z: log-sum-exp over the vocabulary; target_logit: the target's logit; logit_sum:
  the sum of all logits (label smoothing); prediction: int32 argmax (first on ties).
  Computed from logits by `vocab_statistics`, or without them by `aya_t5x.vocab_tiling`.
  """

  log_z: Array
  target_logit: Array
  logit_sum: Array
  prediction: Array


def vocab_statistics(logits: Array, targets: Array) -> VocabStatistics:
  """The statistics of `logits` [batch, length, vocab] (any float dtype) for `targets`."""
  # Reductions over the vocabulary only: no [batch, length, vocab] float32 log-probabilities
  # are materialised (XLA fuses the upcast into the reductions), which matters at mT5's
  # 250,112-token vocabulary with bfloat16 logits.
  log_z = jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return VocabStatistics(
      log_z=log_z, target_logit=target_logit.astype(jnp.float32),
      logit_sum=jnp.sum(logits.astype(jnp.float32), axis=-1),
      prediction=jnp.argmax(logits, axis=-1).astype(jnp.int32))


def cross_entropy_from_statistics(stats: VocabStatistics, vocab: int, *, z_loss: float = 0.0,
                                  label_smoothing: float = 0.0) -> tuple[Array, Array]:
  """Per-token cross-entropy and z-loss, both float32 [batch, length].

  Args:
    stats: the logits' statistics (`vocab_statistics` or `aya_t5x.vocab_tiling`).
    vocab: the vocabulary size.
    z_loss: coefficient of log(Z)^2, which keeps the softmax normaliser near 1
      (1e-4 in the recipe).
    label_smoothing: mass moved uniformly from the target to the other tokens; the
      constant entropy of the smoothed distribution is subtracted, so a perfect model
      still reaches 0.

  Returns:
    (loss, z_loss_term); `loss` already includes the z-loss term.
  """
  log_z = stats.log_z
  target_log_prob = stats.target_logit - log_z
  if label_smoothing:
    confidence = 1.0 - label_smoothing
    low = label_smoothing / (vocab - 1)
    sum_log_probs = stats.logit_sum - vocab * log_z
    sum_log_prob_others = sum_log_probs - target_log_prob
    loss = -(confidence * target_log_prob + low * sum_log_prob_others)
    normalizing_constant = -(
        confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low + 1e-20))
    loss = loss - normalizing_constant
  else:
    loss = -target_log_prob
  z_term = z_loss * jnp.square(log_z)
  return loss + z_term, z_term


def token_cross_entropy(logits: Array, targets: Array, *, z_loss: float = 0.0,
                        label_smoothing: float = 0.0) -> tuple[Array, Array]:
  """`cross_entropy_from_statistics` of `logits` [batch, length, vocab] and int targets."""
  return cross_entropy_from_statistics(
      vocab_statistics(logits, targets), logits.shape[-1], z_loss=z_loss,
      label_smoothing=label_smoothing)


def _segment_token_counts(weights: Array, segment_ids: Array) -> Array:
  """For each token, the number of weighted tokens in its own segment [batch, length]."""
  same = segment_ids[:, :, None] == segment_ids[:, None, :]
  return jnp.einsum("bqk,bk->bq", same.astype(jnp.float32), weights)


def loss_numerator_and_denominator(
    token_loss: Array, weights: Array, *, normalization: LossNormalization | str,
    segment_ids: Array | None = None, fixed_factor: float | None = None
) -> tuple[Array, Array]:
  """The weighted loss sum and the divisor that together define the batch loss.

  Kept apart so that gradient accumulation can add numerators and denominators over
  microbatches and divide once, which gives exactly the loss of the whole batch.

  Args:
    token_loss: float [batch, length].
    weights: float [batch, length], 0 on padding.
    normalization: a `LossNormalization` or its value string.
    segment_ids: int [batch, length] for packed batches (0 on padding); without them
      each row is one sequence.
    fixed_factor: the divisor for `FIXED`.

  Returns:
    (numerator, denominator): the denominator is the number of sequences for
    AVERAGE_PER_SEQUENCE, of real target tokens for NUM_REAL_TARGET_TOKENS, the fixed
    factor for FIXED and 1 for SUM.
  """
  mode = LossNormalization.parse(normalization)
  weights = weights.astype(jnp.float32)
  if mode is LossNormalization.AVERAGE_PER_SEQUENCE:
    if segment_ids is None:
      segment_ids = (weights > 0).astype(jnp.int32)
    counts = _segment_token_counts(weights, segment_ids)
    per_token = jnp.where(weights > 0, weights / jnp.maximum(counts, 1.0), 0.0)
    # Each sequence's weights now sum to 1, so their total is the number of sequences.
    return jnp.sum(token_loss * per_token), jnp.sum(per_token)
  numerator = jnp.sum(token_loss * weights)
  if mode is LossNormalization.SUM:
    return numerator, jnp.float32(1.0)
  if mode is LossNormalization.FIXED:
    if not fixed_factor:
      raise ValueError("LossNormalization.FIXED needs fixed_factor (for example "
                       "batch_size * target_length).")
    return numerator, jnp.float32(fixed_factor)
  return numerator, jnp.sum(weights)


def normalized_loss(token_loss: Array, weights: Array, *,
                    normalization: LossNormalization | str,
                    segment_ids: Array | None = None,
                    fixed_factor: float | None = None) -> tuple[Array, Array]:
  """The scalar batch loss and its denominator (see `loss_numerator_and_denominator`)."""
  numerator, denominator = loss_numerator_and_denominator(
      token_loss, weights, normalization=normalization, segment_ids=segment_ids,
      fixed_factor=fixed_factor)
  return numerator / jnp.maximum(denominator, 1e-8), denominator
