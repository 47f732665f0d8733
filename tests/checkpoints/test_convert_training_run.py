"""`aya-t5x convert --from aya_t5x` of a training run: its MODEL_DIR or one step folder.

The run is written without training, as `aya_t5x.train` writes it: a sharded `TrainState`
(parameters and Adafactor state) saved by `TrainCheckpointer` at two steps.
"""

import jax
import numpy as np
import pytest
from flax import traverse_util

from aya_t5x import cli, model, partitioning, testing, train_state
from aya_t5x.checkpoints import hf, native
from aya_t5x.checkpoints.train_checkpoints import TrainCheckpointer
from aya_t5x.optim import LearningRateSchedule, make_optimizer

# The tiny test model, from the gin model file as a user passes it.
TINY_GIN = ("--gin_file", "models/mt5_tiny.gin",
            f"--gin.MT5Config.vocab_size={testing.TINY.vocab_size}",
            f"--gin.MT5Config.d_model={testing.TINY.d_model}",
            f"--gin.MT5Config.d_kv={testing.TINY.d_kv}",
            f"--gin.MT5Config.d_ff={testing.TINY.d_ff}")
STEPS = (4, 8)


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
  """A MODEL_DIR with checkpoints/4 and checkpoints/8, each holding other parameters."""
  model_dir = tmp_path_factory.mktemp("run")
  part = partitioning.Partitioner(num_partitions=2,
                                  logical_axis_rules=partitioning.preset_rules("megatron"))
  mesh = part.mesh(jax.devices()[:8])
  tx = make_optimizer(LearningRateSchedule(base_learning_rate=0.01))
  layout = train_state.state_layout(testing.TINY, tx, part, mesh)
  checkpointer = TrainCheckpointer(model_dir, save_every_steps=4, async_save=False)
  params_at = {}
  for step in STEPS:
    params = jax.tree.map(np.asarray, model.init_params(testing.TINY, jax.random.key(step)))
    state = train_state.init_state(testing.TINY, tx, layout, mesh, jax.random.key(0), params)
    assert checkpointer.save(step, state, {"position": step}, force=True)
    params_at[step] = params
  checkpointer.close()
  return model_dir, params_at


def assert_same_params(got, want):
  got, want = traverse_util.flatten_dict(got), traverse_util.flatten_dict(want)
  assert got.keys() == want.keys()
  for name in want:
    np.testing.assert_array_equal(np.asarray(got[name]), want[name], err_msg="/".join(name))


def load(fmt, path):
  return native.load_params(path) if fmt == "aya_t5x" else hf.load_hf_checkpoint(path)


@pytest.mark.parametrize("target", ["hf", "aya_t5x"])
@pytest.mark.parametrize("source", ["run", "step"])
def test_run_or_step_folder_converts_to_its_exact_parameters(training_run, tmp_path, capsys,
                                                             source, target):
  model_dir, params_at = training_run
  # The run folder means its latest step; a step folder, that step.
  src, step = (model_dir, 8) if source == "run" else (model_dir / "checkpoints" / "4", 4)
  assert cli.main(["convert", "--from", "aya_t5x", "--to", target, str(src),
                   str(tmp_path / "out"), *TINY_GIN]) == 0
  assert str(model_dir / "checkpoints" / str(step) / "state") in capsys.readouterr().out
  params, config = load(target, tmp_path / "out")
  assert_same_params(params, params_at[step])
  assert config == testing.TINY
  # The exported folder is an ordinary checkpoint: it converts on without gin files.
  assert cli.main(["convert", "--from", target, "--to", "aya_t5x", str(tmp_path / "out"),
                   str(tmp_path / "again")]) == 0
  assert_same_params(native.load_params(tmp_path / "again")[0], params_at[step])


def test_the_gin_files_of_a_scanned_run_convert_its_per_layer_checkpoint(training_run,
                                                                         tmp_path):
  model_dir, params_at = training_run
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(model_dir),
                   str(tmp_path / "hf"), *TINY_GIN, "--gin.MT5Config.scan_layers=True"]) == 0
  params, config = hf.load_hf_checkpoint(tmp_path / "hf")
  assert_same_params(params, params_at[8])
  assert config == testing.TINY


@pytest.mark.parametrize("source", ["run", "step"])
def test_a_run_that_saved_no_model_needs_gin_files(training_run, tmp_path, capsys, source):
  """Runs save their model (`native.save_model_config`); this one, as runs before that, did not."""
  model_dir, _ = training_run
  src = model_dir if source == "run" else model_dir / "checkpoints" / "8"
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(src),
                   str(tmp_path / "hf")]) == 2
  err = capsys.readouterr().err
  assert str(src) in err and str(model_dir / "checkpoints" / "8" / "state") in err
  assert "did not save its model (mt5_config.json)" in err and "--gin_file models/" in err
  assert not (tmp_path / "hf").exists()


def test_a_run_converted_with_another_model_size_names_the_parameter(training_run,
                                                                     tmp_path, capsys):
  model_dir, _ = training_run
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(model_dir),
                   str(tmp_path / "hf"), "--gin_file", "models/mt5_tiny.gin"]) == 2
  err = capsys.readouterr().err
  assert str(model_dir / "checkpoints" / "8" / "state") in err
  assert "decoder/decoder_norm/scale" in err and "(32,)" in err and "(64,)" in err
  assert not (tmp_path / "hf").exists()


def test_a_folder_that_is_neither_checkpoint_nor_run_keeps_the_aya_t5x_error(tmp_path,
                                                                            capsys):
  (tmp_path / "empty").mkdir()
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(tmp_path / "empty"),
                   str(tmp_path / "hf"), *TINY_GIN]) == 2
  assert "mt5_config.json is missing" in capsys.readouterr().err
