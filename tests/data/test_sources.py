"""The six sources read from fixtures in their published schemas; bad records handled."""

import json

import pytest

from aya_t5x import tasks
from aya_t5x.data import readers, sources
from aya_t5x.tasks import aya_collection, data_provenance
from tests.data import fixtures

# RECIPE.md §3, "Record schemas as published".
PUBLISHED = {
    "aya_dataset": {"inputs", "targets", "language", "language_code", "annotation_type",
                    "user_id"},
    "aya_templated": {"id", "inputs", "targets", "dataset_name", "sub_dataset_name",
                      "task_type", "template_id", "language", "script", "split"},
    "aya_translated": {"id", "inputs", "targets", "dataset_name", "sub_dataset_name",
                       "task_type", "template_id", "language", "script", "split"},
    "xp3x": {"inputs", "targets", "language", "split", "template", "dataset", "config"},
}


def test_specs_read_the_published_schemas():
  assert [s.name for s in tasks.TRAINING_SOURCES] == [
      "aya_dataset", "aya_templated", "xp3x", "data_provenance", "aya_translated",
      "sharegpt_command"]
  for name, fields in PUBLISHED.items():
    assert set(sources.get_source(name).field_names()) == fields, name


def _per_language(index, split="train"):
  return {lang: index.count(split=split, language=lang) for lang in index.languages(split)}


def test_aya_dataset_folds_dialects_and_drops_non_mt5(tmp_path):
  path, expected = fixtures.write_aya_dataset(tmp_path)
  index = sources.scan(tasks.AYA_DATASET, path)
  assert _per_language(index) == expected["train"]
  assert _per_language(index, "test") == expected["test"]
  assert index.report.removed == {"mt5_languages: not an mT5 language (quy)": 2}
  moroccan = next(sources.iterate(index, language="ar"))
  assert moroccan.language_code == "ary" and moroccan.inputs.startswith("Question 0 in Moroccan")


def test_aya_dataset_from_a_tfds_build_reads_each_split(tmp_path):
  train = [fixtures.aya_dataset_record(c, i, "train") for c, n in
           {"eng": 3, "swh": 2, "quy": 1}.items() for i in range(n)]
  test = [fixtures.aya_dataset_record("swh", i, "test") for i in range(2)]
  folder = fixtures.write_tfds_build(tmp_path / "tfds", {"train": train, "test": test})
  index = sources.scan(tasks.AYA_DATASET, str(folder))
  assert _per_language(index) == {"en": 3, "sw": 2}
  assert _per_language(index, "test") == {"sw": 2}
  assert index.report.removed == {"mt5_languages: not an mT5 language (quy)": 1}
  example = next(sources.iterate(index, split="test", language="sw"))
  assert example.inputs == test[0]["inputs"] and "@tfds:test row 1" in str(example.location)


def test_aya_templated_from_parquet_uses_the_split_field(tmp_path):
  path, expected = fixtures.write_aya_templated(tmp_path)
  index = sources.scan(tasks.AYA_TEMPLATED, path.parent)
  assert _per_language(index) == expected["train"]
  assert _per_language(index, "validation") == expected["validation"]
  example = next(sources.iterate(index, split="validation"))
  assert (example.dataset, example.template, example.record_id) == ("Xlel_wd-inst", "1", "100")


def test_unknown_source_lists_the_registered_ones():
  with pytest.raises(KeyError, match="Did you mean aya_dataset"):
    sources.get_source("aya_datset")


def _bad_lines():
  good = fixtures.aya_dataset_record("eng", 0, "train")
  return [
      b'{"inputs": "broken',                                              # 2 broken JSON
      b"\xff\xfe",                                                        # 3 invalid UTF-8
      json.dumps({**good, "targets": 5}).encode(),                        # 4 wrong type
      json.dumps({k: v for k, v in good.items() if k != "user_id"}).encode(),  # 5 missing
      json.dumps({**good, "inputs": "   "}).encode(),                     # 6 empty
      json.dumps({**good, "language_code": "xx1"}).encode(),              # 7 unknown code
      json.dumps({**good, "targets": "x" * 200_001}).encode(),            # 8 too long
  ]


def test_strict_mode_names_file_line_and_field(tmp_path):
  path = fixtures.write_jsonl(tmp_path / "aya.jsonl",
                              [fixtures.aya_dataset_record("eng", 0, "train")], _bad_lines())
  with pytest.raises(readers.MalformedRecord) as e:
    sources.scan(tasks.AYA_DATASET, path)
  assert f"{path}:2" in str(e.value) and "broken JSON" in str(e.value)
  assert "tolerant=True" in str(e.value)
  only_type = fixtures.write_jsonl(tmp_path / "type.jsonl", [], _bad_lines()[2:3])
  with pytest.raises(readers.MalformedRecord, match=r"type.jsonl:1: field 'targets': "
                     r"expected str, got int"):
    sources.scan(tasks.AYA_DATASET, only_type)


