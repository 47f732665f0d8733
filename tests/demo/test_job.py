"""`aya-t5x demo` end to end at toy size: two trainings, the suite, the side-by-side report."""

import json

import pytest

from aya_t5x import cli
from aya_t5x.demo import job, lexicon
from aya_t5x.tasks import eval_demo


@pytest.mark.slow
def test_demo_compare_trains_each_scheme_evaluates_and_reports(tmp_path):
  # Two of the three schemes (each one is a whole fine-tuning and suite run); the
  # command's --compare asks for all three (the test below).
  out = tmp_path / "demo"
  schemes = job.SCHEMES[:2]
  bindings = ["TRAIN_STEPS=4", "EVAL_EVERY_STEPS=0", "EVAL_MAX_EXAMPLES=2", "BATCH_SIZE=8"]
  job.run_demo(job.DemoOptions(output_dir=str(out), schemes=schemes, gin_bindings=bindings),
               progress=lambda _: None)
  summary = json.loads((out / "report.json").read_text())
  assert list(summary["runs"]) == list(schemes)
  for scheme, run in summary["runs"].items():
    assert (out / scheme / "checkpoints" / "4").is_dir()
    assert run["loss"]["last_step"] == 4
    report = json.loads((out / scheme / "eval" / "eval.json").read_text())
    benchmarks = {t["benchmark"] for t in report["tasks"]}
    assert benchmarks == {b.name for b in eval_demo.DEMO}
    classified = {t["language"] for t in report["tasks"]
                  if t["benchmark"] == job.CLASSIFICATION}
    assert classified == set(lexicon.LANGUAGES)
    assert set(run["classification"]["accuracy"]) == set(lexicon.LANGUAGES)
    assert run["classification"]["chance"] == 50.0
  text = (out / "report.md").read_text()
  assert "side by side" in text and all(s in text for s in schemes)
  assert (out / "report.png").stat().st_size > 0
  assert (out / "compare" / "compare.md").is_file()


@pytest.mark.parametrize("flags,schemes", [([], job.SCHEMES[:1]), (["--compare"], job.SCHEMES),
                                           (["--scheme", "human_heavy"], ("human_heavy",))])
def test_the_command_trains_the_schemes_it_is_asked_for(tmp_path, monkeypatch, flags, schemes):
  asked = []

  def run_demo(options, progress=print):
    asked.append(options)
    return {"runs": {s: {"classification": {"all_above": True}} for s in options.schemes}}

  monkeypatch.setattr(job, "run_demo", run_demo)
  out = str(tmp_path / "demo")
  assert cli.main(["demo", "--output_dir", out, "--gin.TRAIN_STEPS=4", *flags]) == 0
  assert tuple(asked[0].schemes) == tuple(schemes)
  assert asked[0].output_dir == out and list(asked[0].gin_bindings) == ["TRAIN_STEPS=4"]


@pytest.mark.slow
def test_demo_lora_trains_adapters_beside_the_full_run_and_reports_both(tmp_path):
  out = tmp_path / "demo"
  bindings = ["TRAIN_STEPS=4", "EVAL_EVERY_STEPS=0", "EVAL_MAX_EXAMPLES=2", "BATCH_SIZE=8"]
  job.run_demo(job.DemoOptions(output_dir=str(out), gin_bindings=bindings, lora=True),
               progress=lambda _: None)
  lora = json.loads((out / "report.json").read_text())["lora"]
  scheme = job.SCHEMES[0]
  assert lora["scheme"] == scheme and lora["loss"]["last_step"] == 4
  assert (out / f"{scheme}_lora" / "checkpoints" / "4").is_dir()
  # Adapters only: a small fraction of the parameters and of the checkpoint.
  assert 0 < lora["trainable_parameters"] < lora["full_trainable_parameters"] / 5
  # Sizes on disk as reported (at mT5-tiny the adapters' unfactored Adafactor moments and
  # Orbax's per-array files make the two steps alike in size; see docs/adapters.md).
  step = out / f"{scheme}_lora" / "checkpoints" / "4"
  assert lora["checkpoint_bytes"] == sum(f.stat().st_size for f in step.rglob("*")
                                         if f.is_file())
  assert lora["full_checkpoint_bytes"] > 0
  assert set(lora["classification"]["accuracy"]) == set(lexicon.LANGUAGES)
  assert lora["average"] is not None and lora["full_average"] is not None
  assert "LoRA adapters against full fine-tuning" in (out / "report.md").read_text()
