"""Filters on their own: decisions, reasons and the registry."""

import pytest

from aya_t5x.data import filters, sources
from aya_t5x.data.readers import Location


def example(inputs="Tell me a story about a lion.", targets="Once upon a time...",
            language="en", dataset="d", **kwargs):
  return sources.Example(inputs=inputs, targets=targets, language=language, dataset=dataset,
                         split="train", location=Location(path="f.jsonl", index=1), **kwargs)


def test_mt5_languages():
  keep = filters.KeepMT5Languages()
  assert keep.reason(example(language="sw")) is None
  assert keep.reason(example(language="quy", language_code="quy")) == \
      "not an mT5 language (quy)"


def test_decontamination_counts_per_eval_set():
  flores = ["The quick brown fox jumps over the lazy dog near the river bank today."]
  xlsum = ["Scientists found a new species of frog in the rainforest last year."]
  run = filters.Decontaminate(eval_texts={"flores": flores, "xlsum": xlsum}, n=6).start()
  leaked = example(inputs="Translate: the quick brown fox jumps over the lazy dog, please")
  assert run.reason(leaked) == "6-gram overlap with flores"
  assert run.reason(example(targets="A new species of frog in the rainforest!")) == \
      "6-gram overlap with xlsum"
  assert run.reason(example(inputs="the quick brown fox sleeps")) is None
  assert filters.Decontaminate(eval_texts={"flores": flores}, n=20).start().reason(leaked) \
      is None


def test_decontamination_from_files_in_a_scan(tmp_path):
  from tests.data import fixtures

  eval_path = fixtures.write_jsonl(tmp_path / "eval.jsonl", [
      {"premise": "Passage number 2 about rivers and mountains", "label": 1}])
  path, _ = fixtures.write_xp3x(tmp_path)
  decontaminate = filters.Decontaminate.from_files({"xnli": str(eval_path)}, n=5)
  from aya_t5x import tasks

  index = sources.scan(tasks.XP3X, path, filters=(filters.KeepMT5Languages(), decontaminate))
  # 4 templates x 2 languages quote passage 2 in their inputs.
  assert index.report.removed["decontaminate: 5-gram overlap with xnli"] == 8


def test_sharegpt_english_check():
  assert filters.looks_english("Please write a short poem about the sea.")
  assert not filters.looks_english("Andika shairi fupi kuhusu bahari tafadhali sasa.")
  assert not filters.looks_english("Напиши короткое стихотворение о море.")


def test_task_types_match_on_words():
  rule = filters.ExcludeTaskTypes()
  assert rule.reason(example(task_type="Textual-Entailment")) == \
      "held-out task type (textual entailment)"
  assert rule.reason(example(task_type="decoding")) is None  # "code" only as a word


def test_registry_lists_names():
  assert isinstance(filters.get_filter("cap", cap=3), filters.Cap)
  with pytest.raises(KeyError, match="Did you mean drop_unk"):
    filters.get_filter("drop_unkk")
  with pytest.raises(ValueError, match="cap must be at least 1"):
    filters.Cap(cap=0).start()
