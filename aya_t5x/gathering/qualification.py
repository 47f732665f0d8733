"""Filtering I: a qualification task of good and bad translations, and assessors scored on it.

The Swahili use case (RECIPE.md section 7) selects its assessors before they review
anything: take a curated set of correct translations and a set of incorrect ones, ask
every candidate to classify them, and keep those who classify best.

    items, golden = build_task(correct, incorrect, source_key="source",
                               translation_key="translation", seed=0)
    answers, counts = crowd_files.read_answers("results.tsv", known_items=golden)
    scores = score_assessors(answers, golden)
    chosen = select(scores, min_accuracy=0.8)            # or top_k=20

Accuracy comes with a Wilson score interval (it holds for few answers, where the normal
approximation does not), and selection by threshold uses the interval's lower bound by
default, so that 5 lucky answers out of 5 do not outrank 48 of 50. Each assessor's
confusion counts (how they answer good and bad items) are what review aggregation uses
as their measured skill (`review`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.gathering.crowd_files import BAD, GOOD, Answer, AnswerCounts, normalise_label

TASK_COLUMNS = ("item_id", "source", "translation")


def build_task(correct: Sequence[tuple[str, Mapping[str, Any]]],
               incorrect: Sequence[tuple[str, Mapping[str, Any]]], *,
               source_key: str = "source", translation_key: str = "translation",
               seed: int = 0) -> tuple[list[dict[str, str]], dict[str, str]]:
  """Items to classify (shuffled, ids that do not give the answer away) and the answer key.

  `correct` and `incorrect` are (location, record) pairs whose records hold the source
  text and its translation.
  """
  if not correct or not incorrect:
    raise ValueError(f"a qualification task needs correct and incorrect translations; got "
                     f"{len(correct)} correct and {len(incorrect)} incorrect")
  pool = []
  for label, records in ((GOOD, correct), (BAD, incorrect)):
    for location, record in records:
      for key in (source_key, translation_key):
        if not isinstance(record.get(key), str) or not record[key].strip():
          raise ValueError(f"{location}: field {key!r} is missing or empty (fields: "
                           f"{', '.join(sorted(record))}); fix --source_key/--translation_key")
      pool.append((record[source_key], record[translation_key], label))
  random.Random(seed).shuffle(pool)
  width = len(str(len(pool)))
  items, golden = [], {}
  for number, (source, translation, label) in enumerate(pool, start=1):
    item_id = f"q{number:0{width}d}"
    items.append({"item_id": item_id, "source": source, "translation": translation})
    golden[item_id] = label
  return items, golden


def read_golden(path: str | os.PathLike) -> dict[str, str]:
  """The answer key `build_task` wrote (`golden.jsonl`: {"item_id": ..., "label": ...})."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"golden set {path} not found (aya-t5x assessors build-task "
                            "writes golden.jsonl)")
  golden = {}
  with path.open(encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        label = normalise_label(record["label"])
        item = str(record["item_id"])
      except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}:{number}: not a JSON object with item_id and label "
                         f"({e})") from None
      if label is None:
        raise ValueError(f"{path}:{number}: label {record['label']!r} is neither good nor bad")
      golden[item] = label
  if not golden:
    raise ValueError(f"{path}: the golden set is empty")
  return golden


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
  """The Wilson score interval of a binomial proportion ((0, 1) with no answers)."""
  return reporting.wilson_interval(successes, n, reporting.z_for_confidence(confidence)) or (
      0.0, 1.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AssessorScore:
  """How one assessor did on the golden set."""

  assessor: str
  answers: int
  correct: int
  low: float                               # Wilson interval of the accuracy
  high: float
  confusion: Mapping[str, Mapping[str, int]]  # true label -> answered label -> count
  selected: bool = False

  @property
  def accuracy(self) -> float:
    return self.correct / self.answers if self.answers else 0.0

  def recall(self, label: str) -> float | None:
    """Share of items with true `label` the assessor labelled so (bad: catches errors)."""
    row = self.confusion.get(label, {})
    total = sum(row.values())
    return row.get(label, 0) / total if total else None

  def to_json(self) -> dict[str, Any]:
    return {"assessor": self.assessor, "answers": self.answers, "correct": self.correct,
            "accuracy": self.accuracy, "low": self.low, "high": self.high,
            "good_recall": self.recall(GOOD), "bad_recall": self.recall(BAD),
            "confusion": {k: dict(v) for k, v in self.confusion.items()},
            "selected": self.selected}

  @classmethod
  def from_json(cls, data: Mapping[str, Any]) -> AssessorScore:
    return cls(assessor=data["assessor"], answers=data["answers"], correct=data["correct"],
               low=data["low"], high=data["high"], confusion=data["confusion"],
               selected=data["selected"])


def score_assessors(answers: Sequence[Answer], golden: Mapping[str, str], *,
                    confidence: float = 0.95) -> list[AssessorScore]:
  """Per-assessor accuracy (with its interval) and confusion counts, best first."""
  confusion: dict[str, dict[str, dict[str, int]]] = {}
  for answer in answers:
    truth = golden[answer.item]
    table = confusion.setdefault(answer.assessor, {GOOD: {GOOD: 0, BAD: 0},
                                                   BAD: {GOOD: 0, BAD: 0}})
    table[truth][answer.label] += 1
  scores = []
  for assessor, table in confusion.items():
    n = sum(sum(row.values()) for row in table.values())
    correct = table[GOOD][GOOD] + table[BAD][BAD]
    low, high = wilson_interval(correct, n, confidence)
    scores.append(AssessorScore(assessor=assessor, answers=n, correct=correct, low=low,
                                high=high, confusion=table))
  return sorted(scores, key=lambda s: (-s.low, -s.accuracy, s.assessor))


def select(scores: Sequence[AssessorScore], *, min_accuracy: float | None = None,
           top_k: int | None = None, min_answers: int = 1, by: str = "low"
           ) -> list[AssessorScore]:
  """Marks the chosen assessors: a threshold on `by` ('low' bound or 'accuracy'), top-k, or both.

  Returns every score, the chosen ones with `selected=True`, in the input order.
  """
  if by not in ("low", "accuracy"):
    raise ValueError(f"select by 'low' (the interval's lower bound) or 'accuracy', not {by!r}")
  if min_accuracy is None and top_k is None:
    raise ValueError("choose assessors by a threshold (--min_accuracy), a number "
                     "(--top_k), or both")
  value = (lambda s: s.low) if by == "low" else (lambda s: s.accuracy)
  eligible = [s for s in scores if s.answers >= min_answers and
              (min_accuracy is None or value(s) >= min_accuracy)]
  eligible.sort(key=lambda s: (-value(s), -s.answers, s.assessor))
  chosen = {s.assessor for s in (eligible[:top_k] if top_k is not None else eligible)}
  return [dataclasses.replace(s, selected=s.assessor in chosen) for s in scores]


def read_qualification(path: str | os.PathLike) -> dict[str, AssessorScore]:
  """The assessors of a qualification report (`qualification_report.json`)."""
  path = Path(path)
  if path.is_dir():
    path = path / "qualification_report.json"
  if not path.is_file():
    raise FileNotFoundError(f"qualification report {path} not found (aya-t5x assessors "
                            "qualify writes it)")
  try:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {a["assessor"]: AssessorScore.from_json(a) for a in data["assessors"]}
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise ValueError(f"{path}: not a qualification report ({e})") from None


def qualification_report(scores: Sequence[AssessorScore], counts: AnswerCounts, *,
                         golden: Mapping[str, str], settings: Mapping[str, Any]
                         ) -> tuple[dict[str, Any], str]:
  """JSON facts and markdown: every assessor's accuracy, interval, recalls and selection."""
  chosen = [s for s in scores if s.selected]
  report = {"settings": dict(settings), "golden_items": len(golden),
            "golden_bad": sum(v == BAD for v in golden.values()),
            "answers_read": counts.read, "answers_skipped": dict(counts.skipped),
            "skipped_examples": list(counts.examples),
            "selected": [s.assessor for s in chosen],
            "assessors": [s.to_json() for s in scores]}
  lines = ["# Assessor qualification", "",
           f"{len(golden)} golden items ({report['golden_bad']} bad translations); "
           f"{counts.read} answers read, {counts.skipped_total} skipped"
           + (f" ({', '.join(f'{k} {v}' for k, v in sorted(counts.skipped.items()))})"
              if counts.skipped_total else "") + ".",
           f"Selected {len(chosen)} of {len(scores)} assessors ({settings}).", "",
           f"Accuracy with its {settings.get('confidence', 0.95):.0%} Wilson interval; "
           "'bad recall' is the share of bad translations the assessor caught.", ""]
  lines.append(reporting.data_table(
      ["assessor", "answers", "accuracy", "low", "high", "good recall", "bad recall",
       "selected"],
      [[s.assessor, s.answers, s.accuracy, s.low, s.high, s.recall(GOOD), s.recall(BAD),
        "yes" if s.selected else ""] for s in scores]))
  if counts.examples:
    lines += ["", "Skipped rows (first):"] + [f"- {e}" for e in counts.examples]
  return report, "\n".join(lines)
