"""Assessor task files and answer files: JSONL, CSV, TSV, Toloka's TSV and Mechanical Turk's CSV.

Task files (`write_task_files`) go to the assessors: `<name>.jsonl` (any tool, and
aya_t5x's annotation app), `<name>_toloka.tsv` (Toloka's task upload: one `INPUT:<field>`
column per field, `GOLDEN:label` for control tasks) and `<name>_mturk.csv` (a Mechanical
Turk batch input file: one column per `${field}` of the HIT template).

Answer files (`read_answers`) come back in any of these formats, detected from the header:

- `jsonl`, `csv`, `tsv`: one answer per line or row with the fields `assessor` (or
  `worker_id`, `worker`, `annotator`, `user_id`), `item_id` (or `item`, `task_id`, `task`),
  `label` (or `answer`) and optionally `reason`;
- `toloka`: the TSV of Toloka's "Download results" (Toloka docs, "Receiving responses"):
  `INPUT:<field>` (the task's input), `OUTPUT:<field>` (the answer), `GOLDEN:<field>`,
  `ASSIGNMENT:worker_id`, `ASSIGNMENT:status` (`SUBMITTED`, `APPROVED`, `REJECTED`); here
  `INPUT:item_id`, `OUTPUT:label` and optionally `OUTPUT:reason`;
- `mturk`: Mechanical Turk's batch results CSV (`HITId`, ..., `AssignmentId`, `WorkerId`,
  `AssignmentStatus`, ..., `Input.<field>`, `Answer.<field>`, `Approve`, `Reject`); here
  `Input.item_id`, `Answer.label` and optionally `Answer.reason`.

Rejected assignments are skipped and counted. Labels are `good` or `bad` (also yes/no,
correct/incorrect, ok, keep/drop, 1/0, true/false). A row that names an assessor or an
item the caller does not know, repeats an answer, or is malformed raises with file and
line, or with `tolerant=True` is skipped and counted by kind.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x.atomic_files import atomic_open

GOOD, BAD = "good", "bad"
LABELS = {
    GOOD: GOOD, "yes": GOOD, "correct": GOOD, "ok": GOOD, "keep": GOOD, "1": GOOD,
    "true": GOOD, "accept": GOOD,
    BAD: BAD, "no": BAD, "incorrect": BAD, "wrong": BAD, "drop": BAD, "0": BAD,
    "false": BAD, "reject": BAD,
}
FORMATS = ("auto", "jsonl", "csv", "tsv", "toloka", "mturk")
_ASSESSOR_NAMES = ("assessor", "worker_id", "worker", "annotator", "user_id")
_ITEM_NAMES = ("item_id", "item", "task_id", "task")
_LABEL_NAMES = ("label", "answer")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Answer:
  """One assessor's answer on one item, with where it was read."""

  assessor: str
  item: str
  label: str          # GOOD or BAD
  reason: str = ""
  location: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class AnswerCounts:
  """What `read_answers` kept and what it skipped, by kind."""

  read: int
  skipped: Mapping[str, int]   # malformed, unknown_assessor, unknown_item, duplicate, rejected
  examples: tuple[str, ...]    # the first few skipped rows and why

  @property
  def skipped_total(self) -> int:
    return sum(self.skipped.values())


def normalise_label(value: Any) -> str | None:
  """GOOD, BAD, or None for a value that is neither."""
  return LABELS.get(str(value).strip().lower()) if value is not None else None


# ----------------------------------------------------------------------------- reading


@dataclasses.dataclass(frozen=True)
class _Columns:
  assessor: tuple[str, ...]
  item: tuple[str, ...]
  label: tuple[str, ...]
  reason: tuple[str, ...]
  status: str | None = None
  rejected: str = ""


def _columns(fmt: str, item_key: str, label_key: str, reason_key: str) -> _Columns:
  if fmt == "toloka":
    return _Columns(("ASSIGNMENT:worker_id",), (f"INPUT:{item_key}",), (f"OUTPUT:{label_key}",),
                    (f"OUTPUT:{reason_key}",), "ASSIGNMENT:status", "rejected")
  if fmt == "mturk":
    return _Columns(("WorkerId",), (f"Input.{item_key}",), (f"Answer.{label_key}",),
                    (f"Answer.{reason_key}",), "AssignmentStatus", "rejected")
  return _Columns(_ASSESSOR_NAMES, (item_key, *_ITEM_NAMES), (label_key, *_LABEL_NAMES),
                  (reason_key,))


def _text(path: Path) -> str:
  """The file as text (a UTF-8 byte-order mark dropped); bad UTF-8 names its line."""
  data = path.read_bytes()
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start}); save "
                     "the answers as UTF-8") from None


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, Mapping[str, Any] | str]]:
  """(line, row) pairs; a row that cannot be parsed comes as a string saying why."""
  if fmt == "jsonl":  # line by line, so that one bad line is one skipped row
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
      try:
        line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
      except UnicodeDecodeError as e:
        yield number, f"not UTF-8 ({e.reason} at byte {e.start})"
        continue
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        yield number, f"broken JSON ({e.msg}, column {e.colno})"
        continue
      yield number, row if isinstance(row, dict) else "a JSON object is needed"
    return
  reader = csv.DictReader(io.StringIO(_text(path), newline=""),
                          delimiter="," if fmt in ("csv", "mturk") else "\t")
  rows = iter(reader)
  while True:
    try:  # csv refuses NUL bytes and fields over its size limit
      row = next(rows)
    except StopIteration:
      return
    except csv.Error as e:
      raise ValueError(f"{path}:{reader.line_num}: not readable as {fmt} ({e})") from None
    if None in row:  # more cells than the header has
      yield reader.line_num, f"{len(row) - 1 + len(row[None])} cells, the header has " \
                             f"{len(row) - 1}"
      continue
    yield reader.line_num, row


