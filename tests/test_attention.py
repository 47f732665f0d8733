"""Each attention implementation equals the XLA reference, forward and gradients.

Pallas runs in interpret mode on CPU; cuDNN cannot run here, so its argument plumbing
(`attention.jax_nn_attention`) is checked through jax's own reference implementation
of the same call (`implementation='xla'`), and its kernel is left to the GPU check.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from aya_t5x import attention, model, optim, partitioning, testing, train_step
from aya_t5x.model_config import MT5Config
from aya_t5x.testing.packed_batches import packed_batch


def pallas(query, key, value, bias):
  return attention.pallas_tpu_attention(query, key, value, bias)


def jax_nn(query, key, value, bias):
  return attention.jax_nn_attention(query, key, value, bias, implementation="xla")


def reference(query, key, value, bias):
  logits = jnp.einsum("bhqd,bhkd->bhqk", query, key) + bias.additive(query.shape[2])
  return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits, axis=-1), value)


def _case(kind: str, rng):
  """(q, k, v, relative table and its expansion, bias builder, valid query mask)."""
  # The Pallas kernel's segment ids come in blocks of 128 keys.
  batch, heads, d, q_len = 2, 2, 8, 128
  k_len = 256 if kind == "cross" else q_len
  ids = packed_batch(int(rng.integers(100)), batch=batch, inputs=k_len, targets=q_len)
  query_ids, key_ids = ids["decoder_segment_ids"], ids["encoder_segment_ids"]
  if kind != "cross":
    key_ids = query_ids
  arrays = [jnp.asarray(rng.normal(size=(batch, heads, n, d)), jnp.float32)
            for n in (q_len, k_len, k_len)]
  relative = (None if kind == "cross" else
              jnp.asarray(rng.normal(size=(1, heads, q_len, k_len)), jnp.float32))
  packed = kind != "padded"
  key_valid = jnp.asarray(key_ids > 0)
  if kind == "padded":  # unpacked rows, padding at the end
    key_valid = jnp.asarray(np.arange(k_len)[None] < np.array([[k_len - 5], [k_len]]))

  def bias(rel):
    return attention.AttentionBias(
        relative=rel, key_valid=key_valid,
        query_segment_ids=jnp.asarray(query_ids) if packed else None,
        key_segment_ids=jnp.asarray(key_ids) if packed else None, causal=kind == "causal")

  query_valid = (query_ids > 0) if packed else np.ones((batch, q_len), bool)
  return arrays, relative, bias, jnp.asarray(query_valid)[:, None, :, None]


# Interpret-mode Pallas is slow on CPU: three cases cover its segment ids (packed, causal),
# a relative bias absent and unequal lengths (cross), and unpacked padding.
@pytest.mark.parametrize("implementation,kind", [
    *((pallas, kind) for kind in ("causal", "cross", "padded")),
    *((jax_nn, kind) for kind in ("causal", "bidirectional", "cross", "padded"))])
def test_fused_attention_equals_xla_forward_and_gradients(implementation, kind):
  rng = np.random.default_rng(len(kind))
  (query, key, value), relative, bias, query_valid = _case(kind, rng)
  cotangent = jnp.asarray(rng.normal(size=query.shape), jnp.float32)

  def loss(fn, q, k, v, rel):
    # Padded query rows attend differently per kernel and are ignored downstream.
    return jnp.sum(fn(q, k, v, bias(rel)) * cotangent * query_valid)

  args = (query, key, value, relative)
  argnums = (0, 1, 2) if relative is None else (0, 1, 2, 3)
  # Interpret mode for the backward pass's kernels too (traced after the forward).
  with pltpu.force_tpu_interpret_mode():
    got = jax.value_and_grad(lambda *a: loss(implementation, *a), argnums)(*args)
  want = jax.value_and_grad(lambda *a: loss(reference, *a), argnums)(*args)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for name, g, w in zip(("query", "key", "value", "relative"), got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("preset", ["megatron", "data_parallel"])
def test_pallas_attention_runs_per_device_on_a_sharded_mesh(preset):
  # Rows over 'data' and (megatron) heads over 'model': the kernel runs inside a
  # shard_map on each device's block and must give the unsharded reference.
  rng = np.random.default_rng(7)
  (query, key, value), relative, bias, query_valid = _case("causal", rng)
  cotangent = jnp.asarray(rng.normal(size=query.shape), jnp.float32)
  part = partitioning.Partitioner(num_partitions=2,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(jax.devices()[:4])

  def loss(fn, q, k, v, rel):
    return jnp.sum(fn(q, k, v, bias(rel)) * cotangent * query_valid)

  args = (query, key, value, relative)
  grad = jax.jit(jax.value_and_grad(lambda *a: loss(pallas, *a), (0, 1, 2, 3)))
  with pltpu.force_tpu_interpret_mode(), jax.set_mesh(mesh), part.rules_context():
    lowered = grad.lower(*args)
    got = grad(*args)
  assert "shard_map" in lowered.as_text() or "sdy.manual_computation" in lowered.as_text()
  want = jax.value_and_grad(lambda *a: loss(reference, *a), (0, 1, 2, 3))(*args)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for name, g, w in zip(("query", "key", "value", "relative"), got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def test_configuration_errors_name_the_fix():
  base = dict(vocab_size=64, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
              num_decoder_layers=1)
  with pytest.raises(ValueError, match="choose from"):
    MT5Config(**base, attention_implementation="flash")
  with pytest.raises(ValueError, match="needs bfloat16 or float16"):
    MT5Config(**base, attention_implementation="cudnn")
  config = MT5Config(**base, attention_implementation="pallas_tpu", dropout_rate=0.1)
  tokens = jnp.ones((1, 4), jnp.int32)
  params = model.init_params(dataclasses.replace(config, attention_implementation="xla"),
                             jax.random.key(0))
  with pytest.raises(ValueError, match="no dropout on the attention weights"):
    model.MT5(config).apply({"params": params}, tokens, tokens, enable_dropout=True,
                            rngs={"dropout": jax.random.key(1)})


SCHEDULE = optim.LearningRateSchedule(base_learning_rate=1e-2)
OPTIMIZER = optim.make_optimizer(SCHEDULE)


# Interpret-mode Pallas runs each kernel's grid step by step in Python: a model of one
# layer per stack and one head, two rows, keeps the trajectory test to seconds.
SMALL = dataclasses.replace(testing.TINY, num_heads=1, num_encoder_layers=1,
                            num_decoder_layers=1)


def trajectory(config, loss, steps=3):
  step = jax.jit(train_step.make_train_step(config, OPTIMIZER, SCHEDULE, loss, seed=0))
  params = model.init_params(dataclasses.replace(config, attention_implementation="xla"),
                             jax.random.key(0))
  state = train_step.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                opt_state=OPTIMIZER.init(params))
  losses, accuracies = [], []
  with pltpu.force_tpu_interpret_mode():
    for i in range(steps):
      state, metrics = step(state, packed_batch(i, batch=2, inputs=128, targets=128))
      losses.append(float(metrics["loss"]))
      accuracies.append(float(metrics["accuracy"]))
  return np.array(losses), np.array(accuracies)


def test_tiled_loss_and_flash_attention_follow_the_reference_trajectory():
  loss = train_step.LossConfig(normalization="average_per_sequence", z_loss=1e-3,
                               label_smoothing=0.1)
  want = trajectory(SMALL, loss)
  got = trajectory(dataclasses.replace(SMALL, attention_implementation="pallas_tpu"),
                   dataclasses.replace(loss, vocab_tile_size=48))
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  np.testing.assert_allclose(got[1], want[1])
