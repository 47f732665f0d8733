"""XCOPA: choice of plausible alternatives in 11 languages, zero-shot rank classification.

Published as JSONL per language, `data/<lang>/val.<lang>.jsonl` in the XCOPA repository
(100 validation examples each): premise, choice1, choice2, question (cause or effect),
label. Put the files under `<eval data>/xcopa/`, either flat (`val.et.jsonl`) or as in
the repository (`et/val.et.jsonl`). Scored as the median accuracy over the templates.
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.evaluation import eval_sets, formats


def _plain(record):
  question = "What was the cause?" if record["question"] == "cause" else \
      "What happened as a result?"
  return f"{record['premise']} {question}", [record["choice1"], record["choice2"]], \
      record["label"]


def _listed(record):
  kind = "cause" if record["question"] == "cause" else "effect"
  return (f"Premise: {record['premise']}\nWhat is the more plausible {kind}?\n"
          f"- {record['choice1']}\n- {record['choice2']}",
          [record["choice1"], record["choice2"]], record["label"])


def _continuation(record):
  link = "This happened because" if record["question"] == "cause" else "As a consequence,"
  return f"{record['premise']} {link}", [record["choice1"], record["choice2"]], record["label"]


def _options(record):
  kind = "cause" if record["question"] == "cause" else "consequence"
  return (f"Pick the more likely {kind} of this event.\nEvent: {record['premise']}\n"
          f"Option A: {record['choice1']}\nOption B: {record['choice2']}",
          [record["choice1"], record["choice2"]], record["label"])


TEMPLATES = (_plain, _listed, _continuation, _options)


class Xcopa(eval_sets.Benchmark):
  def files(self, root: Path, key: str) -> dict[str, Path]:
    name = f"val.{key}.jsonl"
    return {"examples": eval_sets.first_existing(root / name, root / key / name,
                                                  root / "data" / key / name)}

  def rows(self, files, key):
    return eval_sets.rank_rows(formats.read_xcopa(files["examples"]), TEMPLATES)


XCOPA = eval_sets.add_benchmark(Xcopa(
    name="xcopa", title="XCOPA", kind="rank", split="validation", folder="xcopa",
    data_format=formats.XCOPA,
    languages=("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")))
