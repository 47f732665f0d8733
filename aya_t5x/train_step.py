"""The pure train and eval steps: `train_step(state, batch) -> (state, metrics)`.

Both take the feature-converted batch of SeqIO's `EncDecFeatureConverter` (packed or
not). Gradient accumulation splits the batch into microbatches, adds loss numerators,
denominators and gradients, and divides once, so the update equals the one computed on
the whole batch. Dropout keys derive from (seed, step, microbatch), so a resumed run
draws the same masks as an uninterrupted one.

The state holds the trained parameters only (`aya_t5x.adapters.trainable`): the step
takes the frozen rest as a third argument, differentiates the trained half alone, and
never changes the frozen one (empty when every parameter trains).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import flax.struct
import jax
import jax.numpy as jnp
import optax

from aya_t5x import losses, vocab_tiling
from aya_t5x.adapters import lora as lora_lib
from aya_t5x.adapters import trainable as trainable_lib
from aya_t5x.model import MT5
from aya_t5x.model_config import MT5Config

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint must hold to continue training bit for bit."""

  step: jax.Array
  params: Any
  opt_state: Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class LossConfig:
  """How token losses become the scalar the optimiser sees (T5X names and defaults).

  `vocab_tile_size`: compute the output projection and the softmax over tiles of this
  many vocabulary columns (per device that holds a shard of the vocabulary), so that the
  step never holds the [tokens, vocab] logits (`aya_t5x.vocab_tiling`); None projects
  the whole vocabulary at once (the reference path). Same loss and gradients either way.
  """

  normalization: str = "num_real_target_tokens"
  z_loss: float = 1e-4
  label_smoothing: float = 0.0
  fixed_factor: float | None = None
  vocab_tile_size: int | None = None

  def __post_init__(self):
    losses.LossNormalization.parse(self.normalization)
    if self.vocab_tile_size is not None and (
        not isinstance(self.vocab_tile_size, int) or self.vocab_tile_size < 1):
      raise ValueError(f"LossConfig.vocab_tile_size must be a positive integer or None "
                       f"(no tiling), got {self.vocab_tile_size!r}.")


