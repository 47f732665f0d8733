"""The demo corpus: deterministic, held-out sets apart from training, real source schemas."""

import json

import pytest
import seqio

import aya_t5x.tasks  # noqa: F401  (registers the six sources)
from aya_t5x import mixtures
from aya_t5x.data import languages, readers, sources
from aya_t5x.demo import corpus as demo_corpus
from aya_t5x.demo import lexicon
from aya_t5x.vocab import vocabulary


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  return demo_corpus.build_corpus(tmp_path_factory.mktemp("demo") / "corpus", seed=0)


def _all_records(corpus):
  for source, splits in corpus.source_paths().items():
    spec = sources.get_source(source)
    for split, path in splits.items():
      for _, record in readers.iter_records(path):
        assert not isinstance(record, readers.MalformedRecord), record
        yield source, split, spec, record


def test_same_seed_same_bytes_other_seed_other_data(corpus, tmp_path):
  again = demo_corpus.build_corpus(tmp_path / "again", seed=0)
  assert again.summary()["checksum"] == corpus.summary()["checksum"]
  other = demo_corpus.build_corpus(tmp_path / "other", seed=1)
  assert other.summary()["checksum"] != corpus.summary()["checksum"]


def test_languages_span_resource_groups_and_tasks(corpus):
  groups = {languages.get_language(c).group for c in lexicon.LANGUAGES}
  assert len(lexicon.LANGUAGES) >= 8 and groups == {"HR", "MR", "LR"}
  tasks = {task for task, _ in corpus.eval_files()}
  assert {"question_answering", "classification", "generation"} <= tasks
  assert {"translation_from_english", "translation_to_english"} <= tasks
  for (task, _), path in corpus.eval_files().items():
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == demo_corpus.EVAL_PER_TASK
    if task == "classification":
      assert all(r["targets"] in r["options"] and len(set(r["options"])) == 2 for r in rows)


def test_held_out_examples_never_appear_in_training_files(corpus):
  held_out = {json.loads(line)["inputs"] for path in corpus.eval_files().values()
              for line in path.read_text().splitlines()}
  seen = {record["inputs"] for *_, record in _all_records(corpus)}
  assert held_out and seen and not held_out & seen


def test_every_record_passes_the_real_source_schemas_and_filters(corpus):
  plan = mixtures.plan_aya_mixture("translation_heavy", corpus.source_paths())
  for planned in plan.source_tasks.values():
    report = planned.report
    assert report.read > 0 and report.skipped == 0 and not report.removed, report.format()
  found = {task.split(".")[1] for task in plan.task_rates if "." in task}
  assert set(lexicon.LANGUAGES) <= found


def test_vocabulary_has_t5_ids_and_covers_every_language(corpus):
  vocab = vocabulary.sentencepiece_vocabulary(str(corpus.vocabulary_path))
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  assert vocab.vocab_size <= demo_corpus.VOCABULARY_SIZE
  for path in corpus.eval_files().values():
    for line in path.read_text().splitlines():
      row = json.loads(line)
      for text in (row["inputs"], row["targets"]):
        ids = vocab.encode(text)
        assert vocabulary.UNK_ID not in ids and vocab.decode(ids) == text
  assert isinstance(vocab, seqio.SentencePieceVocabulary)
