"""Report helpers shared by every package: markdown tables, percentages, Wilson intervals,
and writing a report's JSON, markdown, JSON-lines and PNG files.

Evaluation, the mixture report, the data-gathering steps, the judge and the demo all
write "one JSON file for programs, one markdown file (and often a PNG) for people, with
the same facts"; this module is the one place that knows how. Every file is written
through `aya_t5x.atomic_files`, so that no reader (a person, a dashboard, a rerun that
resumes) ever sees half a report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

from aya_t5x.atomic_files import atomic_open, write_text_atomically

Z_95 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


# ----------------------------------------------------------------------------- formatting


def cell(value: Any) -> str:
  """A table cell for data of any kind: floats to 3 decimals, None as '-', text escaped
  for markdown (`|`, newlines) and cut at 80 characters."""
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.3f}"
  text = str(value).replace("|", "\\|").replace("\n", " ")
  return text if len(text) <= 80 else text[:77] + "..."


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
                   format_cell: Callable[[Any], str] = str) -> str:
  """A markdown table: the header, the rule, then one line per row (no final newline).

  `format_cell` renders each value; the default `str` suits rows that are already text,
  `cell` suits raw data.
  """
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def data_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
  """A markdown table of raw values, each rendered by `cell`."""
  return markdown_table(headers, rows, format_cell=cell)


def percent(value: float | None) -> str:
  """A proportion as a percentage with one decimal ('-' when there is none)."""
  return "-" if value is None else f"{100 * value:.1f}%"


def percent_interval(interval: Sequence[float] | None) -> str:
  """An interval of proportions as 'low-high%' ('-' when there is none)."""
  return "-" if interval is None else f"{100 * interval[0]:.1f}-{100 * interval[1]:.1f}%"


# ----------------------------------------------------------------------------- statistics


def z_for_confidence(confidence: float) -> float:
  """The normal quantile of a two-sided interval at `confidence` (1.96 for 0.95)."""
  if not 0.0 < confidence < 1.0:
    raise ValueError(f"confidence must be in (0, 1), got {confidence}")
  return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float] | None:
  """The Wilson score interval of a binomial proportion (None when `total` is 0).

  Unlike the normal approximation it stays inside [0, 1] and is sensible for the small
  counts of a language's judged pairs or an assessor's golden answers.
  """
  if total == 0:
    return None
  p = successes / total
  denominator = 1 + z * z / total
  centre = (p + z * z / (2 * total)) / denominator
  half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
  return max(0.0, centre - half), min(1.0, centre + half)


# ----------------------------------------------------------------------------- writing


def write_json_and_markdown(json_path: str | os.PathLike, markdown_path: str | os.PathLike,
                            report: Mapping[str, Any], markdown: str) -> dict[str, Path]:
  """Writes a report as JSON and as markdown, each atomically."""
  return {"json": write_text_atomically(
              json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n"),
          "markdown": write_text_atomically(markdown_path, markdown)}


def write_report(folder: str | os.PathLike, stem: str, report: Mapping[str, Any],
                 markdown: str, draw: Callable[[Mapping[str, Any], Path], Path] | None = None
                 ) -> dict[str, Path]:
  """Writes `<stem>.json`, `<stem>.md` and, with `draw(report, path)`, `<stem>.png`."""
  folder = Path(folder)
  paths = write_json_and_markdown(folder / f"{stem}.json", folder / f"{stem}.md", report,
                                  markdown.rstrip() + "\n")
  if draw is not None:
    paths["png"] = draw(report, folder / f"{stem}.png")
  return paths


def write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
  """Writes records as JSON lines, atomically."""
  with atomic_open(path) as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  return Path(path)


def pyplot():
  """matplotlib's pyplot on the file-only Agg backend (a report never opens a window)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(figure, path: str | os.PathLike, dpi: int = 100) -> Path:
  """Saves a matplotlib figure as PNG (creating the folder) and closes it."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=dpi)
  pyplot().close(figure)
  return path
