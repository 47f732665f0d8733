"""The eval suite from the trainer: gin/eval/during_training.gin in a real `train` run."""

import json

import numpy as np

from aya_t5x import cli, command_flags, configurables, decoding, gin_config
from aya_t5x.testing.fixture_tasks import TASK, _examples
from aya_t5x.testing.tiny_runs import gin_args


def test_the_trainer_runs_the_suite_every_n_steps_and_writes_reports(tmp_path):
  # The trainer tests' run (so the compiled steps are shared), plus a suite over the same
  # task: greedy generation scored by exact match.
  args = ["train", *gin_args(
      tmp_path, 4, "--gin_file", "eval/during_training.gin", "--gin.EVAL_EVERY_STEPS=2",
      "--gin.EVAL_BATCHES=2", "--gin.EvalSuite.name='reverse'",
      "--gin.EvalSuite.tasks=[@reverse/EvalTask()]", "--gin.EvalSuite.batch_size=8",
      f"--gin.reverse/EvalTask.task='{TASK}'", "--gin.reverse/EvalTask.metric_fns=[@exact_match]",
      "--gin.reverse/EvalTask.max_examples=8", "--gin.reverse/EvalTask.max_target_length=16")]
  parsed, bindings = cli.build_parser().parse_known_args(args)
  gin_config.parse_gin(parsed.gin_file, command_flags.split_gin_bindings(bindings))
  result = configurables.configured_train(show_progress=False)
  assert result.step == 4

  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  evals = [line for line in lines if "reverse/test_reverse/exact_match" in line]
  assert [line["step"] for line in evals] == [2, 4]
  for step in (2, 4):
    folder = tmp_path / "eval_reverse" / f"step_{step}"
    report = json.loads((folder / "eval.json").read_text())
    assert report["step"] == step and report["tasks"][0]["examples"] == 8
    assert (folder / "eval.md").is_file() and (folder / "eval.png").is_file()

  # The logged score is the exact match of greedy decoding with the final parameters.
  rows = list(_examples("validation").take(8).as_numpy_iterator())
  inputs = np.zeros((8, 16), np.int32)
  for i, row in enumerate(rows):
    inputs[i, :len(row["inputs"]) + 1] = list(row["inputs"]) + [1]
  tokens = np.asarray(decoding.greedy_decode(result.state.params, gin_config.configured_model(),
                                             inputs, max_decode_length=16))
  hits = sum(list(out[:np.argmax(out == 1)] if (out == 1).any() else out) == list(row["targets"])
             for row, out in zip(rows, tokens))
  score = report["tasks"][0]["score"]
  assert evals[-1]["reverse/test_reverse/exact_match"] == score == 100 * hits / 8
