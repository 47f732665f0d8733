"""The demo's held-out sets as benchmarks, scored with the same machinery as the recipe's.

`aya_t5x.demo.corpus` writes `eval/<task>.<language>.jsonl` (JSONL: inputs, targets,
language, task, and for classification the two answer options). Each task type is a
benchmark over the demo's ten languages (`aya_eval.demo_qa.sw`, ...): classification
by rank classification over its options (chance 50%), question answering by exact
match, translation (both ways, nine languages) and generation by chrF++ with exact
match beside it. Their data folder is the corpus's `eval/` (`--data_dir CORPUS`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

from aya_t5x.demo.corpus import eval_task_name
from aya_t5x.demo.lexicon import LANGUAGES
from aya_t5x.evaluation import eval_sets, formats, metrics

DATA_FORMAT = ("JSONL written by aya_t5x.demo.corpus.build_corpus: {\"inputs\", \"targets\", "
               "\"language\", \"task\"[, \"options\"]} per line, in eval/<task>.<language>.jsonl")


def _read(path: Path) -> list[dict]:
  formats.require_file(path, DATA_FORMAT)
  rows = []
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
    try:
      row = json.loads(line)
      if not (isinstance(row.get("inputs"), str) and isinstance(row.get("targets"), str)):
        raise ValueError("inputs and targets must be strings")
    except ValueError as e:
      raise formats.FormatError(f"{path}:{number}: {e}; expected {DATA_FORMAT}") from e
    rows.append(row)
  return rows


def _as_asked(row: dict) -> tuple[str, list[str], int]:
  return row["inputs"], list(row["options"]), row["options"].index(row["targets"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoBenchmark(eval_sets.Benchmark):
  """One demo task type; `task` names its files (`<task>.<language>.jsonl`)."""

  task: str
  metrics_of: tuple[Callable, ...] = ()

  def files(self, root: Path, key: str) -> dict[str, Path]:
    return {"examples": root / f"{self.task}.{key}.jsonl"}

  def rows(self, files, key):
    records = _read(files["examples"])
    if self.kind == "rank":
      return eval_sets.rank_rows(records, (_as_asked,))
    return [{"inputs": r["inputs"], "targets": r["targets"]} for r in records]

  def metric_fns(self, key, *, spbleu_model=None):
    return list(self.metrics_of) or super().metric_fns(key)


def _demo(task: str, kind: str, title: str, languages: tuple[str, ...],
          metric_fns: tuple[Callable, ...], primary: str) -> DemoBenchmark:
  return eval_sets.add_benchmark(DemoBenchmark(
      name=f"demo_{task}", title=f"Demo {title}", kind=kind, split="validation",
      folder="eval", data_format=DATA_FORMAT, languages=languages, primary_metric=primary,
      max_input_length=64, max_target_length=32, task=task, metrics_of=metric_fns))


_NON_ENGLISH = tuple(code for code in LANGUAGES if code != "en")
DEMO_CLASSIFICATION = _demo("classification", "rank", "classification (what colour?)",
                            LANGUAGES, (), "accuracy")
DEMO_QA = _demo("question_answering", "generate", "question answering (how many?)", LANGUAGES,
                (metrics.exact_match,), "exact_match")
DEMO_TRANSLATION_FROM_ENGLISH = _demo(
    eval_task_name("translation", "from_english"), "generate", "translation En→X",
    _NON_ENGLISH, (metrics.chrf, metrics.exact_match), "chrf")
DEMO_TRANSLATION_TO_ENGLISH = _demo(
    eval_task_name("translation", "to_english"), "generate", "translation X→En",
    _NON_ENGLISH, (metrics.chrf, metrics.exact_match), "chrf")
DEMO_GENERATION = _demo("generation", "generate", "generation (describe in a sentence)",
                        LANGUAGES, (metrics.chrf, metrics.exact_match), "chrf")
DEMO = (DEMO_CLASSIFICATION, DEMO_QA, DEMO_TRANSLATION_FROM_ENGLISH,
        DEMO_TRANSLATION_TO_ENGLISH, DEMO_GENERATION)
