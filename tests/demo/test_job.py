"""`aya-t5x demo --compare` end to end at toy size: three trainings, the suite, the report."""

import json

from aya_t5x import cli
from aya_t5x.demo import job, lexicon
from aya_t5x.tasks import eval_demo


def test_demo_compare_trains_each_scheme_evaluates_and_reports(tmp_path):
  out = tmp_path / "demo"
  args = ["demo", "--compare", "--output_dir", str(out), "--gin.TRAIN_STEPS=4",
          "--gin.EVAL_EVERY_STEPS=0", "--gin.EVAL_MAX_EXAMPLES=2", "--gin.BATCH_SIZE=8"]
  assert cli.main(args) == 0
  summary = json.loads((out / "report.json").read_text())
  assert list(summary["runs"]) == list(job.SCHEMES)
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
  assert "side by side" in text and all(s in text for s in job.SCHEMES)
  assert (out / "report.png").stat().st_size > 0
  assert (out / "compare" / "compare.md").is_file()
