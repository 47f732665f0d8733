"""LoRA in the network and the step: B = 0 is the base, merging is exact, peft agrees,
the base never changes, only adapters are optimised, every preset shards them."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from aya_t5x import layer_stack, model, optim, partitioning, testing, train_state, train_step
from aya_t5x.adapters import lora as lora_lib
from aya_t5x.adapters import trainable as trainable_lib
from aya_t5x.checkpoints import adapters, hf
from aya_t5x.testing.models import hf_reference_model
from tests.test_partitioning_and_steps import random_batch

LORA = lora_lib.LoraConfig(targets=lora_lib.TARGETS, rank=4, alpha=8.0)
SCHEDULE = optim.LearningRateSchedule(base_learning_rate=1e-2)
OPTIMIZER = optim.make_optimizer(SCHEDULE, optim.AdafactorConfig(
    multiply_by_parameter_scale=False))


def logits(config, params, batch):
  return np.asarray(model.MT5(config).apply(
      {"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"]))


def random_adapters(config, seed):
  """Adapters with B drawn too (a trained adapter), for merge and export checks."""
  trained, _ = trainable_lib.split(model.init_params(config, jax.random.key(seed)),
                                   trainable_lib.LoraAdapters(lora=config.lora))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: rng.normal(0, 0.2, x.shape).astype(np.float32), trained)


@pytest.mark.parametrize("scan", [False, True])
def test_zero_b_is_the_base_exactly(scan):
  base_config = dataclasses.replace(testing.TINY, scan_layers=scan)
  config = dataclasses.replace(base_config, lora=LORA)
  full = model.init_params(config, jax.random.key(1))
  base, _ = trainable_lib.split(full, trainable_lib.ALL)
  without = trainable_lib.split(full, trainable_lib.LoraAdapters(lora=LORA))[1]
  batch = random_batch(0)
  # A is random, B zero: the adapted network computes exactly the base's logits.
  assert np.abs(np.asarray(jax.tree.leaves(
      trainable_lib.split(full, trainable_lib.LoraAdapters(lora=LORA))[0])[0])).sum() > 0
  np.testing.assert_array_equal(logits(config, base, batch),
                                logits(base_config, without, batch))


def test_merged_equals_unmerged():
  config = dataclasses.replace(testing.TINY, lora=LORA)
  base = model.init_params(testing.TINY, jax.random.key(2))
  tree = random_adapters(config, 3)
  batch = random_batch(1)
  unmerged = logits(config, trainable_lib.combine(tree, base), batch)
  merged = logits(testing.TINY, adapters.merge_adapters(base, tree, LORA), batch)
  assert np.abs(unmerged - logits(testing.TINY, base, batch)).max() > 1e-2  # adapters act
  np.testing.assert_allclose(merged, unmerged, atol=1e-5, rtol=1e-5)


def test_peft_export_loads_in_transformers_with_our_logits(tmp_path):
  peft = pytest.importorskip("peft")
  reference = hf_reference_model(testing.TINY_UNEVEN, seed=7)
  reference.save_pretrained(tmp_path / "base", safe_serialization=True)
  base, base_config = hf.load_hf_checkpoint(tmp_path / "base")
  config = dataclasses.replace(base_config, lora=LORA)
  tree = random_adapters(config, 4)
  info = adapters.AdapterInfo(lora=LORA, base_path=str(tmp_path / "base"),
                              base_dtype="float32", fingerprint=adapters.fingerprint(base))
  adapters.save_peft(tree, info, base_config, tmp_path / "peft")
  loaded = peft.PeftModel.from_pretrained(reference, tmp_path / "peft").eval()
  inputs = np.array([[5, 9, 33, 1, 0], [7, 7, 2, 40, 1]])
  decoder_inputs = np.array([[0, 4, 8], [0, 3, 3]])
  with torch.no_grad():
    want = loaded(input_ids=torch.tensor(inputs), attention_mask=torch.tensor(inputs != 0),
                  decoder_input_ids=torch.tensor(decoder_inputs)).logits.numpy()
  ours = np.asarray(model.MT5(config).apply(
      {"params": trainable_lib.combine(tree, base)}, jnp.asarray(inputs),
      jnp.asarray(decoder_inputs)))
  np.testing.assert_allclose(ours, want, atol=1e-5, rtol=1e-5)
  # And the adapters matter: the base alone differs.
  plain = np.asarray(model.MT5(base_config).apply(
      {"params": base}, jnp.asarray(inputs), jnp.asarray(decoder_inputs)))
  assert np.abs(plain - want).max() > 1e-2


def lora_trajectory(devices, preset, num_partitions, *, config=testing.TINY,
                    loss=train_step.LossConfig(), steps=4, dropout=0.1):
  """Trains LoRA for `steps` steps; returns losses, state, frozen, a copy of frozen.

  Scanned configs start from the per-layer draw, stacked, so that they compare with it.
  """
  trainable = trainable_lib.LoraAdapters(lora=dataclasses.replace(LORA, dropout=dropout))
  config = trainable.model_config(config)
  per_layer = dataclasses.replace(config, scan_layers=False)
  part = partitioning.Partitioner(num_partitions=num_partitions,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(devices)
  tx = optim.make_run_optimizer(config, SCHEDULE, optim.AdafactorConfig(
      multiply_by_parameter_scale=False))
  layout = train_state.state_layout(config, tx, part, mesh, trainable)
  frozen_layout = train_state.frozen_layout(config, part, mesh, trainable)
  params = model.init_params(per_layer, jax.random.key(0))
  if config.scan_layers:
    params = layer_stack.stack_layers(params)
  state = train_state.init_state(config, tx, layout, mesh, jax.random.key(0),
                                 jax.tree.map(np.asarray, params), trainable)
  frozen = train_state.init_frozen(config, frozen_layout, mesh, jax.random.key(0), trainable,
                                   params)
  before = jax.tree.map(np.asarray, frozen)
  sharding = part.batch_sharding(mesh)
  step = train_step.jit_train_step(config, tx, SCHEDULE, loss, seed=0, num_microbatches=1,
                                   state_shardings=layout.shardings, batch_sharding=sharding,
                                   trainable=trainable, frozen_shardings=frozen_layout.shardings)
  losses = []
  with jax.set_mesh(mesh), part.rules_context():
    for i in range(steps):
      batch = jax.tree.map(lambda x: jax.device_put(x, sharding), random_batch(i))
      state, metrics = step(state, batch, frozen)
      losses.append(float(metrics["loss"]))
  return np.array(losses), state, frozen, before


@pytest.fixture(scope="module")
def one_device():
  return lora_trajectory(jax.devices()[:1], "data_parallel", 1)


def test_base_is_bit_identical_and_only_adapters_are_optimised(one_device):
  losses, state, frozen, before = one_device
  assert losses[-1] < losses[0]
  for x, y in zip(jax.tree.leaves(frozen), jax.tree.leaves(before), strict=True):
    np.testing.assert_array_equal(np.asarray(x), y)
  paths = [tuple(getattr(k, "key", getattr(k, "name", k)) for k in path)
           for path, _ in jax.tree_util.tree_leaves_with_path(state.opt_state)]
  param_paths = [p for p in paths if any(s in p for s in ("encoder", "decoder"))]
  assert param_paths and all(p[-1] in ("lora_a", "lora_b") for p in param_paths)
  assert all(lora_lib.is_adapter_path(k) for k in
             __import__("flax").traverse_util.flatten_dict(state.params))
  # B moved away from zero: the adapters trained.
  b = state.params["encoder"]["layers_0"]["attention"]["query"]["lora_b"]
  assert np.abs(np.asarray(b)).max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("preset,num_partitions", [
    ("data_parallel", 1), ("fsdp", 1), ("megatron", 2), ("2d", 4)])
def test_every_preset_on_8_devices_matches_1_device(one_device, preset, num_partitions):
  assert len(jax.devices()) == 8
  losses, state, _, _ = lora_trajectory(jax.devices(), preset, num_partitions)
  np.testing.assert_allclose(losses, one_device[0], rtol=1e-5)
  b = state.params["encoder"]["layers_0"]["mlp"]["wi_0"]["lora_b"]
  a = state.params["encoder"]["layers_0"]["mlp"]["wi_0"]["lora_a"]
  if preset in ("megatron", "2d"):  # B's output axis (mlp) is sharded over 'model'
    assert b.sharding.spec == jax.sharding.PartitionSpec(None, "model")
  if preset in ("fsdp", "2d"):  # A's input axis (embed) over 'data'
    assert a.sharding.spec[0] == "data"


def test_scanned_remat_tiled_loss_match_the_reference():
  device = jax.devices()[:1]
  reference, _, _, _ = lora_trajectory(device, "data_parallel", 1, dropout=0.0)
  config = dataclasses.replace(testing.TINY, scan_layers=True, remat_policy="full")
  tiled = train_step.LossConfig(vocab_tile_size=32)
  losses, state, _, _ = lora_trajectory(device, "data_parallel", 1, config=config, loss=tiled,
                                        dropout=0.0)
  np.testing.assert_allclose(losses, reference, rtol=2e-5)
  assert layer_stack.is_stacked(state.params)
  # The tiled loss merges the output layer's adapter: adapter dropout there is refused.
  with pytest.raises(ValueError, match="logits_dense"):
    lora_trajectory(device, "data_parallel", 1, loss=tiled, dropout=0.1, steps=1)