def detect_format(path: str | os.PathLike) -> str:
  """The answer format of a file, from its first line (see the module docstring)."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"answers file {path} not found")
  # Only the first line decides; bad bytes there are reported when the rows are read.
  head = path.read_bytes().split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
  if head.lstrip().startswith("{"):
    return "jsonl"
  if "ASSIGNMENT:worker_id" in head:
    return "toloka"
  if "WorkerId" in head and ("Answer." in head or "Input." in head):
    return "mturk"
  if "\t" in head:
    return "tsv"
  if "," in head:
    return "csv"
  raise ValueError(f"{path}:1: cannot tell the format (JSONL, CSV, TSV, Toloka TSV or "
                   "Mechanical Turk CSV); pass --format")


def _first(row: Mapping[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
  for name in names:
    if name in row and row[name] not in (None, ""):
      return name, row[name]
  return None, None


def read_answers(path: str | os.PathLike, *, fmt: str = "auto", item_key: str = "item_id",
                 label_key: str = "label", reason_key: str = "reason",
                 known_items: Mapping[str, Any] | set[str] | None = None,
                 items_name: str = "the task",
                 known_assessors: Callable[[str], str | None] | None = None,
                 tolerant: bool = False) -> tuple[list[Answer], AnswerCounts]:
  """Reads an answers file (see the module docstring for the formats).

  Args:
    known_items: the item ids the answers may name (e.g. the golden set); others are
      errors ("items missing from the golden set").
    items_name: what `known_items` is, for messages.
    known_assessors: returns why an assessor id is not accepted (None when it is).
    tolerant: skip and count bad rows instead of raising.
  """
  if fmt not in FORMATS:
    raise ValueError(f"answer format {fmt!r}; choose from {', '.join(FORMATS)}")
  path = Path(path)
  fmt = detect_format(path) if fmt == "auto" else fmt
  columns = _columns(fmt, item_key, label_key, reason_key)
  answers: list[Answer] = []
  skipped: Counter = Counter()
  examples: list[str] = []
  seen: dict[tuple[str, str], str] = {}

  def skip(kind: str, where: str, why: str, fix: str) -> None:
    if not tolerant:
      raise ValueError(f"{where}: {why}; {fix} (or pass --tolerant to skip and count such rows)")
    skipped[kind] += 1
    if len(examples) < 5:
      examples.append(f"{where}: {why}")

  for number, row in _rows(path, fmt):
    where = f"{path}:{number}"
    if isinstance(row, str):
      skip("malformed", where, row, "fix the line")
      continue
    if columns.status and str(row.get(columns.status, "")).strip().lower() == columns.rejected:
      skipped["rejected"] += 1
      continue
    found = {}
    for what, names in (("assessor", columns.assessor), ("item", columns.item),
                        ("label", columns.label)):
      found[what] = _first(row, names)[1]
    missing = [w for w, v in found.items() if v is None]
    if missing:
      wanted = {"assessor": columns.assessor, "item": columns.item, "label": columns.label}
      skip("malformed", where, f"no {missing[0]} (column {' or '.join(wanted[missing[0]])})",
           f"this {fmt} file needs those columns filled")
      continue
    assessor, item = str(found["assessor"]).strip(), str(found["item"]).strip()
    label = normalise_label(found["label"])
    if label is None:
      skip("malformed", where, f"label {found['label']!r} is neither good nor bad",
           f"use one of {', '.join(sorted(LABELS))}")
      continue
    if known_items is not None and item not in known_items:
      skip("unknown_item", where, f"item {item!r} is not in {items_name}",
           "check that the answers belong to this task")
      continue
    why = known_assessors(assessor) if known_assessors else None
    if why:
      skip("unknown_assessor", where, f"assessor {assessor!r} {why}",
           "remove their answers or qualify them first")
      continue
    if (assessor, item) in seen:
      skip("duplicate", where, f"assessor {assessor!r} answered item {item!r} already at "
           f"{seen[(assessor, item)]}", "keep one answer per assessor and item")
      continue
    seen[(assessor, item)] = where
    reason = _first(row, columns.reason)[1]
    answers.append(Answer(assessor=assessor, item=item, label=label,
                          reason=str(reason).strip() if reason else "", location=where))
  return answers, AnswerCounts(read=len(answers), skipped=dict(skipped),
                               examples=tuple(examples))


# ----------------------------------------------------------------------------- writing


def _write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]],
                 delimiter: str) -> None:
  with atomic_open(path, newline="") as f:
    writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def write_task_files(out_dir: str | os.PathLike, name: str, items: Sequence[Mapping[str, Any]],
                     columns: Sequence[str], *, golden: Mapping[str, str] | None = None
                     ) -> dict[str, Path]:
  """Writes the items for assessors as JSONL, a Toloka task TSV and an MTurk input CSV.

  `columns` are the item fields shown (the first is the item id); `golden` maps item ids
  to their known labels (Toloka control tasks).
  """
  from aya_t5x.reporting import write_jsonl

  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {"jsonl": write_jsonl(out / f"{name}.jsonl", items),
           "toloka": out / f"{name}_toloka.tsv", "mturk": out / f"{name}_mturk.csv"}
  toloka_header = [f"INPUT:{c}" for c in columns] + (["GOLDEN:label"] if golden else [])
  _write_table(paths["toloka"], toloka_header,
               [[item[c] for c in columns] + ([golden[item[columns[0]]]] if golden else [])
                for item in items], "\t")
  _write_table(paths["mturk"], list(columns), [[item[c] for c in columns] for item in items],
               ",")
  return paths