def test_tolerant_mode_counts_every_kind(tmp_path):
  path = fixtures.write_jsonl(tmp_path / "aya.jsonl",
                              [fixtures.aya_dataset_record("eng", 0, "train")], _bad_lines())
  index = sources.scan(tasks.AYA_DATASET, path, tolerant=True)
  report = index.report
  assert (report.read, report.kept, report.skipped) == (8, 1, 7)
  assert report.malformed == {
      "broken JSON": 1, "invalid UTF-8": 1, "targets: expected str, got int 5": 1,
      "user_id: missing": 1, "inputs: empty string": 1,
      "language_code: unknown language code 'xx1'": 1,
      "targets: over the length limit": 1}
  assert report.malformed_at["invalid UTF-8"] == [f"{path}:3: invalid UTF-8 at byte 0"]
  text = report.format()
  assert "skipped 7 malformed" in text and f"{path}:7" in text
  assert json.loads(json.dumps(report.to_dict()))["skipped_malformed"] == 7


def test_translated_caps_per_language_with_dolly_uncapped(tmp_path):
  path, expected = fixtures.write_aya_translated(tmp_path)
  index = sources.scan(tasks.AYA_TRANSLATED, path,
                       filters=aya_collection.translated_filters(cap=fixtures.TRANSLATED_CAP))
  for language in ("sw", "ms"):
    for dataset, count in expected["per_language"].items():
      assert index.count(language=language, dataset=dataset) == count, (language, dataset)
  removed = index.report.removed_by_filter()
  assert removed == {"drop_unk": expected["unk_removed"],
                     "cap_per_language_dataset": expected["capped_removed"]}
  # A different sample per language: the kept record ids differ between sw and ms.
  kept = {lang: {e.record_id for e in sources.iterate(index, language=lang)
                 if e.dataset == "HotpotQA (T)"} for lang in ("sw", "ms")}
  assert kept["sw"] != kept["ms"]
  # The same seed keeps the same sample; another seed another one.
  again = sources.scan(tasks.AYA_TRANSLATED, path,
                       filters=aya_collection.translated_filters(cap=fixtures.TRANSLATED_CAP))
  assert {e.record_id for e in sources.iterate(again, language="sw")
          if e.dataset == "HotpotQA (T)"} == kept["sw"]
  other = sources.scan(tasks.AYA_TRANSLATED, path, filters=aya_collection.translated_filters(
      seed=1, cap=fixtures.TRANSLATED_CAP))
  assert {e.record_id for e in sources.iterate(other, language="sw")
          if e.dataset == "HotpotQA (T)"} != kept["sw"]


def test_xp3x_template_pruning_reports_as_the_paper(tmp_path):
  path, expected = fixtures.write_xp3x(tmp_path)
  index = sources.scan(tasks.XP3X, path)
  assert _per_language(index) == expected["kept"]
  pruning = index.report.details["template_pruning"]
  for group in ("english", "multilingual"):
    assert pruning[group]["templates_removed_pct"] == expected["templates_removed_pct"]
  assert pruning["removed"]["paws-x/long_copy (english)"] == "near-duplicate of long"
  assert pruning["removed"]["paws-x/short_label (multilingual)"] == "empty or very short targets"
  assert index.report.removed_by_filter() == {"template_pruning": expected["instances_removed"],
                                              "mt5_languages": expected["not_mt5"]}
  assert {e.template for e in sources.iterate(index)} == {"long", "other"}


def test_data_provenance_rules(tmp_path):
  path, expected = fixtures.write_data_provenance(tmp_path)
  index = sources.scan(tasks.DATA_PROVENANCE, path, filters=data_provenance.provenance_filters(
      cap=fixtures.PROVENANCE_CAP))
  assert {d: index.count(dataset=d) for d in index.datasets()} == expected["kept"]
  assert index.report.removed_by_filter() == {
      "exclude_task_types": expected["held_out"], "exclude_datasets": expected["eval_derived"],
      "cap_per_dataset": expected["capped"]}
  assert index.languages() == ["de", "en"]


def test_sharegpt_prompt_rules(tmp_path):
  path, expected = fixtures.write_sharegpt(tmp_path)
  index = sources.scan(tasks.SHAREGPT_COMMAND, path)
  assert _per_language(index) == expected["kept"]
  assert {k.split(": ", 1)[1]: v for k, v in index.report.removed.items()} == expected["removed"]