def _loss_terms(model: MT5, loss: LossConfig, params: Any, batch: Batch, rng: jax.Array,
                enable_dropout: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(loss numerator, sums for metrics) of one (micro)batch."""
  tiled = loss.vocab_tile_size is not None
  output = model.apply(
      {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
      encoder_segment_ids=batch.get("encoder_segment_ids"),
      decoder_segment_ids=batch.get("decoder_segment_ids"),
      encoder_positions=batch.get("encoder_positions"),
      decoder_positions=batch.get("decoder_positions"),
      enable_dropout=enable_dropout, rngs={"dropout": rng}, return_hidden=tiled)
  targets = batch["decoder_target_tokens"]
  weights = batch.get("decoder_loss_weights")
  weights = (targets > 0) if weights is None else weights
  weights = weights.astype(jnp.float32)
  if tiled:
    stats = vocab_tiling.vocab_statistics(
        output, lora_lib.output_kernel(params["decoder"]["logits_dense"], model.config),
        targets,
        tile_size=loss.vocab_tile_size)
  else:
    stats = losses.vocab_statistics(output, targets)
  token_loss, z_term = losses.cross_entropy_from_statistics(
      stats, model.config.vocab_size, z_loss=loss.z_loss,
      label_smoothing=loss.label_smoothing)
  numerator, denominator = losses.loss_numerator_and_denominator(
      token_loss, weights, normalization=loss.normalization,
      segment_ids=batch.get("decoder_segment_ids"), fixed_factor=loss.fixed_factor)
  correct = (stats.prediction == targets).astype(jnp.float32) * weights
  segments = batch.get("decoder_segment_ids")
  if segments is None:
    sequences = jnp.sum(jnp.any(weights > 0, axis=-1))
  else:  # packed: count distinct nonzero segment ids per row
    starts = (segments > 0) & (segments != jnp.pad(segments, ((0, 0), (1, 0)))[:, :-1])
    sequences = jnp.sum(starts)
  sums = {"denominator": denominator, "z_loss": jnp.sum(z_term * weights),
          "correct": jnp.sum(correct), "tokens": jnp.sum(weights),
          "sequences": sequences.astype(jnp.float32)}
  return numerator, sums


class Objective(Protocol):
  """What a step optimises, chosen in gin (`train.objective`): the step reads it and has
  no branch per method. `CrossEntropy` (supervised fine-tuning) is the default;
  `aya_t5x.preference.objective.PreferenceObjective` trains on pairs.

  `loss_terms` returns (loss numerator, sums); the sums hold a 'denominator' that the
  step divides the accumulated gradients by, and what `metrics` turns into the logged
  metrics. `live_reference`: the step takes frozen reference parameters as a third
  argument (never in the optimizer).
  """

  live_reference: bool

  def loss_terms(self, model: MT5, loss: LossConfig, params: Any, batch: Batch,
                 rng: jax.Array, enable_dropout: bool, reference_params: Any = None
                 ) -> tuple[jax.Array, dict[str, jax.Array]]: ...

  def metrics(self, numerator: jax.Array, sums: dict[str, jax.Array]) -> Metrics: ...

  def step_inputs(self, *, model_config: MT5Config, initial_checkpoint_path: str | None,
                  param_shardings: Any) -> tuple:
    """The step's arguments after (state, batch): () or (reference parameters,)."""

  def batch_spec(self, train_data: Any) -> dict[str, jax.ShapeDtypeStruct]:
    """One global batch's shapes, known without reading data (`aya-t5x compile`)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CrossEntropy:
  """Token cross-entropy on input/target examples (supervised fine-tuning)."""

  live_reference = False

  def loss_terms(self, model: MT5, loss: LossConfig, params: Any, batch: Batch,
                 rng: jax.Array, enable_dropout: bool, reference_params: Any = None
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
    del reference_params
    return _loss_terms(model, loss, params, batch, rng, enable_dropout)

  def metrics(self, numerator: jax.Array, sums: dict[str, jax.Array]) -> Metrics:
    return _metrics(numerator, sums)

  def step_inputs(self, **_) -> tuple:
    return ()

  def batch_spec(self, train_data: Any) -> dict[str, jax.ShapeDtypeStruct]:
    from aya_t5x import input_pipeline

    return input_pipeline.batch_spec(train_data)


def _split_microbatches(batch: Batch, num_microbatches: int) -> Batch:
  """[B, ...] -> [M, B / M, ...], microbatch i taking rows i, i + M, i + 2M, ...

  Strided rows keep every microbatch spread over all data-parallel devices (each device
  holds a contiguous block of rows), so accumulation moves no data between devices.
  """
  def split(x):
    x = x.reshape((x.shape[0] // num_microbatches, num_microbatches) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(split, batch)


def make_train_step(config: MT5Config, optimizer: optax.GradientTransformation,
                    schedule: Callable[[jax.Array], jax.Array], loss: LossConfig, *,
                    seed: int, num_microbatches: int = 1,
                    trainable: trainable_lib.TrainableSet = trainable_lib.ALL,
                    objective: Objective = CrossEntropy()
                    ) -> Callable[..., tuple[TrainState, Metrics]]:
  """Builds the pure train step for `config` (the trained network: `trainable.model_config`
  applied); jit it with shardings and donation.

  `train_step(state, batch, frozen)`: `frozen` holds the parameters that do not train
  (the adapters' base; empty when everything trains); with an objective that has a live
  reference, `train_step(state, batch, frozen, reference_params)`.
  """
  model = MT5(config)
  enable_dropout = (config.dropout_rate > 0 or config.attention_dropout > 0
                    or (config.lora is not None and config.lora.dropout > 0))

  def train_step(state: TrainState, batch: Batch, frozen: Any = None,
                 reference_params: Any = None) -> tuple[TrainState, Metrics]:
    frozen = {} if frozen is None else frozen

    def numerator_and_grads(params, batch, rng, reference_params):
      grad_fn = jax.value_and_grad(
          lambda p: objective.loss_terms(model, loss, trainable_lib.combine(p, frozen), batch,
                                         rng, enable_dropout, reference_params), has_aux=True)
      (numerator, sums), grads = grad_fn(params)
      return numerator, sums, grads

    rng = jax.random.fold_in(jax.random.key(seed), state.step)
    if num_microbatches == 1:
      numerator, sums, grads = numerator_and_grads(state.params, batch, rng,
                                                   reference_params)
    else:
      micro = _split_microbatches(batch, num_microbatches)

      def accumulate(carry, inputs):
        index, microbatch = inputs
        n, s, g = numerator_and_grads(state.params, microbatch,
                                      jax.random.fold_in(rng, index), reference_params)
        return jax.tree.map(jnp.add, carry, (n, s, g)), None

      zeros = jax.eval_shape(numerator_and_grads, state.params,
                             jax.tree.map(lambda x: x[0], micro), rng, reference_params)
      zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), zeros)
      (numerator, sums, grads), _ = jax.lax.scan(
          accumulate, zeros, (jnp.arange(num_microbatches), micro))
    denominator = jnp.maximum(sums["denominator"], 1e-8)
    grads = jax.tree.map(lambda g: g / denominator, grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = objective.metrics(numerator, sums)
    metrics["grad_norm"] = optax.global_norm(grads)
    metrics["learning_rate"] = schedule(state.step)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(config: MT5Config, loss: LossConfig, objective: Objective = CrossEntropy()
                   ) -> Callable[..., Metrics]:
  """Teacher-forced loss and accuracy on a batch, dropout off: `eval_step(params, batch)`."""
  model = MT5(config)

  def eval_step(params: Any, batch: Batch, reference_params: Any = None) -> Metrics:
    numerator, sums = objective.loss_terms(model, loss, params, batch, jax.random.key(0),
                                           False, reference_params)
    return {"loss_numerator": numerator, **sums}

  return eval_step


def _metrics(numerator: jax.Array, sums: dict[str, jax.Array]) -> Metrics:
  tokens = jnp.maximum(sums["tokens"], 1.0)
  return {"loss": numerator / jnp.maximum(sums["denominator"], 1e-8),
          "z_loss": sums["z_loss"] / tokens, "accuracy": sums["correct"] / tokens,
          "target_tokens": sums["tokens"], "sequences": sums["sequences"]}


def eval_metrics(totals: dict[str, float]) -> dict[str, float]:
  """Turns summed `eval_step` outputs over a split into loss and accuracy."""
  return {"loss": totals["loss_numerator"] / max(totals["denominator"], 1e-8),
          "accuracy": totals["correct"] / max(totals["tokens"], 1.0),
          "target_tokens": totals["tokens"], "sequences": totals["sequences"]}


def jit_train_step(model_config: MT5Config, tx: optax.GradientTransformation,
                   schedule: Callable[[Any], Any], loss: LossConfig, *, seed: int,
                   num_microbatches: int, state_shardings: Any,
                   batch_sharding: jax.sharding.Sharding,
                   trainable: trainable_lib.TrainableSet = trainable_lib.ALL,
                   frozen_shardings: Any = None, objective: Objective = CrossEntropy()):
  """The train step `(state, batch, frozen[, reference_params])` jitted with the shardings,
  the state donated (never the frozen parameters: they serve every step; a live reference,
  when the objective has one, is sharded like the parameters)."""
  if objective.live_reference and trainable is not trainable_lib.ALL:
    raise ValueError("a live preference reference with adapters is not supported: score the "
                     "pairs once with `aya-t5x preference reference-logprobs` and set "
                     "PREFERENCE_REFERENCE = 'precomputed'")
  step_fn = make_train_step(model_config, tx, schedule, loss, seed=seed,
                            num_microbatches=num_microbatches, trainable=trainable,
                            objective=objective)
  frozen_shardings = {} if frozen_shardings is None else frozen_shardings
  in_shardings = (state_shardings, batch_sharding, frozen_shardings)
  if objective.live_reference:
    in_shardings += (state_shardings.params,)
  return jax.jit(step_fn, in_shardings=in_shardings,
                 out_shardings=(state_shardings, None), donate_argnums=(0,))
