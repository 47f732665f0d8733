"""XStoryCloze: choose a story's ending, 10 languages, zero-shot rank classification.

Published as `spring2016.val.<lang>.tsv.split_20_80_eval.tsv` per language (1,511
stories each; tab-separated with a header: story_id, input_sentence_1..4,
sentence_quiz1, sentence_quiz2, answer_right_ending). English StoryCloze is distributed
separately (a CSV on request), which is why the recipe's 10 languages leave it out.
Put the files under `<eval data>/xstorycloze/`, flat or in per-language folders.
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.evaluation import eval_sets, formats


def _story(record) -> str:
  return " ".join(record["sentences"])


def _continuation(record):
  first, second = record["endings"]
  return (f"{_story(record)}\nWhat is a possible continuation for the story given the "
          f"following options?\n- {first}\n- {second}", record["endings"], record["answer"])


def _plain(record):
  return (f"{_story(record)} What is the most plausible ending of this story?",
          record["endings"], record["answer"])


def _numbered(record):
  first, second = record["endings"]
  return (f"Read the story and choose the best ending.\nStory: {_story(record)}\n"
          f"Ending 1: {first}\nEnding 2: {second}", record["endings"], record["answer"])


TEMPLATES = (_continuation, _plain, _numbered)


class XStoryCloze(eval_sets.Benchmark):
  def files(self, root: Path, key: str) -> dict[str, Path]:
    name = f"spring2016.val.{key}.tsv.split_20_80_eval.tsv"
    return {"examples": eval_sets.first_existing(root / name, root / key / name)}

  def rows(self, files, key):
    return eval_sets.rank_rows(formats.read_story_cloze(files["examples"]), TEMPLATES)


XSTORYCLOZE = eval_sets.add_benchmark(XStoryCloze(
    name="xstorycloze", title="XStoryCloze", kind="rank", split="validation",
    folder="xstorycloze", data_format=formats.STORY_CLOZE,
    languages=("ar", "es", "eu", "hi", "id", "my", "ru", "sw", "te", "zh")))
