"""`aya-t5x demo --preference` at toy size: pairs, DPO, and the win rate in report.json."""

import json

import pytest

from aya_t5x import cli
from aya_t5x.demo import job, lexicon
from aya_t5x.demo.preference import PreferenceOptions, win_rates


def test_win_rates_count_ties_and_give_intervals():
  rates = win_rates([("sw", "win"), ("sw", "tie"), ("en", "loss"), ("en", "win")])
  assert rates["overall"]["win_rate"] == 0.5 and rates["overall"]["judged"] == 4
  assert rates["languages"]["sw"]["tie"] == 1
  low, high = rates["overall"]["win_rate_ci95"]
  assert 0.0 < low < 0.5 < high < 1.0


@pytest.mark.slow
def test_demo_preference_round(tmp_path, monkeypatch):
  out = tmp_path / "demo"
  options = job.DemoOptions(
      output_dir=str(out), gin_bindings=["TRAIN_STEPS=4", "EVAL_EVERY_STEPS=0",
                                         "EVAL_MAX_EXAMPLES=2", "BATCH_SIZE=8"],
      preference=PreferenceOptions(steps=2, prompts_per_language=2, num_samples=2,
                                   held_out_per_task=1, gin_bindings=["BATCH_SIZE=8"]))
  job.run_demo(options, progress=lambda _: None)
  summary = json.loads((out / "report.json").read_text())
  rates = summary["preference"]["win_rate"]
  assert set(rates["languages"]) == set(lexicon.LANGUAGES)
  overall = rates["overall"]
  assert overall["judged"] == sum(r["judged"] for r in rates["languages"].values()) > 0
  assert overall["win"] + overall["tie"] + overall["loss"] == overall["judged"]
  assert (out / "preference" / "dpo" / "checkpoints" / "2").is_dir()
  pairs = [json.loads(line) for line in (out / "preference" / "pairs.jsonl").read_text()
           .splitlines()]
  assert len(pairs) == summary["preference"]["pairs"]
  assert all(p["chosen"] != p["rejected"] for p in pairs)
  assert "DPO against SFT" in (out / "report.md").read_text()
  # The command passes its flags through.
  asked = []
  monkeypatch.setattr(job, "run_demo", lambda o, **_: asked.append(o) or summary)
  assert cli.main(["demo", "--output_dir", str(out), "--preference",
                   "--preference_steps", "7"]) == 0
  assert asked[0].preference.steps == 7
