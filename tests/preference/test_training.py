"""Preference runs end to end through gin: a live reference, exact resume, precomputed
reference log-probs that line up with the pipeline, and the refusals."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from aya_t5x import cli, command_flags, configurables, gin_config, model_config
from aya_t5x.checkpoints import native
from aya_t5x.model import init_params
from aya_t5x.preference import reference as reference_lib
from aya_t5x.preference import tasks
from aya_t5x.testing import vocabularies
from aya_t5x.vocab import vocabulary as vocab_lib

TINY = model_config.MT5Config(vocab_size=512, d_model=32, num_heads=2, d_kv=8, d_ff=64,
                              num_encoder_layers=1, num_decoder_layers=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("preference")
  spm = vocabularies.train_vocabulary(vocabularies.write_sentences(root / "text.txt"), root)
  sentences = vocabularies.multilingual_sentences(60)
  rows = [{"prompt": sentences[i], "chosen": sentences[i + 1] + " " + sentences[i + 2],
           "rejected": sentences[i + 3], "language": "en"} for i in range(0, 48, 2)]
  pairs = root / "pairs.jsonl"
  pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
  sft = root / "sft"
  params = init_params(TINY, jax.random.key(0))
  native.save_params(params, TINY, sft)
  vocabulary = vocab_lib.sentencepiece_vocabulary(str(spm))
  return {"root": root, "spm": spm, "pairs": pairs, "sft": sft, "params": params,
          "vocabulary": vocabulary}


def run(setup, model_dir, steps, task, *extra):
  args = [
      "--gin_file", "models/mt5_tiny.gin", "--gin_file", "runs/preference.gin",
      f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}",
      f"--gin.MIXTURE_OR_TASK_NAME='{task}'", f"--gin.INITIAL_CHECKPOINT_PATH='{setup['sft']}'",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 12}", "--gin.BATCH_SIZE=8",
      "--gin_file", "partitioning/fsdp.gin",
      "--gin.LEARNING_RATE=0.01", "--gin.DROPOUT_RATE=0.1",
      *[f"--gin.MT5Config.{f}={getattr(TINY, f)}" for f in reference_lib.ARCHITECTURE_FIELDS],
      "--gin.CheckpointConfig.every_steps=2", "--gin.CheckpointConfig.keep=None",
      "--gin.train.log_every=1", *extra]
  parsed, bindings = cli.build_parser().parse_known_args(["train", *args])
  gin_config.parse_gin(parsed.gin_file, command_flags.split_gin_bindings(bindings))
  return configurables.configured_train(show_progress=False)


def metrics(model_dir):
  lines = (model_dir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_live_reference_run_resumes_exactly(setup, tmp_path):
  tasks.register_preference_tasks("prefs", setup["pairs"], vocabulary=setup["vocabulary"])
  straight = run(setup, tmp_path / "a", 4, "prefs.en")
  assert [m["step"] for m in metrics(tmp_path / "a")] == [1, 2, 3, 4]
  assert 0.0 <= straight.last_metrics["reward_accuracy"] <= 1.0
  assert "kl_estimate" in straight.last_metrics
  run(setup, tmp_path / "b", 2, "prefs.en")
  resumed = run(setup, tmp_path / "b", 4, "prefs.en")
  assert resumed.step == 4
  for x, y in zip(jax.tree.leaves(straight.state.params), jax.tree.leaves(resumed.state.params),
                  strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_precomputed_reference_lines_up_with_the_pipeline(setup, tmp_path):
  scored = tmp_path / "scored.jsonl"
  result = reference_lib.write_reference_logprobs(
      setup["params"], TINY, setup["vocabulary"], setup["spm"], setup["pairs"], scored,
      inputs_length=16, batch_size=5)
  assert result.written == 24 and result.fingerprint.endswith("/inputs=16")
  registered = tasks.register_preference_tasks("scored", scored,
                                               vocabulary=setup["vocabulary"])
  assert registered.fingerprint == result.fingerprint
  # Targets are cut at 12 tokens (the chosen answers are longer): the reference sums
  # must cover the same tokens, so the first step, policy = reference, is log 2.
  run(setup, tmp_path / "c", 1, "scored.en", "--gin.PREFERENCE_REFERENCE='precomputed'",
      "--gin.DROPOUT_RATE=0.0")
  np.testing.assert_allclose(metrics(tmp_path / "c")[0]["train/loss"], np.log(2.0), rtol=1e-5)
  with pytest.raises(reference_lib.ReferenceMismatchError, match="cut at 16 tokens"):
    run(setup, tmp_path / "d", 1, "scored.en", "--gin.PREFERENCE_REFERENCE='precomputed'",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 20, 'targets': 12}")


def test_tampered_pairs_are_refused(setup, tmp_path):
  scored = tmp_path / "scored.jsonl"
  reference_lib.write_reference_logprobs(
      setup["params"], TINY, setup["vocabulary"], setup["spm"], setup["pairs"], scored,
      inputs_length=16)
  lines = scored.read_text().splitlines()
  record = json.loads(lines[3])
  record["chosen"] = record["chosen"] + " (edited)"
  lines[3] = json.dumps(record, ensure_ascii=False)
  scored.write_text("\n".join(lines) + "\n")
  with pytest.raises(reference_lib.ReferenceMismatchError, match=f"{scored}:4: .*other texts"):
    tasks.register_preference_tasks("tampered", scored, vocabulary=setup["vocabulary"])


def test_a_reference_of_another_architecture_is_refused(setup, tmp_path):
  other = dataclasses.replace(TINY, d_ff=48)
  native.save_params(init_params(other, jax.random.key(1)), other, tmp_path / "other")
  with pytest.raises(reference_lib.ReferenceMismatchError, match="d_ff is 48"):
    reference_lib.load_frozen_reference(str(tmp_path / "other"), TINY, None)
  wider = dataclasses.replace(TINY, vocab_size=640)
  native.save_params(init_params(wider, jax.random.key(1)), wider, tmp_path / "wider")
  with pytest.raises(reference_lib.ReferenceMismatchError, match="vocab_size is 640"):
    reference_lib.load_frozen_reference(str(tmp_path / "wider"), TINY, None)
