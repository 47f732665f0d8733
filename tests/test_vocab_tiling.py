"""The vocabulary-tiled loss equals the whole-vocabulary one, and never holds the logits."""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aya_t5x import losses, model, partitioning, testing, train_step, vocab_tiling
from aya_t5x.testing.packed_batches import packed_batch


def relative_error(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("vocab,tile,shards", [
    (101, 7, 1),     # tiles that do not divide: the last one overlaps the one before
    (101, 500, 1),   # a tile wider than the vocabulary
    (96, 20, 2),     # per-shard tiling, 48 columns a shard
])
def test_statistics_and_gradients_equal_whole_vocabulary(vocab, tile, shards):
  rng = np.random.default_rng(vocab + tile)
  tokens, embed = 2 * 19, 16
  hidden = jnp.asarray(rng.normal(size=(2, 19, embed)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(embed, vocab)), jnp.float32)
  targets = jnp.asarray(rng.integers(0, vocab, (2, 19)))
  # A logit tie: the argmax must pick the first, as jnp.argmax does.
  kernel = kernel.at[:, vocab - 1].set(kernel[:, 3])
  weights = jnp.asarray(rng.uniform(size=(2, 19)) * (np.arange(19) < 18), jnp.float32)

  segments = jnp.asarray(np.repeat([[1, 1, 2, 2, 2, 3] * 3 + [0]], 2, axis=0))

  def loss(stats):
    token_loss, _ = losses.cross_entropy_from_statistics(stats, vocab, z_loss=1e-2,
                                                         label_smoothing=0.1)
    # Every normalisation at once: each is a function of the token losses alone.
    total = 0.0
    for mode in losses.LossNormalization:
      numerator, denominator = losses.loss_numerator_and_denominator(
          token_loss, weights, normalization=mode, segment_ids=segments, fixed_factor=7.0)
      total = total + numerator / denominator
    return total

  def whole(h, k):
    return losses.vocab_statistics(jnp.einsum("ble,ev->blv", h, k), targets)

  def tiled(h, k):
    return vocab_tiling.vocab_statistics(h, k, targets, tile_size=tile, shards=shards)

  expected, got = jax.jit(whole)(hidden, kernel), jax.jit(tiled)(hidden, kernel)
  for name in ("log_z", "target_logit", "logit_sum"):
    np.testing.assert_allclose(getattr(got, name), getattr(expected, name), rtol=1e-5,
                               atol=1e-5, err_msg=name)
  np.testing.assert_array_equal(got.prediction, expected.prediction)
  grads = jax.jit(jax.grad(lambda h, k: loss(tiled(h, k)), (0, 1)))(hidden, kernel)
  reference = jax.jit(jax.grad(lambda h, k: loss(whole(h, k)), (0, 1)))(hidden, kernel)
  assert tokens == hidden.shape[0] * hidden.shape[1]
  for name, g, r in zip(("hidden", "kernel"), grads, reference):
    assert relative_error(g, r) < 1e-5, name


def test_bad_tile_sizes_are_refused():
  with pytest.raises(ValueError, match="vocab_tile_size must be a positive integer"):
    train_step.LossConfig(vocab_tile_size=0)
  with pytest.raises(ValueError, match="does not divide over the 3 devices"):
    vocab_tiling.vocab_statistics(jnp.ones((2, 4)), jnp.ones((4, 10)), jnp.ones(2, jnp.int32),
                                  tile_size=4, shards=3)


def _grads(preset, num_partitions, loss_config, devices, config=testing.TINY):
  """(metrics, gradients) of `_loss_terms` on a packed batch, jitted on `devices`."""
  part = partitioning.Partitioner(num_partitions=num_partitions,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(devices)
  params = model.init_params(config, jax.random.key(0))
  batch = packed_batch(0, vocab=config.vocab_size)
  net = model.MT5(config)

  def fn(p, b):
    return jax.value_and_grad(lambda q: train_step._loss_terms(
        net, loss_config, q, b, jax.random.key(1), False), has_aux=True)(p)

  with jax.set_mesh(mesh), part.rules_context():
    specs = model.param_logical_axes(config)
    shardings = part.logical_to_sharding(specs, mesh)
    params = jax.device_put(params, shardings)
    batch = jax.device_put(batch, part.batch_sharding(mesh))
    (numerator, sums), grads = jax.jit(fn)(params, batch)
  return {"numerator": numerator, **sums}, grads


LOSS = train_step.LossConfig(normalization="average_per_sequence", z_loss=1e-2,
                             label_smoothing=0.1)


@pytest.fixture(scope="module")
def untiled_reference():
  return _grads("data_parallel", 1, LOSS, jax.devices()[:1])


@pytest.mark.parametrize("preset,num_partitions", [
    ("data_parallel", 1), ("fsdp", 1), ("megatron", 2), ("2d", 4)])
def test_tiled_step_gradients_equal_untiled_under_every_preset(untiled_reference, preset,
                                                               num_partitions):
  assert len(jax.devices()) == 8
  # 24 divides neither the 128-token vocabulary nor its 64 or 32 columns per shard.
  tiled = dataclasses.replace(LOSS, vocab_tile_size=24)
  metrics, grads = _grads(preset, num_partitions, tiled, jax.devices())
  ref_metrics, ref_grads = untiled_reference
  for name, value in ref_metrics.items():
    np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)
  flat = jax.tree_util.tree_leaves_with_path(grads)
  for (path, g), r in zip(flat, jax.tree.leaves(ref_grads)):
    assert relative_error(g, r) < 1e-5, jax.tree_util.keystr(path)


@pytest.mark.parametrize("preset,num_partitions", [("megatron", 2)])
def test_compiled_tiled_step_holds_no_token_by_vocab_buffer(preset, num_partitions):
  # A vocabulary large enough that the logits dominate everything else.
  config = dataclasses.replace(testing.TINY, vocab_size=8192)
  part = partitioning.Partitioner(num_partitions=num_partitions,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(jax.devices())
  params = model.param_shapes(config)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
           for k, v in packed_batch(0, batch=16, targets=64, vocab=128).items()}
  net = model.MT5(config)

  def temporaries(loss_config):
    def fn(p, b):
      return jax.grad(lambda q: train_step._loss_terms(
          net, loss_config, q, b, jax.random.key(1), False)[0])(p)
    with jax.set_mesh(mesh), part.rules_context():
      shardings = part.logical_to_sharding(model.param_logical_axes(config), mesh)
      compiled = jax.jit(fn, in_shardings=(shardings, part.batch_sharding(mesh))).lower(
          params, batch).compile()
    largest = max(math.prod(int(d) for d in dims.split(","))
                  for dims in re.findall(r"\b(?:f32|bf16|s32|pred)\[([0-9,]+)\]",
                                         compiled.as_text()))
    return compiled.memory_analysis().temp_size_in_bytes, largest

  # One device's logits: its tokens x its shard of the vocabulary.
  tokens_per_device = 16 * 64 // (8 // num_partitions)
  logits = tokens_per_device * config.vocab_size // num_partitions
  untiled, untiled_largest = temporaries(LOSS)
  tiled, tiled_largest = temporaries(dataclasses.replace(LOSS, vocab_tile_size=512))
  assert untiled_largest >= logits  # the reference path does hold them
  # No array of the tiled program is as large as the logits (the largest are the
  # kernel and the embedding and their gradients), and the temporaries shrink by more
  # than one float32 copy of them.
  assert tiled_largest < logits / 2, tiled_largest
  assert untiled - tiled > 4 * logits, (tiled, untiled)
