"""Loss normalisation with packing, and Adafactor/schedules against independent references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import seqio
import tensorflow as tf
import torch
from transformers.optimization import Adafactor as TorchAdafactor

from aya_t5x import losses, model, optim, testing, train_step


def converted(examples, pack, lengths):
  spec = tf.TensorSpec([None], tf.int32)
  dataset = tf.data.Dataset.from_generator(
      lambda: iter(examples), output_signature={"inputs": spec, "targets": spec})
  dataset = seqio.EncDecFeatureConverter(pack=pack)(dataset, lengths)
  rows = list(dataset.as_numpy_iterator())
  return {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}


@pytest.mark.parametrize("normalization", ["average_per_sequence", "num_real_target_tokens",
                                           "sum"])
def test_packed_batch_loss_equals_unpacked(normalization):
  rng = np.random.default_rng(0)
  examples = []
  for _ in range(9):
    inputs = np.append(rng.integers(2, 128, rng.integers(2, 10)), 1).astype(np.int32)
    targets = np.append(rng.integers(2, 128, rng.integers(1, 9)), 1).astype(np.int32)
    examples.append({"inputs": inputs, "targets": targets})
  lengths = {"inputs": 24, "targets": 24}
  packed = converted(examples, True, lengths)
  unpacked = converted(examples, False, lengths)
  assert packed["encoder_input_tokens"].shape[0] < unpacked["encoder_input_tokens"].shape[0]
  params = model.init_params(testing.TINY, jax.random.key(0))
  eval_step = jax.jit(train_step.make_eval_step(
      testing.TINY, train_step.LossConfig(normalization=normalization, z_loss=1e-4)))
  a = train_step.eval_metrics(jax.device_get(eval_step(params, packed)))
  b = train_step.eval_metrics(jax.device_get(eval_step(params, unpacked)))
  assert a["sequences"] == b["sequences"] == 9
  np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
  np.testing.assert_allclose(a["accuracy"], b["accuracy"], rtol=1e-6)


def test_average_per_sequence_weights_every_example_equally():
  token_loss = jnp.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
  weights = jnp.array([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
  loss, sequences = losses.normalized_loss(token_loss, weights,
                                           normalization="average_per_sequence")
  assert float(sequences) == 2.0
  assert float(loss) == pytest.approx((1.0 + 4.0) / 2)  # not (4 + 4) / 5 per token
  per_token, _ = losses.normalized_loss(token_loss, weights,
                                        normalization="num_real_target_tokens")
  assert float(per_token) == pytest.approx(8.0 / 5)


def test_label_smoothing_and_z_loss_match_a_direct_computation():
  logits = jax.random.normal(jax.random.key(0), (2, 3, 11))
  targets = jnp.array([[1, 4, 10], [0, 2, 3]])
  loss, z = losses.token_cross_entropy(logits, targets, z_loss=1e-4, label_smoothing=0.1)
  log_probs = jax.nn.log_softmax(logits)
  soft = optax.smooth_labels(jax.nn.one_hot(targets, 11), 0.1 * 11 / 10)
  confidence, low = 0.9, 0.1 / 10
  entropy = -(confidence * np.log(confidence) + 10 * low * np.log(low))
  log_z = jax.nn.logsumexp(logits, -1)
  expected = -jnp.sum(soft * log_probs, -1) - entropy + 1e-4 * log_z**2
  np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(z, 1e-4 * log_z**2, rtol=1e-6)


def test_adafactor_matches_the_pytorch_reference_implementation():
  """Factored (>= 128 x 128) and unfactored parameters over several steps."""
  rng = np.random.default_rng(0)
  params = {"w": rng.normal(size=(128, 256)).astype(np.float32),
            "b": rng.normal(size=(64,)).astype(np.float32)}
  ours = {k: jnp.asarray(v) for k, v in params.items()}
  tx = optim.make_optimizer(optim.LearningRateSchedule(base_learning_rate=3e-2))
  state = tx.init(ours)
  theirs = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params.items()}
  reference = TorchAdafactor(list(theirs.values()), lr=3e-2, eps=(1e-30, 1e-3),
                             clip_threshold=1.0, decay_rate=-0.8, beta1=None,
                             weight_decay=0.0, scale_parameter=True, relative_step=False,
                             warmup_init=False)
  for _ in range(4):
    grads = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
    updates, state = tx.update({k: jnp.asarray(g) for k, g in grads.items()}, state, ours)
    ours = optax.apply_updates(ours, updates)
    for name, tensor in theirs.items():
      tensor.grad = torch.from_numpy(grads[name])
    reference.step()
    for name in params:
      np.testing.assert_allclose(ours[name], theirs[name].detach().numpy(), rtol=2e-5,
                                 atol=1e-6, err_msg=name)


@pytest.mark.parametrize("kind,steps,expected", [
    ("constant", [0, 10, 1000], [1.0, 1.0, 1.0]),
    ("linear_warmup", [0, 50, 100, 400], [0.0, 0.5, 1.0, 1.0]),
    ("rsqrt_decay", [0, 100, 400, 10000], [1.0, 1.0, 0.5, 0.1]),
    ("cosine", [0, 50, 100, 550, 1000, 2000], [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]),
])
def test_learning_rate_schedules(kind, steps, expected):
  schedule = optim.LearningRateSchedule(kind=kind, base_learning_rate=1.0,
                                        warmup_steps=100, decay_steps=1000)
  np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, atol=1e-6)


def test_schedule_and_loss_configs_reject_typos():
  with pytest.raises(ValueError, match="choose from"):
    optim.LearningRateSchedule(kind="cosin")
  with pytest.raises(ValueError, match="average_per_sequence"):
    train_step.LossConfig(normalization="per_sequence")
