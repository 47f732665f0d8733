"""XNLI: natural language inference in 15 languages, zero-shot rank classification.

Published as XNLI-1.0 (`xnli.dev.tsv`, `xnli.test.tsv`, and the same as `.jsonl`): one
file for all languages with the columns language, gold_label (entailment, neutral,
contradiction), sentence1 (premise), sentence2 (hypothesis) and more. Put `XNLI-1.0/`'s
files under `<eval data>/xnli/`. The recipe evaluates the validation split (`xnli.dev`).
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.evaluation import eval_sets, formats


# Each template gives its answer words in XNLI_LABELS order: entailment, neutral,
# contradiction.
def _true_false(record):
  return (f"{record['premise']}\nQuestion: {record['hypothesis']} True, False or Neither?",
          ["True", "Neither", "False"], record["label"])


def _infer(record):
  return (f"Suppose \"{record['premise']}\" Can we infer that \"{record['hypothesis']}\"? "
          "Yes, no, or maybe?", ["Yes", "Maybe", "No"], record["label"])


def _based_on(record):
  return (f"{record['premise']}\nBased on the passage above, is it true that "
          f"\"{record['hypothesis']}\"? Yes, no, or maybe?", ["Yes", "Maybe", "No"],
          record["label"])


def _follows(record):
  return (f"Given that \"{record['premise']}\", does it follow that "
          f"\"{record['hypothesis']}\"? Answer yes, no, or it is not possible to tell.",
          ["Yes", "It is not possible to tell", "No"], record["label"])


TEMPLATES = (_true_false, _infer, _based_on, _follows)
SPLIT_FILES = {"validation": "dev", "test": "test"}


class Xnli(eval_sets.Benchmark):
  def files(self, root: Path, key: str) -> dict[str, Path]:
    stem = f"xnli.{SPLIT_FILES[self.split]}"
    return {"examples": eval_sets.first_existing(root / f"{stem}.tsv", root / f"{stem}.jsonl")}

  def rows(self, files, key):
    return eval_sets.rank_rows(formats.read_xnli(files["examples"], key), TEMPLATES)


XNLI = eval_sets.add_benchmark(Xnli(
    name="xnli", title="XNLI", kind="rank", split="validation", folder="xnli",
    data_format=formats.XNLI,
    languages=("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur",
               "vi", "zh")))
