"""The preference objective: the trainer's loss component for batches of pairs.

A pair batch (`aya_t5x.preference.features`) holds the prompt once, in
`encoder_input_tokens`, and the two answers as `chosen_*` and `rejected_*` decoder rows.
The encoder runs once; its output is repeated for the 2B decoder rows (chosen rows
first). Each answer's sequence log-probability is the sum over its target tokens of
`target_logit - log_z`, read from the vocabulary statistics (tiled or not), so no
`[tokens, vocab]` array exists when `LossConfig.vocab_tile_size` is set.

Packed pairs: segment k of a row's encoder, chosen and rejected rows is one pair, so
attention (by segment ids) never crosses examples, and the sums are taken per segment.

The reference log-probabilities come from the batch (`{side}_reference_logps`, per target
token, written by `aya-t5x preference reference-logprobs`), or from a frozen copy of the
model passed to the step as its third argument (never in the optimizer, no dropout,
under `stop_gradient`), or are not needed (SimPO).

The scalar the optimiser sees is the mean pair loss: numerator = sum of pair losses,
denominator = number of real pairs, so gradient accumulation stays exact.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from aya_t5x import losses as token_losses
from aya_t5x import vocab_tiling
from aya_t5x.model import MT5
from aya_t5x.preference.losses import PairLossConfig, SequenceLogProbs, pair_loss

Batch = dict[str, jax.Array]
SIDES = ("chosen", "rejected")
REFERENCE_SOURCES = ("precomputed", "live", "none")


def _pair_forward(module: MT5, batch: Batch, enable_dropout: bool, return_hidden: bool
                  ) -> jax.Array:
  """Decoder outputs [2B, length, ...] of the chosen then the rejected rows."""
  encoded = module.encode(batch["encoder_input_tokens"], batch.get("encoder_segment_ids"),
                          enable_dropout=enable_dropout)

  def twice(x):
    return None if x is None else jnp.concatenate([x, x], axis=0)

  def both(name):
    parts = [batch.get(f"{side}_{name}") for side in SIDES]
    return None if parts[0] is None else jnp.concatenate(parts, axis=0)

  return module.decode(twice(encoded), twice(batch["encoder_input_tokens"]),
                       both("input_tokens"), twice(batch.get("encoder_segment_ids")),
                       both("segment_ids"), enable_dropout=enable_dropout,
                       return_hidden=return_hidden)


def _segment_sums(values: jax.Array, segment_ids: jax.Array | None) -> jax.Array:
  """Sums of `values` [rows, length] per pair: [rows, 1] unpacked, [rows, length] packed
  (column k - 1 is segment k; a segment has at least one target token)."""
  if segment_ids is None:
    return jnp.sum(values, axis=-1, keepdims=True)
  segments = jnp.arange(1, values.shape[-1] + 1, dtype=segment_ids.dtype)
  one_hot = (segment_ids[..., None] == segments).astype(jnp.float32)
  return jnp.einsum("bl,bls->bs", values, one_hot)


def target_log_probs(model: MT5, params: Any, batch: Batch, *, rng: jax.Array,
                     enable_dropout: bool, vocab_tile_size: int | None
                     ) -> tuple[jax.Array, jax.Array]:
  """Per-token log-probabilities of both answers' targets [2B, length] and their weights."""
  tiled = vocab_tile_size is not None
  output = model.apply({"params": params}, batch, enable_dropout, tiled,
                       method=_pair_forward, rngs={"dropout": rng})
  targets = jnp.concatenate([batch[f"{side}_target_tokens"] for side in SIDES], axis=0)
  weights = jnp.concatenate([batch[f"{side}_loss_weights"] for side in SIDES], axis=0)
  if tiled:
    stats = vocab_tiling.vocab_statistics(
        output, params["decoder"]["logits_dense"]["kernel"], targets,
        tile_size=vocab_tile_size)
  else:
    stats = token_losses.vocab_statistics(output, targets)
  weights = weights.astype(jnp.float32)
  return (stats.target_logit - stats.log_z) * weights, weights


