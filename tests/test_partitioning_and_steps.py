"""Sharded steps: every preset on 8 devices equals 1 device; microbatches equal one batch."""

import jax
import numpy as np
import pytest

from aya_t5x import optim, partitioning, testing, train_state, train_step

SCHEDULE = optim.LearningRateSchedule(base_learning_rate=1e-2)
OPTIMIZER = optim.make_optimizer(SCHEDULE)
LOSS = train_step.LossConfig(normalization="average_per_sequence")


def random_batch(seed, batch=8, inputs=16, targets=8, vocab=128):
  rng = np.random.default_rng(seed)
  out = {"encoder_input_tokens": rng.integers(2, vocab, (batch, inputs)),
         "decoder_target_tokens": rng.integers(2, vocab, (batch, targets))}
  out["encoder_input_tokens"][:, -3:] = 0  # padding
  out["decoder_target_tokens"][::2, -2:] = 0
  out["decoder_input_tokens"] = np.concatenate(
      [np.zeros((batch, 1)), out["decoder_target_tokens"][:, :-1]], 1)
  return {k: v.astype(np.int32) for k, v in out.items()}


def loss_trajectory(devices, preset, num_partitions, steps=5, num_microbatches=1):
  part = partitioning.Partitioner(num_partitions=num_partitions,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(devices)
  layout = train_state.state_layout(testing.TINY, OPTIMIZER, part, mesh)
  state = train_state.init_state(testing.TINY, OPTIMIZER, layout, mesh, jax.random.key(0))
  step = train_step.make_train_step(testing.TINY, OPTIMIZER, SCHEDULE, LOSS, seed=0,
                                    num_microbatches=num_microbatches)
  sharding = part.batch_sharding(mesh)
  with jax.set_mesh(mesh), part.rules_context():
    compiled = jax.jit(step, in_shardings=(layout.shardings, sharding),
                       out_shardings=(layout.shardings, None), donate_argnums=0)
    losses = []
    for i in range(steps):
      batch = jax.tree.map(lambda x: jax.device_put(x, sharding), random_batch(i))
      state, metrics = compiled(state, batch)
      losses.append(float(metrics["loss"]))
  return np.array(losses), state


@pytest.fixture(scope="module")
def single_device():
  return loss_trajectory(jax.devices()[:1], "data_parallel", 1)


@pytest.mark.parametrize("preset,num_partitions", [
    ("data_parallel", 1), ("fsdp", 1), ("megatron", 2), ("2d", 4)])
def test_preset_on_8_devices_matches_1_device(single_device, preset, num_partitions):
  assert len(jax.devices()) == 8
  losses, state = loss_trajectory(jax.devices(), preset, num_partitions)
  np.testing.assert_allclose(losses, single_device[0], rtol=1e-5)
  assert losses[-1] < losses[0]  # it trains
  # The state really is sharded as the preset says.
  query = state.params["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  if preset == "fsdp":
    assert query.sharding.spec == jax.sharding.PartitionSpec("data", "model")
    assert query.addressable_shards[0].data.shape == (32 // 8, 32)
  if preset == "megatron":
    assert query.sharding.spec == jax.sharding.PartitionSpec(None, "model")


def test_gradient_accumulation_equals_one_batch(single_device):
  losses, _ = loss_trajectory(jax.devices(), "fsdp", 1, num_microbatches=2)
  np.testing.assert_allclose(losses, single_device[0], rtol=1e-5)


def test_bad_mesh_and_batch_name_the_fix():
  with pytest.raises(partitioning.PartitioningError, match="does not divide 8 devices"):
    partitioning.Partitioner(num_partitions=3).mesh()
  part = partitioning.Partitioner(num_partitions=2,
                                  logical_axis_rules=partitioning.preset_rules("megatron"))
  mesh = part.mesh()
  with pytest.raises(partitioning.PartitioningError, match="multiple of 4"):
    part.check_batch(mesh, 6)
  with pytest.raises(partitioning.PartitioningError, match="num_microbatches=4"):
    part.check_batch(mesh, 6, num_microbatches=4)
  with pytest.raises(partitioning.PartitioningError, match="choose from"):
    partitioning.preset_rules("zero3")


def test_unsplittable_parameter_is_named():
  part = partitioning.Partitioner(num_partitions=8,
                                  logical_axis_rules=partitioning.preset_rules("megatron"))
  with pytest.raises(partitioning.PartitioningError,
                     match=r"relpos_bias/rel_embedding.*\(4, 32\).*8 ways"):
    train_state.state_layout(testing.TINY, OPTIMIZER, part, part.mesh())
