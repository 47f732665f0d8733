"""Batches of preference pairs for the trainer, from a registered preference task or mixture.

The prompt fills `encoder_input_tokens` [B, inputs]; each answer fills its own decoder
row, `{side}_target_tokens`, `{side}_input_tokens` (the targets shifted right, 0 first),
`{side}_loss_weights` [B, targets] for side in (chosen, rejected); precomputed reference
log-probs come as `{side}_reference_logps` float32 [B, targets], aligned with the targets.
Sequences longer than the feature lengths are cut (SeqIO's trim), the reference
log-probs with them, so a cut answer's reference sum covers exactly the kept tokens.
Pairs are not packed (one pair per row).
"""

from __future__ import annotations

import jax
import numpy as np

from aya_t5x.preference.reference import check_run_lengths
from aya_t5x.preference.tasks import (
  REFERENCE_FEATURES,
  SIDES,
  is_pair_task,
  reference_fingerprint,
)


def lengths_of(task_feature_lengths) -> dict[str, int]:
  """SeqIO sequence lengths of the pair features from {'inputs': N, 'targets': M}."""
  targets = task_feature_lengths["targets"]
  return {"inputs": task_feature_lengths["inputs"], "chosen": targets, "rejected": targets,
          **{name: targets for name in REFERENCE_FEATURES}}


def _has_reference(name: str) -> bool:
  import seqio

  provider = seqio.get_mixture_or_task(name)
  return all(f in provider.output_features for f in REFERENCE_FEATURES)


def convert(example, lengths, with_reference: bool):
  """One tokenized pair to the trainer's features (tf, inside the dataset's map)."""
  import tensorflow as tf

  def pad(x, length):
    x = x[:length]
    return tf.pad(x, [[0, length - tf.shape(x)[0]]])

  out = {"encoder_input_tokens": pad(tf.cast(example["inputs"], tf.int32),
                                     lengths["inputs"])}
  for side in SIDES:
    targets = pad(tf.cast(example[side], tf.int32), lengths[side])
    out[f"{side}_target_tokens"] = targets
    out[f"{side}_input_tokens"] = tf.concat([[0], targets[:-1]], axis=0)
    out[f"{side}_loss_weights"] = tf.cast(targets > 0, tf.int32)
    if with_reference:
      reference = example[f"{side}_reference_logps"]
      tf.debugging.assert_equal(
          tf.shape(reference)[0], tf.shape(example[side])[0],
          message=f"precomputed {side} reference log-probs and the {side} tokens differ in "
                  "length: they were computed with another vocabulary; rerun `aya-t5x "
                  "preference reference-logprobs` with this run's vocabulary")
      out[f"{side}_reference_logps"] = pad(tf.cast(reference, tf.float32), lengths[side])
  return out


def pair_dataset(config, index: int, count: int):
  """The batched `tf.data.Dataset` of one input shard (see `input_pipeline.build_dataset`)."""
  import seqio

  if config.use_packing:
    from aya_t5x.input_pipeline import DataConfigError

    raise DataConfigError(
        f"{config.mixture_or_task_name!r} holds preference pairs, which are read one pair "
        "per row: set --gin.USE_PACKING=False (runs/preference.gin does).")
  with_reference = _has_reference(config.mixture_or_task_name)
  if with_reference:
    check_run_lengths(reference_fingerprint(config.mixture_or_task_name),
                      config.task_feature_lengths["inputs"], config.mixture_or_task_name)
  lengths = lengths_of(config.task_feature_lengths)
  # Lengths above what every example needs: `convert` trims (seqio would trim too, but
  # the reference log-probs must be checked against the untrimmed tokens first).
  dataset = seqio.get_mixture_or_task(config.mixture_or_task_name).get_dataset(
      None, split=config.split, use_cached=False, shuffle=config.shuffle,
      num_epochs=config.num_epochs, seed=config.seed,
      shard_info=seqio.ShardInfo(index=index, num_shards=count) if count > 1 else None)
  dataset = dataset.map(lambda x: convert(x, lengths, with_reference))
  return dataset.batch(config.batch_size // count, drop_remainder=True)


def pair_batch_spec(config, with_reference: bool | None = None
                    ) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes and dtypes of one global batch of pairs (without reading data); whether it
  holds precomputed reference log-probs is read from the task unless given."""
  lengths = config.task_feature_lengths
  spec = {"encoder_input_tokens": ((config.batch_size, lengths["inputs"]), np.int32)}
  for side in SIDES:
    for name in ("target_tokens", "input_tokens", "loss_weights"):
      spec[f"{side}_{name}"] = ((config.batch_size, lengths["targets"]), np.int32)
  if with_reference is None:
    with_reference = _has_reference(config.mixture_or_task_name)
  if with_reference:
    for name in REFERENCE_FEATURES:
      spec[name] = ((config.batch_size, lengths["targets"]), np.float32)
  return {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in spec.items()}


__all__ = ["convert", "is_pair_task", "lengths_of", "pair_batch_spec", "pair_dataset"]
