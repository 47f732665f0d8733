"""Reports of the translation and crowd-filtering steps: one markdown file and one JSON file each.

Every step (translate, retranslate, qualify assessors, aggregate reviews) writes
`<out>/<name>_report.md` for people and `<out>/<name>_report.json` for programs, with
the same facts in both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def fmt(value: Any) -> str:
  """A table cell: floats with 3 significant decimals, None as '-'."""
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.3f}"
  text = str(value).replace("|", "\\|").replace("\n", " ")
  return text if len(text) <= 80 else text[:77] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
  """A markdown table as lines."""
  lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
  lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
  return lines


def write_json_and_markdown(json_path: str | os.PathLike, markdown_path: str | os.PathLike,
                            report: Mapping[str, Any], markdown: str) -> dict[str, Path]:
  """Writes a report as JSON and as markdown, each through a temporary file and a rename,
  so that no half-written report is ever seen."""
  paths = {"json": Path(json_path), "markdown": Path(markdown_path)}
  for kind, text in (("json", json.dumps(report, indent=2, ensure_ascii=False) + "\n"),
                     ("markdown", markdown)):
    paths[kind].parent.mkdir(parents=True, exist_ok=True)
    tmp = paths[kind].with_name(paths[kind].name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(paths[kind])
  return paths


def write_report(out_dir: str | os.PathLike, name: str, report: Mapping[str, Any],
                 markdown: str) -> dict[str, Path]:
  """Writes `<name>_report.json` and `<name>_report.md` into `out_dir` (atomically each)."""
  out = Path(out_dir)
  return write_json_and_markdown(out / f"{name}_report.json", out / f"{name}_report.md",
                                 report, markdown.rstrip() + "\n")


def write_jsonl(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
  """Writes records as JSON lines through a temporary file, so no half file is ever seen."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  with tmp.open("w", encoding="utf-8") as f:
    for record in records:
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
  tmp.replace(path)
  return path
