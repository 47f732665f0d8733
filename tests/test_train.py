"""The training loop end to end on a real SeqIO task: resume, preemption, divergence, config errors.

Runs go through gin exactly as `aya-t5x train` does; the killed and preempted runs are
real subprocesses of the CLI.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from aya_t5x import (
  cli,
  command_flags,
  configurables,
  gin_config,
  partitioning,
  testing,
  train_state,
)
from aya_t5x.checkpoints.train_checkpoints import TrainCheckpointer
from aya_t5x.optim import LearningRateSchedule, make_optimizer
from aya_t5x.testing import fixture_tasks  # noqa: F401  (registers testing.mixture_of)
from aya_t5x.testing.tiny_runs import gin_args
from aya_t5x.train import TrainingDiverged

REPO = Path(__file__).resolve().parents[1]
TINY = testing.TINY


def run_in_process(model_dir, steps, *extra, **overrides):
  args = cli.build_parser().parse_known_args(["train", *gin_args(model_dir, steps, *extra)])
  parsed, bindings = args
  gin_config.parse_gin(parsed.gin_file, command_flags.split_gin_bindings(bindings))
  return configurables.configured_train(show_progress=False, **overrides)


def start_subprocess(model_dir, steps, *extra):
  return subprocess.Popen(
      [sys.executable, "-m", "aya_t5x.cli", "train", *gin_args(model_dir, steps, *extra)],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def committed_steps(model_dir):
  folder = Path(model_dir) / "checkpoints"
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
      if folder.exists() else []


def wait_for_checkpoint(process, model_dir, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if committed_steps(model_dir):
      return
    if process.poll() is not None:
      raise AssertionError(f"training exited early:\n{process.stdout.read()}")
    time.sleep(0.05)
  process.kill()
  raise AssertionError("no checkpoint appeared in time")


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
  """8 steps under FSDP on 8 devices, checkpoints at 4 and 8."""
  model_dir = tmp_path_factory.mktemp("base")
  result = run_in_process(model_dir, 8, "--gin.EVAL_EVERY_STEPS=4", "--gin.EVAL_BATCHES=2")
  return model_dir, result


def test_run_writes_metrics_checkpoints_and_learns(base_run):
  model_dir, result = base_run
  assert result.step == 8 and not result.preempted
  assert committed_steps(model_dir) == [4, 8]
  lines = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  train_lines = [line for line in lines if "train/loss" in line]
  assert [line["step"] for line in train_lines] == [2, 4, 6, 8]
  for key in ("loss", "accuracy", "learning_rate", "grad_norm", "tokens_per_second",
              "sequences_per_second", "mfu", "z_loss"):
    assert all(np.isfinite(line[f"train/{key}"]) for line in train_lines), key
  assert train_lines[-1]["train/loss"] < train_lines[0]["train/loss"]
  assert train_lines[0]["train/learning_rate"] == pytest.approx(0.01)
  assert 0 < train_lines[-1]["train/mfu"] < 1
  evals = [line for line in lines if "train_eval/loss" in line]
  assert [line["step"] for line in evals] == [4, 8]
  assert list((model_dir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted_bit_for_bit(tmp_path):
  killed = tmp_path / "killed"
  process = start_subprocess(killed, 100_000)
  wait_for_checkpoint(process, killed)
  process.send_signal(signal.SIGKILL)
  process.wait()
  resumed_from = committed_steps(killed)[-1]
  final = resumed_from + 3
  resumed = run_in_process(killed, final)
  reference = run_in_process(tmp_path / "reference", final)
  assert resumed.step == reference.step == final
  assert_trees_equal(resumed.state.params, reference.state.params)
  assert_trees_equal(resumed.state.opt_state, reference.state.opt_state)


@pytest.mark.slow
def test_sigterm_leaves_a_restorable_checkpoint_at_the_step_reached(tmp_path):
  model_dir = tmp_path / "preempted"
  process = start_subprocess(model_dir, 100_000, "--gin.CheckpointConfig.every_steps=1000")
  metrics = model_dir / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and not (metrics.exists() and "train/loss" in metrics.read_text()):
    assert process.poll() is None, process.stdout.read()
    time.sleep(0.05)
  time.sleep(0.5)  # let it run some more steps
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 0, output
  assert "SIGTERM received" in output
  (step,) = committed_steps(model_dir)
  assert 0 < step < 1000  # saved where it stopped, not at a scheduled step
  resumed = run_in_process(model_dir, step + 1)
  assert resumed.step == step + 1


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(base_run, tmp_path):
  model_dir = tmp_path / "diverging"
  shutil.copytree(base_run[0], model_dir)
  # Full label smoothing makes the loss NaN (0 * log 0) from the first step after resuming.
  with pytest.raises(TrainingDiverged, match=r"at step 9.*last good checkpoint is step 8"):
    run_in_process(model_dir, 12, "--gin.LossConfig.label_smoothing=1.0")
  assert committed_steps(model_dir) == [4, 8]
  resumed = run_in_process(model_dir, 9)  # the good checkpoint still restores and trains
  assert resumed.step == 9
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(resumed.state.params))


@pytest.mark.parametrize("preset,num_partitions,devices", [
    ("data_parallel", 1, 1), ("megatron", 2, 8)])
def test_checkpoint_restores_into_another_mesh(base_run, preset, num_partitions, devices):
  model_dir, result = base_run
  part = partitioning.Partitioner(num_partitions=num_partitions,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(jax.devices()[:devices])
  tx = make_optimizer(LearningRateSchedule(base_learning_rate=0.01))
  layout = train_state.state_layout(TINY, tx, part, mesh)
  checkpointer = TrainCheckpointer(model_dir, save_every_steps=4)
  state, data = checkpointer.restore(8, layout.abstract)
  assert data["position"] == 8
  assert_trees_equal(state.params, result.state.params)
  kernel = state.params["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel"]
  assert len(kernel.sharding.device_set) == devices


@pytest.mark.parametrize("fmt", ["hf", "t5x"])
def test_fine_tuning_starts_from_an_initial_checkpoint(tmp_path, fmt):
  from aya_t5x import model
  from aya_t5x.checkpoints import hf, t5x_legacy

  params = jax.tree.map(np.asarray, model.init_params(TINY, jax.random.key(11)))
  if fmt == "hf":
    hf.save_hf_checkpoint(params, TINY, tmp_path / "initial")
  else:
    t5x_legacy.write_t5x_checkpoint(params, tmp_path / "initial", step=1_000_000)
  result = run_in_process(tmp_path / "run", 1, "--gin.LEARNING_RATE=0.0",
                          f"--gin.INITIAL_CHECKPOINT_PATH='{tmp_path / 'initial'}'")
  assert_trees_equal(result.state.params, params)
  assert result.step == 1  # fine-tuning steps count from 0, not from the T5X step


@pytest.mark.parametrize("initial", ["missing", "not a checkpoint"])
def test_a_bad_initial_checkpoint_is_named_before_model_dir_is_created(tmp_path, capsys,
                                                                       initial):
  path = tmp_path / "initial"
  if initial == "not a checkpoint":
    path.mkdir()
    (path / "notes.txt").write_text("no checkpoint here")
  model_dir = tmp_path / "run"
  assert cli.main(["train", *gin_args(model_dir, 2),
                   f"--gin.INITIAL_CHECKPOINT_PATH='{path}'"]) == 2
  err = capsys.readouterr().err
  assert f"aya-t5x train: error: INITIAL_CHECKPOINT_PATH: {path}" in err or (
      f"aya-t5x train: error: INITIAL_CHECKPOINT_PATH: Checkpoint {path} does not exist" in err)
  assert "--gin.INITIAL_CHECKPOINT_PATH=" in err and "Traceback" not in err
  assert not model_dir.exists()  # nothing left behind


@pytest.mark.parametrize("extra,message", [
    (["--gin.Partitioner.num_partitions=3"], "does not divide 8 devices"),
    (["--gin.BATCH_SIZE=12"], "multiple of 8"),
    (["--gin.preset_rules.name='zero3'"], "Unknown partitioning preset 'zero3'"),
    (["--gin.TASK_FEATURE_LENGTHS={'inputs': 16}"], "lacks ['targets']"),
    (["--gin.MIXTURE_OR_TASK_NAME='test_revers'"], "Did you mean test_reverse"),
    (["--gin.TRAIN_STEP=3"], "TRAIN_STEP"),
    (["--gin.MT5Config.vocab_size=100"],
     "vocabulary has 128 ids but the model has 100 embedding rows"),
])
def test_bad_configuration_fails_before_compiling(tmp_path, capsys, extra, message):
  model_dir = tmp_path / "bad"
  assert cli.main(["train", *gin_args(model_dir, 4), *extra]) == 2
  assert message in capsys.readouterr().err
  assert not committed_steps(model_dir)


def test_a_task_added_on_the_command_line_trains(tmp_path, capsys):
  """`aya-t5x tasks add` writes a manifest; TASK_MANIFEST makes the trainer register it."""
  from aya_t5x.vocab import vocabulary

  rng = np.random.default_rng(0)
  words = "moja mbili tatu nne tano sita saba nane tisa kumi".split()
  rows = [{"swali": " ".join(rng.choice(words, 4)), "jibu": " ".join(rng.choice(words, 3))}
          for _ in range(64)]
  data = tmp_path / "qa.jsonl"
  data.write_text("".join(json.dumps(r) + "\n" for r in rows))
  text = tmp_path / "text.txt"
  text.write_text("\n".join(r["swali"] + " " + r["jibu"] for r in rows) + "\n")
  spm = vocabulary.train_sentencepiece([text], tmp_path / "spm.model", vocab_size=40)
  manifest = tmp_path / "tasks.json"
  assert cli.main(["tasks", "add", "swahili_qa", "--path", str(data), "--language", "sw",
                   "--inputs_key", "swali", "--targets_key", "jibu",
                   "--manifest", str(manifest)]) == 0
  # The task is named inside a mixture that gin builds with the run's arguments (as
  # `aya_mixture.extra` is), so the manifest must be registered before gin builds them.
  result = run_in_process(
      tmp_path / "run", 2, "--gin_file", "mixtures/vocabulary.gin",
      f"--gin.VOCABULARY_PATH='{spm}'", f"--gin.TASK_MANIFEST='{manifest}'",
      "--gin.MIXTURE_OR_TASK_NAME=@testing.mixture_of()",
      "--gin.testing.mixture_of.tasks=['swahili_qa']", "--gin.MIXTURE_OR_TASK_MODULE=None",
      "--gin.train/DatasetConfig.split='train'")
  assert result.step == 2 and np.isfinite(result.last_metrics["loss"])


def test_a_manifest_without_a_vocabulary_names_the_fix(tmp_path, capsys):
  manifest = tmp_path / "tasks.json"
  manifest.write_text(json.dumps({"tasks": []}))
  assert cli.main(["train", *gin_args(tmp_path / "run", 2),
                   f"--gin.TASK_MANIFEST='{manifest}'"]) == 2
  assert "needs a vocabulary: add --gin_file mixtures/vocabulary.gin" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--gin_file", "models/mt5_tiny.gin", "--gin_file", "runs/finetune.gin"],
     "These gin macros must be set: MIXTURE_OR_TASK_NAME, MODEL_DIR."),
    (["--gin_file", "models/mt5_tiny.gin", "--gin_file", "runs/aya_recipe.gin",
      "--gin_file", "mixtures/translation_heavy.gin", "--gin.MODEL_DIR='/tmp/unused'"],
     "These gin macros must be set: AYA_SOURCES, VOCABULARY_PATH."),
    (["--gin_file", "runs/finetune.gin", "--gin.MODEL_DIR='/tmp/unused'",
      "--gin.MIXTURE_OR_TASK_NAME='test_reverse'"], "No model size configured"),
])
def test_a_missing_setting_names_the_flag_that_sets_it(args, message, capsys):
  assert cli.main(["train", *args]) == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err
  if "MODEL_DIR," in message:
    assert "--gin.MODEL_DIR=\"'/path/to/run'\"" in err


def test_inference_loads_the_latest_step_of_a_run(base_run):
  from aya_t5x.checkpoints import loading

  model_dir, result = base_run
  assert_trees_equal(loading.load_params(model_dir, TINY), result.state.params)


def test_a_run_saves_its_model_so_its_checkpoints_need_no_gin_files(base_run, tmp_path, capsys):
  from aya_t5x.checkpoints import hf, loading

  model_dir, result = base_run
  stored = loading.stored_config(model_dir)
  assert stored is not None and not stored.scan_layers
  assert (stored.d_model, stored.d_ff, stored.vocab_size) == (
      TINY.d_model, TINY.d_ff, TINY.vocab_size)
  assert stored.dropout_rate == pytest.approx(0.1)  # the run's DROPOUT_RATE, not the file's
  # The run file's 'auto' is kept: evaluation elsewhere chooses for its own platform.
  assert stored.attention_implementation == "auto" and stored.attention_dropout == 0.1
  assert loading.stored_config(model_dir / "checkpoints" / "4") == stored
  gin_config.parse_gin([], [])  # no model gin file: infer and eval fall back to the run's
  assert gin_config.configured_model_or_none() is None
  assert loading.model_config(model_dir, None) == stored
  with pytest.raises(FileNotFoundError, match="does not exist"):
    loading.model_config(model_dir / "no_such_run", TINY)
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(model_dir),
                   str(tmp_path / "hf")]) == 0
  params, config = hf.load_hf_checkpoint(tmp_path / "hf")
  assert_trees_equal(params, result.state.params)
  assert (config.d_model, config.num_decoder_layers) == (stored.d_model,
                                                         stored.num_decoder_layers)
