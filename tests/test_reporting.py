"""The shared report helpers: tables, percentages, Wilson intervals, atomic report files."""

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from aya_t5x import reporting


def test_wilson_interval_against_published_values_and_scipy():
  # 8 of 10 and 0 of 10 at 95%: (0.4902, 0.9433) and (0, 0.2775), the textbook values.
  np.testing.assert_allclose(reporting.wilson_interval(8, 10), (0.4902, 0.9433), atol=1e-4)
  np.testing.assert_allclose(reporting.wilson_interval(0, 10), (0.0, 0.2775), atol=1e-4)
  assert reporting.wilson_interval(0, 0) is None
  for k, n, confidence in [(3, 7, 0.9), (40, 41, 0.99)]:
    reference = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = reporting.wilson_interval(k, n, reporting.z_for_confidence(confidence))
    assert (low, high) == (pytest.approx(reference.low), pytest.approx(reference.high))
  with pytest.raises(ValueError, match="confidence"):
    reporting.z_for_confidence(95)


def test_tables_escape_cells_and_format_values():
  table = reporting.data_table(["name", "value", "note"],
                               [["a|b", 0.12345, None], ["line\nbreak", 3, "x" * 100]])
  lines = table.splitlines()
  assert lines[:2] == ["| name | value | note |", "|---|---|---|"]
  assert lines[2] == "| a\\|b | 0.123 | - |"
  assert lines[3].startswith("| line break | 3 | " + "x" * 77 + "...")
  assert reporting.markdown_table(["a"], [[1.0]]) == "| a |\n|---|\n| 1.0 |"
  assert reporting.percent(0.1234) == "12.3%" and reporting.percent(None) == "-"
  assert reporting.percent_interval((0.1, 0.25)) == "10.0-25.0%"


def test_write_report_writes_every_file_whole(tmp_path):
  drawn = []

  def draw(report, path):
    drawn.append(report["what"])
    path.write_bytes(b"png")
    return path

  paths = reporting.write_report(tmp_path / "out", "eval", {"what": "ünïcode"}, "# title",
                                 draw)
  assert json.loads(paths["json"].read_text(encoding="utf-8")) == {"what": "ünïcode"}
  assert paths["markdown"].read_text() == "# title\n"
  assert drawn == ["ünïcode"] and paths["png"].name == "eval.png"
  reporting.write_jsonl(tmp_path / "out" / "rows.jsonl", [{"a": 1}, {"b": "é"}])
  assert (tmp_path / "out" / "rows.jsonl").read_text(encoding="utf-8") == (
      '{"a": 1}\n{"b": "é"}\n')
  assert not list((tmp_path / "out").glob("*.tmp"))
