"""Best-fit packing: every example exactly once, SeqIO's feature conventions, same loss."""

import jax
import jax.numpy as jnp
import numpy as np
import seqio
import tensorflow as tf

from aya_t5x import model, testing, train_step
from aya_t5x.data import packing

LENGTHS = {"inputs": 32, "targets": 24}


def _examples(n, seed=0, skewed=False):
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(n):
    # Skewed: long inputs with short targets alternate with the opposite (xP3x beside
    # ShareGPT), where SeqIO's in-order packing wastes most.
    long_inputs = skewed and i % 2 == 0
    n_in = rng.integers(16, 30) if long_inputs else rng.integers(2, 10)
    n_out = rng.integers(2, 6) if long_inputs else rng.integers(4, 20 if skewed else 9)
    rows.append({"inputs": np.append(rng.integers(2, 128, n_in), 1).astype(np.int32),
                 "targets": np.append(rng.integers(2, 128, n_out), 1).astype(np.int32)})
  return rows


def _unpack(rows):
  found = []
  for row in rows:
    for segment in range(1, int(row["encoder_segment_ids"].max()) + 1):
      found.append((tuple(row["encoder_input_tokens"][row["encoder_segment_ids"] == segment]),
                    tuple(row["decoder_target_tokens"][row["decoder_segment_ids"] == segment])))
  return sorted(found)


def test_every_example_is_packed_exactly_once_with_seqio_conventions():
  examples = _examples(40)
  rows = list(packing.pack_best_fit(examples, LENGTHS, window=4))
  assert _unpack(rows) == sorted((tuple(e["inputs"]), tuple(e["targets"])) for e in examples)
  for row in rows:
    assert set(row) == set(packing.FEATURES)
    targets, segments = row["decoder_target_tokens"], row["decoder_segment_ids"]
    # SeqIO's own shift-right-within-segments is the reference for teacher forcing.
    expected = seqio.utils.make_autoregressive_inputs(
        tf.constant(targets), sequence_id=tf.constant(segments)).numpy()
    np.testing.assert_array_equal(row["decoder_input_tokens"], expected)
    np.testing.assert_array_equal(row["decoder_loss_weights"], (targets > 0).astype(np.int32))
    for ids, positions in ((row["encoder_segment_ids"], row["encoder_positions"]),
                           (segments, row["decoder_positions"])):
      for segment in range(1, int(ids.max()) + 1):
        np.testing.assert_array_equal(positions[ids == segment],
                                      np.arange((ids == segment).sum()))
      assert (positions[ids == 0] == 0).all()


def test_fewer_rows_than_seqio_greedy_packing_on_skewed_lengths():
  examples = _examples(200, seed=1, skewed=True)
  ours = list(packing.pack_best_fit(examples, LENGTHS, window=16))
  spec = tf.TensorSpec([None], tf.int32)
  dataset = tf.data.Dataset.from_generator(
      lambda: iter(examples), output_signature={"inputs": spec, "targets": spec})
  theirs = list(seqio.EncDecFeatureConverter(pack=True)(dataset, LENGTHS).as_numpy_iterator())
  assert _unpack(ours) == _unpack(theirs)  # the same examples, trimmed the same way
  assert len(ours) < 0.8 * len(theirs), (len(ours), len(theirs))


def test_long_examples_are_trimmed_and_empty_targets_skipped():
  examples = [{"inputs": np.arange(2, 60, dtype=np.int32), "targets": np.arange(2, 40)},
              {"inputs": np.array([5, 1]), "targets": np.array([], np.int32)}]
  rows = list(packing.pack_best_fit(examples, LENGTHS))
  assert len(rows) == 1
  np.testing.assert_array_equal(rows[0]["encoder_input_tokens"], np.arange(2, 34))
  np.testing.assert_array_equal(rows[0]["decoder_target_tokens"], np.arange(2, 26))


def test_loss_of_best_fit_rows_equals_the_unpacked_loss():
  examples = _examples(12, seed=2)
  packed = list(packing.pack_best_fit(examples, LENGTHS, window=3))
  spec = tf.TensorSpec([None], tf.int32)
  dataset = tf.data.Dataset.from_generator(
      lambda: iter(examples), output_signature={"inputs": spec, "targets": spec})
  unpacked = list(seqio.EncDecFeatureConverter(pack=False)(dataset, LENGTHS)
                  .as_numpy_iterator())
  assert len(packed) < len(unpacked)
  stack = lambda rows: {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}
  params = model.init_params(testing.TINY, jax.random.key(0))
  step = jax.jit(train_step.make_eval_step(
      testing.TINY, train_step.LossConfig(normalization="average_per_sequence", z_loss=1e-4)))
  a = train_step.eval_metrics(jax.device_get(step(params, stack(packed))))
  b = train_step.eval_metrics(jax.device_get(step(params, stack(unpacked))))
  assert a["sequences"] == b["sequences"] == 12
  np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)


def test_seqio_uncached_dataset_warning_becomes_one_line_of_ours(caplog, capsys):
  from absl import logging as absl_logging

  from aya_t5x import input_pipeline

  input_pipeline._quiet_repeated_seqio_warnings()
  input_pipeline._REPEATED_WARNING.seen = False
  with caplog.at_level("WARNING"):
    for _ in range(3):
      absl_logging.warning("Using an uncached FunctionDataset for training is not recommended")
    absl_logging.warning("another warning")
  messages = [r.getMessage() for r in caplog.records]
  assert messages == ["another warning"]  # seqio's three are gone from the log
  # ... and said once, printed in the program's own words rather than a logging format.
  assert capsys.readouterr().err == f"note: {input_pipeline._UncachedDataNote.NOTE}\n"