def sequence_log_probs(token_log_probs: jax.Array, weights: jax.Array, batch: Batch
                       ) -> SequenceLogProbs:
  """Per-pair sums [B, P] of the per-token log-probs [2B, length] (chosen rows first)."""
  rows = token_log_probs.shape[0] // 2
  segments = batch.get("chosen_segment_ids")
  segments = None if segments is None else jnp.concatenate(
      [batch["chosen_segment_ids"], batch["rejected_segment_ids"]], axis=0)
  sums = _segment_sums(token_log_probs, segments)
  counts = _segment_sums(weights, segments)
  return SequenceLogProbs(chosen=sums[:rows], rejected=sums[rows:],
                          chosen_tokens=counts[:rows], rejected_tokens=counts[rows:])


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreferenceObjective:
  """Train on pairs with a DPO-family loss (gin: `train.objective = @PreferenceObjective()`).

  Attributes:
    pair_loss: the loss and its hyperparameters (`aya_t5x.preference.losses`).
    reference: where reference log-probs come from: 'precomputed' (the data's
      `{side}_reference_logps`), 'live' (a frozen copy of `reference_checkpoint`, by
      default the run's INITIAL_CHECKPOINT_PATH) or 'none' (reference-free losses).
    reference_checkpoint: the frozen reference for 'live'.
  """

  pair_loss: PairLossConfig = PairLossConfig()
  reference: str = "precomputed"
  reference_checkpoint: str | None = None


  def __post_init__(self):
    if self.reference not in REFERENCE_SOURCES:
      raise ValueError(f"PreferenceObjective.reference is {self.reference!r}; choose from "
                       f"{REFERENCE_SOURCES}.")
    if self.pair_loss.needs_reference and self.reference == "none":
      raise ValueError(f"The {self.pair_loss.name!r} loss needs a reference: set "
                       "PreferenceObjective.reference to 'precomputed' or 'live', or use "
                       "the reference-free PairLossConfig.name = 'simpo'.")

  @property
  def live_reference(self) -> bool:
    return self.pair_loss.needs_reference and self.reference == "live"

  def loss_terms(self, model: MT5, loss, params: Any, batch: Batch, rng: jax.Array,
                 enable_dropout: bool, reference_params: Any = None
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(sum of pair losses, sums for metrics) of one (micro)batch."""
    token_lp, weights = target_log_probs(model, params, batch, rng=rng,
                                         enable_dropout=enable_dropout,
                                         vocab_tile_size=loss.vocab_tile_size)
    policy = sequence_log_probs(token_lp, weights, batch)
    reference = self._reference(model, loss, batch, reference_params, weights)
    valid = ((policy.chosen_tokens > 0) & (policy.rejected_tokens > 0)).astype(jnp.float32)
    out = pair_loss(policy, reference, self.pair_loss)
    margin = out.chosen_reward - out.rejected_reward
    sums = {"denominator": jnp.sum(valid),
            "reward_correct": jnp.sum((margin > 0) * valid),
            "reward_margin": jnp.sum(margin * valid),
            "chosen_reward": jnp.sum(out.chosen_reward * valid),
            "rejected_reward": jnp.sum(out.rejected_reward * valid),
            "chosen_logp": jnp.sum(policy.chosen * valid),
            "rejected_logp": jnp.sum(policy.rejected * valid),
            "tokens": jnp.sum(weights), "sequences": jnp.sum(valid)}
    if reference is not None:
      # Mean per-token log-ratio log pi - log ref over both answers' tokens: a data-based
      # estimate of the drift from the reference (a true KL needs policy samples).
      drift = (policy.chosen - reference.chosen) + (policy.rejected - reference.rejected)
      sums["kl_numerator"] = jnp.sum(drift * valid)
    return jnp.sum(out.loss * valid), sums

  def _reference(self, model: MT5, loss, batch: Batch, reference_params: Any,
                 weights: jax.Array) -> SequenceLogProbs | None:
    if not self.pair_loss.needs_reference:
      return None
    if self.reference == "live":
      if reference_params is None:
        raise ValueError("PreferenceObjective.reference = 'live' needs the reference "
                         "parameters as the step's third argument.")
      token_lp, _ = target_log_probs(model, jax.lax.stop_gradient(reference_params), batch,
                                     rng=jax.random.key(0), enable_dropout=False,
                                     vocab_tile_size=loss.vocab_tile_size)
    else:
      missing = [f"{side}_reference_logps" for side in SIDES
                 if f"{side}_reference_logps" not in batch]
      if missing:
        raise ValueError(f"The batch lacks {missing}: compute them with `aya-t5x "
                         "preference reference-logprobs`, or set "
                         "PreferenceObjective.reference = 'live'.")
      token_lp = jnp.concatenate([batch[f"{side}_reference_logps"] for side in SIDES],
                                 axis=0).astype(jnp.float32) * weights
    return sequence_log_probs(token_lp, weights, batch)

  def batch_spec(self, train_data) -> dict[str, jax.ShapeDtypeStruct]:
    """A batch of pairs' shapes (for `aya-t5x compile`, which reads no data)."""
    from aya_t5x.preference.features import pair_batch_spec

    return pair_batch_spec(train_data, with_reference=(
        self.pair_loss.needs_reference and self.reference == "precomputed"))

  def step_inputs(self, *, model_config, initial_checkpoint_path: str | None,
                  param_shardings: Any) -> tuple:
    """(frozen reference parameters,) for a live reference, else ()."""
    if not self.live_reference:
      return ()
    checkpoint = self.reference_checkpoint or initial_checkpoint_path
    if not checkpoint:
      raise ValueError("PreferenceObjective.reference = 'live' needs a reference: set "
                       "PreferenceObjective.reference_checkpoint or INITIAL_CHECKPOINT_PATH "
                       "(the SFT model the run starts from).")
    from aya_t5x.preference.reference import load_frozen_reference

    return (load_frozen_reference(checkpoint, model_config, param_shardings),)

  def metrics(self, numerator: jax.Array, sums: dict[str, jax.Array]) -> dict[str, jax.Array]:
    pairs = jnp.maximum(sums["denominator"], 1.0)
    out = {"loss": numerator / pairs, "accuracy": sums["reward_correct"] / pairs,
           "reward_accuracy": sums["reward_correct"] / pairs,
           "reward_margin": sums["reward_margin"] / pairs,
           "chosen_reward": sums["chosen_reward"] / pairs,
           "rejected_reward": sums["rejected_reward"] / pairs,
           "chosen_logp": sums["chosen_logp"] / pairs,
           "rejected_logp": sums["rejected_logp"] / pairs,
           "target_tokens": sums["tokens"], "sequences": sums["sequences"]}
    if "kl_numerator" in sums:
      out["kl_estimate"] = sums["kl_numerator"] / jnp.maximum(sums["tokens"], 1.0)
    return out
