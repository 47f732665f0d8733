"""The preference step: a frozen reference, packed pairs, microbatches, the identity start."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aya_t5x import model as model_lib
from aya_t5x.optim import LearningRateSchedule, make_optimizer
from aya_t5x.preference.losses import PairLossConfig
from aya_t5x.preference.objective import PreferenceObjective
from aya_t5x.testing.models import TINY
from aya_t5x.train_step import LossConfig, TrainState, make_train_step

CONFIG = dataclasses.replace(TINY, dropout_rate=0.1)
LIVE = PreferenceObjective(pair_loss=PairLossConfig(name="sigmoid", beta=0.5),
                           reference="live")


def _row(tokens, length):
  return np.array(list(tokens) + [0] * (length - len(tokens)), np.int32)


def _pairs(count, seed=0):
  rng = np.random.default_rng(seed)
  return [tuple(list(rng.integers(2, CONFIG.vocab_size, rng.integers(2, 5))) for _ in range(3))
          for _ in range(count)]


def unpacked(pairs, lengths=(8, 8)):
  batch = {"encoder_input_tokens": np.stack([_row(p, lengths[0]) for p, _, _ in pairs])}
  for index, side in ((1, "chosen"), (2, "rejected")):
    targets = np.stack([_row(pair[index], lengths[1]) for pair in pairs])
    batch[f"{side}_target_tokens"] = targets
    batch[f"{side}_input_tokens"] = np.pad(targets, ((0, 0), (1, 0)))[:, :-1]
    batch[f"{side}_loss_weights"] = (targets > 0).astype(np.int32)
  return batch


def packed(pairs, lengths=(16, 16)):
  """All pairs in one row: segment k of the encoder, chosen and rejected rows is pair k."""
  def pack(pieces, length, shift):
    tokens, segments, inputs = [], [], []
    for number, piece in enumerate(pieces, start=1):
      tokens += piece
      segments += [number] * len(piece)
      inputs += [0] + piece[:-1] if shift else piece
    return _row(tokens, length), _row(segments, length), _row(inputs, length)

  tokens, segments, _ = pack([p for p, _, _ in pairs], lengths[0], False)
  batch = {"encoder_input_tokens": tokens[None], "encoder_segment_ids": segments[None]}
  for index, side in ((1, "chosen"), (2, "rejected")):
    targets, seg, inputs = pack([pair[index] for pair in pairs], lengths[1], True)
    batch.update({f"{side}_target_tokens": targets[None], f"{side}_segment_ids": seg[None],
                  f"{side}_input_tokens": inputs[None],
                  f"{side}_loss_weights": (targets > 0).astype(np.int32)[None]})
  return batch


def _terms(objective, params, batch, reference, tile=None):
  def loss(p):
    return objective.loss_terms(model_lib.MT5(CONFIG), LossConfig(vocab_tile_size=tile), p,
                                jax.tree.map(jnp.asarray, batch), jax.random.key(0), False,
                                reference)
  (numerator, sums), grads = jax.value_and_grad(loss, has_aux=True)(params)
  return numerator, sums, grads


def test_packed_pairs_equal_unpacked_pairs():
  params = model_lib.init_params(CONFIG, jax.random.key(0))
  reference = model_lib.init_params(CONFIG, jax.random.key(1))
  pairs = _pairs(3)
  a = _terms(LIVE, params, unpacked(pairs), reference)
  b = _terms(LIVE, params, packed(pairs), reference)
  for key in ("denominator", "chosen_logp", "rejected_logp", "reward_margin", "kl_numerator"):
    np.testing.assert_allclose(a[1][key], b[1][key], rtol=1e-5, atol=1e-5, err_msg=key)
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
  for x, y in zip(jax.tree.leaves(a[2]), jax.tree.leaves(b[2]), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
  # Without segment ids the packed pairs would see each other: a different answer.
  leaky = {k: v for k, v in packed(pairs).items() if "segment" not in k}
  leaky_terms = _terms(LIVE, params, leaky, reference)
  assert not np.allclose(leaky_terms[1]["chosen_logp"], a[1]["chosen_logp"], rtol=1e-3)


def test_start_from_the_reference_is_log_two_and_no_drift():
  params = model_lib.init_params(CONFIG, jax.random.key(0))
  numerator, sums, _ = _terms(LIVE, params, unpacked(_pairs(4)), params, tile=40)
  metrics = LIVE.metrics(numerator, sums)
  np.testing.assert_allclose(metrics["loss"], np.log(2.0), rtol=1e-6)
  assert float(metrics["kl_estimate"]) == 0.0 and float(metrics["reward_margin"]) == 0.0


def _state(params, tx):
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params))


def test_reference_never_changes_and_microbatches_add_up():
  objective = LIVE
  schedule = LearningRateSchedule(kind="constant", base_learning_rate=0.01)
  tx = make_optimizer(schedule)
  params = model_lib.init_params(CONFIG, jax.random.key(0))
  reference = jax.tree.map(jnp.array, params)
  frozen_copy = jax.tree.map(np.array, reference)
  batch = jax.tree.map(jnp.asarray, unpacked(_pairs(4)))
  whole = jax.jit(make_train_step(CONFIG, tx, schedule, LossConfig(), seed=0,
                                  objective=objective))
  extra = ({}, reference)  # nothing frozen (every parameter trains), then the reference
  state = _state(params, tx)
  for _ in range(3):
    state, metrics = whole(state, batch, *extra)
  for x, y in zip(jax.tree.leaves(reference), jax.tree.leaves(frozen_copy), strict=True):
    np.testing.assert_array_equal(np.asarray(x), y)
  assert not np.allclose(state.params["decoder"]["logits_dense"]["kernel"],
                         frozen_copy["decoder"]["logits_dense"]["kernel"])
  assert {"reward_accuracy", "reward_margin", "chosen_logp", "rejected_logp",
          "grad_norm"} <= set(metrics)
  # Microbatches: dropout masks differ per microbatch, so compare without dropout.
  no_dropout = dataclasses.replace(CONFIG, dropout_rate=0.0)
  one = make_train_step(no_dropout, tx, schedule, LossConfig(), seed=0, objective=objective)
  two = make_train_step(no_dropout, tx, schedule, LossConfig(), seed=0, num_microbatches=2,
                        objective=objective)
  s1, m1 = jax.jit(one)(_state(params, tx), batch, *extra)
  s2, m2 = jax.jit(two)(_state(params, tx), batch, *extra)
  np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-5)
  for x, y in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def _sharded_terms(preset, num_partitions, devices, tile):
  """(sums, gradients) of the live DPO loss on 8 pairs, jitted under a preset."""
  from aya_t5x import partitioning

  part = partitioning.Partitioner(num_partitions=num_partitions,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(devices)
  config = dataclasses.replace(CONFIG, dropout_rate=0.0)
  params = model_lib.init_params(config, jax.random.key(0))
  reference = model_lib.init_params(config, jax.random.key(1))
  batch = unpacked(_pairs(8, seed=2))

  def fn(p, r, b):
    return jax.value_and_grad(lambda q: LIVE.loss_terms(
        model_lib.MT5(config), LossConfig(vocab_tile_size=tile), q, b, jax.random.key(0),
        False, r), has_aux=True)(p)

  with jax.set_mesh(mesh), part.rules_context():
    shardings = part.logical_to_sharding(model_lib.param_logical_axes(config), mesh)
    params, reference = (jax.device_put(x, shardings) for x in (params, reference))
    batch = jax.device_put(batch, part.batch_sharding(mesh))
    (_, sums), grads = jax.jit(fn)(params, reference, batch)
  return sums, grads


@pytest.mark.parametrize("preset,num_partitions", [
    ("fsdp", 1), ("megatron", 2), ("2d", 4)])
def test_sharded_presets_equal_one_device(preset, num_partitions):
  expected_sums, expected = _sharded_terms("data_parallel", 1, jax.devices()[:1], None)
  sums, grads = _sharded_terms(preset, num_partitions, jax.devices(), 24)
  for key, value in expected_sums.items():
    np.testing.assert_allclose(sums[key], value, rtol=1e-5, atol=1e-5, err_msg=key)
  for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
