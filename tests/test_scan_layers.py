"""Scanned layers (MT5Config.scan_layers): the same model, optimizer and checkpoints."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aya_t5x import layer_stack, model, optim, testing
from aya_t5x.checkpoints import formats, loading
from tests.test_train import committed_steps, run_in_process


def max_difference(a, b) -> float:
  return max(float(jnp.max(jnp.abs(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.parametrize("remat", ["none", "full"])
def test_scanned_model_equals_unscanned_forward_and_gradients(remat):
  config = dataclasses.replace(testing.TINY_UNEVEN, remat_policy=remat)
  scanned = dataclasses.replace(config, scan_layers=True)
  params = model.init_params(config, jax.random.key(0))
  stacked = layer_stack.stack_layers(params)
  assert jax.tree.structure(stacked) == jax.tree.structure(model.param_shapes(scanned))
  kernel_axes = model.param_logical_axes(scanned)["encoder"]["layers"]["mlp"]["wi_0"]["kernel"]
  assert tuple(kernel_axes) == ("layers", "embed", "mlp")
  rng = np.random.default_rng(0)
  inputs = jnp.asarray(rng.integers(1, 100, (2, 7)))
  targets = jnp.asarray(rng.integers(1, 100, (2, 5)))

  def loss(p, c):
    return jnp.sum(model.MT5(c).apply({"params": p}, inputs, targets) ** 2)

  value, grads = jax.value_and_grad(loss)(params, config)
  scanned_value, scanned_grads = jax.value_and_grad(loss)(stacked, scanned)
  np.testing.assert_allclose(scanned_value, value, rtol=1e-6)
  assert max_difference(layer_stack.unstack_layers(scanned_grads), grads) < 1e-4


def test_stacking_round_trips_and_rejects_gaps():
  params = jax.tree.map(np.asarray, model.init_params(testing.TINY_UNEVEN, jax.random.key(1)))
  stacked = layer_stack.stack_layers(params)
  assert stacked["encoder"]["layers"]["attention"]["query"]["kernel"].shape == (3, 24, 30)
  assert isinstance(stacked["encoder"]["layers"]["mlp"]["wo"]["kernel"], np.ndarray)
  assert layer_stack.is_stacked(stacked) and not layer_stack.is_stacked(params)
  back = layer_stack.unstack_layers(stacked)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, y)
  gap = {**params, "encoder": {k: v for k, v in params["encoder"].items() if k != "layers_1"}}
  with pytest.raises(ValueError, match="without gaps"):
    layer_stack.stack_layers(gap)


@pytest.mark.parametrize("clip", [None, 0.5])
def test_per_layer_optimizer_equals_adafactor_on_the_unscanned_model(clip):
  # d_model 128 and d_ff 256 make Adafactor factor the kernels (min_dim_size_to_factor).
  config = model.MT5Config(vocab_size=300, d_model=128, num_heads=2, d_ff=256,
                           num_encoder_layers=3, num_decoder_layers=2)
  params = model.init_params(config, jax.random.key(0))
  grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape) * 0.1, params)
  schedule = optim.LearningRateSchedule(base_learning_rate=0.01)
  settings = optim.AdafactorConfig(global_gradient_clip_norm=clip, momentum=0.9)
  reference = optim.make_optimizer(schedule, settings)
  scanned = optim.make_run_optimizer(dataclasses.replace(config, scan_layers=True), schedule,
                                     settings)
  stacked_params, stacked_grads = (layer_stack.stack_layers(t) for t in (params, grads))
  state, stacked_state = reference.init(params), scanned.init(stacked_params)
  assert max_difference(layer_stack.unstack_layers(stacked_state), state) == 0
  for _ in range(2):
    updates, state = reference.update(grads, state, params)
    stacked_updates, stacked_state = jax.jit(scanned.update)(stacked_grads, stacked_state,
                                                            stacked_params)
  assert max_difference(layer_stack.unstack_layers(stacked_updates), updates) < 1e-8
  assert max_difference(layer_stack.unstack_layers(stacked_state), state) < 1e-8
  # Plain Adafactor on the stacks would clip and scale by each stack's RMS instead.
  plain_updates, _ = reference.update(stacked_grads, reference.init(stacked_params),
                                      stacked_params)
  first, _ = reference.update(grads, reference.init(params), params)
  assert max_difference(layer_stack.unstack_layers(plain_updates), first) > 1e-7


def test_a_scanned_run_trains_like_an_unscanned_one_and_its_checkpoints_load_unscanned(
    tmp_path):
  params = jax.tree.map(np.asarray, model.init_params(testing.TINY, jax.random.key(5)))
  formats.save_params(params, testing.TINY, tmp_path / "initial", fmt="aya_t5x")
  common = (f"--gin.INITIAL_CHECKPOINT_PATH='{tmp_path / 'initial'}'",
            "--gin.DROPOUT_RATE=0.0", "--gin.train.log_every=1")
  # One device: on the CPU backend a sharded scan's all-gathers can deadlock XLA's
  # in-process collectives (docs/troubleshooting.md); sharded scans are compiled for TPU
  # topologies in test_compile.py.
  one_device = jax.devices()[:1]
  scanned = run_in_process(tmp_path / "scanned", 3, *common,
                           "--gin.MT5Config.scan_layers=True", devices=one_device)
  unscanned = run_in_process(tmp_path / "unscanned", 3, *common, devices=one_device)

  def losses(run):
    lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train/loss"] for line in lines if "train/loss" in line]

  np.testing.assert_allclose(losses("scanned"), losses("unscanned"), rtol=1e-5)
  # Results and checkpoints are in the per-layer layout, whatever the run used.
  assert max_difference(scanned.state.params, unscanned.state.params) < 1e-5
  assert max_difference(scanned.state.opt_state, unscanned.state.opt_state) < 1e-5
  assert max_difference(loading.load_params(tmp_path / "scanned", testing.TINY),
                        scanned.state.params) == 0
  # An unscanned run resumes the scanned run's checkpoint.
  resumed = run_in_process(tmp_path / "scanned", 4, *common, devices=one_device)
  assert resumed.step == 4 and committed_steps(tmp_path / "scanned") == [3, 4]
