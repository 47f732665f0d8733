"""The mixture report: shares, groups and epochs computed independently; files written."""

import json

import pytest

from aya_t5x import mixtures
from aya_t5x.data import report
from tests.data import fixtures


def test_published_report_epochs_per_source():
  plan = mixtures.published_plan("human_heavy")
  result = report.mixture_report(plan, steps=30_000, batch=256, examples_per_sequence=850 / 256)
  rows = {r["source"]: r for r in result["sources"]}
  assert result["budget"]["examples"] == 30_000 * 850
  # RECIPE.md §4: the human set more than 30 times over; its warning says so.
  assert rows["aya_dataset"]["epochs"] == pytest.approx(0.25 * 30_000 * 850 / 199_500, rel=1e-4)
  assert rows["xp3x"]["epochs"] == pytest.approx(0.20 * 30_000 * 850 / 168e6, rel=1e-3)
  assert [w.split(":")[0] for w in result["warnings"]] == ["aya_dataset"]
  assert sum(r["weight_pct"] for r in result["sources"]) == pytest.approx(100)
  assert result["languages"] == [] and result["groups"] == {}


def test_report_over_scanned_sources(tmp_path, small_vocabulary):
  sources = fixtures.write_all_sources(tmp_path / "data")
  plan = mixtures.plan_aya_mixture("template_heavy", sources)
  result = report.mixture_report(plan, steps=10, batch=10, warn_epochs=50,
                                 vocabulary=small_vocabulary)
  # Language shares are the sums of their tasks' rates.
  expected_sw = sum(rate for task, rate in plan.task_rates.items() if task.endswith(".sw"))
  sw = next(r for r in result["languages"] if r["language"] == "sw")
  assert sw["examples_pct"] == pytest.approx(100 * expected_sw, abs=1e-3)
  assert sum(r["examples_pct"] for r in result["languages"]) == pytest.approx(100, abs=1e-2)
  assert sum(g["tokens_pct"] for g in result["groups"].values()) == pytest.approx(100, abs=1e-2)
  # Groups hold the right languages: sw LR, ms MR, the rest HR.
  assert {g: v["languages"] for g, v in result["groups"].items()} == {
      "HR": 5, "MR": 1, "LR": 1}
  # Tokens per example come from the vocabulary.
  task = next(t for t in result["tasks"] if t["task"] == "aya_dataset.hi")
  texts = [fixtures.aya_dataset_record("hin", i, "train") for i in range(3)]
  tokens = [len(small_vocabulary.encode(r["inputs"])) + len(small_vocabulary.encode(
      r["targets"])) + 2 for r in texts]
  assert task["tokens_per_example"] == pytest.approx(sum(tokens) / 3, abs=0.01)
  # ShareGPT-Command has 3 examples and 10% of 100: 3.33 epochs.
  sharegpt = next(r for r in result["sources"] if r["source"] == "sharegpt_command")
  assert sharegpt["epochs"] == pytest.approx(10 / 3, abs=1e-3)
  assert result["data"]["xp3x"]["removed"]["mt5_languages: not an mT5 language (quy_Latn)"] == 1

  paths = report.write_report(result, tmp_path / "out")
  assert json.loads(paths["json"].read_text())["mixture"] == "aya_template_heavy"
  markdown = paths["markdown"].read_text()
  assert "| sw | Swahili | LR |" in markdown and "## Resource groups" in markdown
  assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_budget():
  with pytest.raises(ValueError, match="must be positive"):
    report.mixture_report(mixtures.published_plan("human_heavy"), steps=0, batch=1)
