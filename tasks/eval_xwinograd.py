"""XWinograd: Winograd schemas in 6 languages (test split), zero-shot rank classification.

Published (as used by BLOOMZ/mT0 and Aya) as JSONL per language, `test/<lang>.jsonl`
with sentence (the blank written `_`), option1, option2 and answer (1 or 2); the
Japanese file is `jp.jsonl`. Put the files under `<eval data>/xwinograd/`, flat
(`en.jsonl`) or in `test/`.
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.evaluation import eval_sets, formats

# The dataset's file names where they differ from mT5's codes.
FILE_NAMES = {"ja": "jp"}


def _options(record):
  return [record["option1"], record["option2"]], record["answer"]


def _replace(record):
  return (f"{record['sentence']}\nReplace the _ in the sentence above with the correct "
          f"option:\n- {record['option1']}\n- {record['option2']}", *_options(record))


def _stands_for(record):
  return (f"In the sentence below, does the _ stand for {record['option1']} or "
          f"{record['option2']}?\n{record['sentence']}", *_options(record))


def _blank(record):
  return f"Fill in the blank: {record['sentence']}", *_options(record)


TEMPLATES = (_replace, _stands_for, _blank)


class XWinograd(eval_sets.Benchmark):
  def files(self, root: Path, key: str) -> dict[str, Path]:
    name = f"{FILE_NAMES.get(key, key)}.jsonl"
    return {"examples": eval_sets.first_existing(root / "test" / name, root / name)}

  def rows(self, files, key):
    return eval_sets.rank_rows(formats.read_xwinograd(files["examples"]), TEMPLATES)


XWINOGRAD = eval_sets.add_benchmark(XWinograd(
    name="xwinograd", title="XWinograd", kind="rank", split="test", folder="xwinograd",
    data_format=formats.XWINOGRAD, languages=("en", "fr", "ja", "pt", "ru", "zh")))
