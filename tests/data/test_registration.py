"""SeqIO tasks from sources and single files: tokenized examples, rates."""


import numpy as np
import pytest
import seqio

from aya_t5x.data import registration
from aya_t5x.data.templates import Template
from aya_t5x.tasks import aya_collection
from tests.data import fixtures


def _texts(task_name, vocabulary, split="train"):
  task = seqio.get_mixture_or_task(task_name)
  dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False)
  out = []
  for ex in dataset.as_numpy_iterator():
    assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1  # eos appended
    out.append((vocabulary.decode(ex["inputs"].tolist()),
                vocabulary.decode(ex["targets"].tolist())))
  return out


def test_per_language_tasks_and_source_mixture(tmp_path, small_vocabulary):
  path, expected = fixtures.write_aya_dataset(tmp_path)
  planned = registration.register_source_tasks("aya_dataset", path,
                                               vocabulary=small_vocabulary)
  names = {t.name for t in planned.tasks}
  assert names == {f"aya_dataset.{lang}" for lang in ("en", "sw", "ar", "hi")}
  sw = _texts("aya_dataset.sw", small_vocabulary)
  assert len(sw) == expected["train"]["sw"]
  assert sw[0] == ("Question 0 in Swahili (train)?", "Answer number 0 written by a person.")
  assert len(_texts("aya_dataset.sw", small_vocabulary, split="test")) == 2
  info = registration.task_info("aya_dataset.sw")
  assert (info.language, info.resource_group, dict(info.sizes)) == ("sw", "LR",
                                                                    {"train": 6, "test": 2})
  # The source mixture weights its languages in proportion to their sizes.
  mixture = seqio.get_mixture_or_task("aya_dataset")
  train = expected["train"]
  for lang, size in train.items():
    got = mixture.get_rate(seqio.get_mixture_or_task(f"aya_dataset.{lang}"))
    assert got == pytest.approx(size / sum(train.values()))


def test_boosted_dolly_gets_its_own_tasks(tmp_path, small_vocabulary):
  path, expected = fixtures.write_aya_translated(tmp_path)
  planned = registration.register_source_tasks(
      "aya_translated", path, vocabulary=small_vocabulary, boosts={"dolly": 2.0},
      filters=aya_collection.translated_filters(cap=fixtures.TRANSLATED_CAP))
  sizes = {t.name: t.sizes["train"] for t in planned.tasks}
  per = expected["per_language"]
  rest = per["HotpotQA (T)"] + per["Mintaka-inst (T)"]
  assert sizes == {"aya_translated.sw": rest, "aya_translated.dolly.sw": per["Dolly-v2 (T)"],
                   "aya_translated.ms": rest, "aya_translated.dolly.ms": per["Dolly-v2 (T)"]}
  total = 2 * rest + 2 * 2.0 * per["Dolly-v2 (T)"]
  assert planned.rates["aya_translated.dolly.sw"] == pytest.approx(2.0 * 15 / total)
  assert planned.rates["aya_translated.sw"] == pytest.approx(rest / total)
  dolly = _texts("aya_translated.dolly.ms", small_vocabulary)
  assert len(dolly) == 15 and all("Dolly-v2 (T)" in i for i, _ in dolly)
  assert not any("Dolly" in i for i, _ in _texts("aya_translated.ms", small_vocabulary))


def test_register_jsonl_task_in_one_step_with_a_template(tmp_path, small_vocabulary):
  path = fixtures.write_jsonl(tmp_path / "tweets.jsonl", [
      {"tweet": f"I love rain {i}", "label": "positive"} for i in range(3)])
  template = Template(id="tweet", inputs="Classify the sentiment of the tweet: {{tweet}}",
                      targets="I would classify the given tweet as: {{label}}")
  registration.register_jsonl_task("my_tweets", path, vocabulary=small_vocabulary,
                                   language="Swahili", template=template)
  assert _texts("my_tweets", small_vocabulary)[1] == (
      "Classify the sentiment of the tweet: I love rain 1",
      "I would classify the given tweet as: positive")
  assert registration.task_info("my_tweets").language == "sw"


def test_tokenized_lengths_match_the_vocabulary(tmp_path, small_vocabulary):
  path, _ = fixtures.write_aya_templated(tmp_path)
  registration.register_source_tasks("aya_templated", path, vocabulary=small_vocabulary)
  task = seqio.get_mixture_or_task("aya_templated.fr")
  ex = next(task.get_dataset(sequence_length=None, split="validation",
                             shuffle=False).as_numpy_iterator())
  expected = small_vocabulary.encode(
      "Instruction 100 for Xlel_wd-inst in fra: do the task.") + [1]
  np.testing.assert_array_equal(ex["inputs"], expected)
