"""Preference pairs: the annotation rules, judge verdicts, bad records, SeqIO pair tasks."""

import dataclasses
import json

import numpy as np
import pytest

from aya_t5x import cli, input_pipeline
from aya_t5x.annotation.export import ExportRules
from aya_t5x.annotation.store import Store
from aya_t5x.preference import pairs as pairs_lib
from aya_t5x.preference import tasks


def _votes(store, item, ups, downs):
  for n in range(ups + downs):
    store.vote(user_id=f"voter{n}", language=item.language, item_id=item.id, up=n < ups)


def _rate(store, item, *ratings):
  for n, rating in enumerate(ratings):
    store.rate(user_id=f"rater{n}", language=item.language, item_id=item.id, rating=rating)


@pytest.fixture
def annotations(tmp_path):
  """Swahili prompts, one per rule; Yoruba too small for the export."""
  path = tmp_path / "annotations.db"
  with Store(path) as store:
    def original(prompt, answer, user="amina", language="sw"):
      return store.add_original(user_id=user, language=language, inputs=prompt,
                                targets=answer)

    def edit(parent, answer, user="chema"):
      return store.add_reannotation(user_id=user, language=parent.language,
                                    parent_id=parent.id, inputs=parent.inputs, targets=answer)

    # 1: rated 5 (re-annotation) against votes 1 up / 3 down = 2.0 -> a pair, gap 3.
    o1 = original("Swali la kwanza?", "Jibu fupi.")
    r1 = edit(o1, "Jibu refu na zuri zaidi.")
    _rate(store, r1, 5, 5)
    _votes(store, o1, 1, 3)
    # 2: 3 up / 0 down = 5.0 against rated 5 -> a tie.
    o2 = original("Swali la pili?", "Ndiyo kabisa.")
    r2 = edit(o2, "Ndiyo, kabisa kabisa sana.")
    _rate(store, r2, 5)
    _votes(store, o2, 3, 0)
    # 3: 2 up / 1 down = 3.67 against rated 3 -> gap 0.67, below the minimum of 1.
    o3 = original("Swali la tatu?", "Labda.")
    r3 = edit(o3, "Labda kesho asubuhi.")
    _rate(store, r3, 3)
    _votes(store, o3, 2, 1)
    # 4: two votes only (unscored) -> fewer than two scored answers.
    o4 = original("Swali la nne?", "Hapana.")
    r4 = edit(o4, "Hapana, si leo kabisa.")
    _rate(store, r4, 4)
    _votes(store, o4, 2, 0)
    # 5: a re-annotation below the export's edit distance is not a candidate.
    o5 = original("Swali la tano?", "Sawa.")
    r5 = edit(o5, "Sawa!")
    _rate(store, r5, 5)
    _votes(store, o5, 0, 3)
    # Yoruba: rated pair, but the language has too few contributions for the export.
    y = original("Ìbéèrè?", "Bẹ́ẹ̀ ni.", user="dayo", language="yo")
    yr = edit(y, "Bẹ́ẹ̀ ni, dájúdájú ni.")
    _rate(store, yr, 5)
    _votes(store, y, 0, 3)
  return path


def test_annotation_pairs_follow_the_rules(annotations):
  with Store(annotations) as store:
    made = pairs_lib.pairs_from_annotations(
        store, pairs_lib.PairRules(min_rating_gap=1.0, min_votes=3),
        ExportRules(min_language_contributions=5))
  assert [p.record() for p in made.pairs] == [{
      "prompt": "Swali la kwanza?", "chosen": "Jibu refu na zuri zaidi.",
      "rejected": "Jibu fupi.", "language": "sw"}]
  (row,) = made.report["languages"]
  assert row["language"] == "sw" and row["pairs"] == 1
  assert row["dropped"] == {"tie": 1, "gap below minimum": 1,
                            "fewer than two scored answers": 2}
  assert made.report["languages_excluded_by_export"] == ["yo"]
  # A larger minimum gap drops the remaining pair too; a cap of 0 pairs is a minimum.
  with Store(annotations) as store:
    stricter = pairs_lib.pairs_from_annotations(
        store, pairs_lib.PairRules(min_rating_gap=3.5), ExportRules(min_language_contributions=5))
    capped = pairs_lib.pairs_from_annotations(
        store, pairs_lib.PairRules(min_pairs_per_language=2),
        ExportRules(min_language_contributions=5))
  assert stricter.pairs == [] and capped.pairs == []
  assert capped.report["languages"][0]["dropped"]["language below min_pairs_per_language"] == 1


def test_pairs_command_from_annotations(annotations, tmp_path, capsys):
  out = tmp_path / "pairs.jsonl"
  assert cli.main(["preference", "pairs", "--from_annotations", str(annotations),
                   "--min_language_contributions", "5", "--output", str(out)]) == 0
  assert [json.loads(line)["chosen"] for line in out.read_text().splitlines()] == [
      "Jibu refu na zuri zaidi."]
  assert "sw: 1 pairs" in capsys.readouterr().out
  assert json.loads((tmp_path / "pairs.jsonl.report.json").read_text())["pairs"] == 1


def test_pairs_from_judge_verdicts(tmp_path):
  def write(name, rows):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path

  a = write("a.jsonl", [{"id": str(i), "prompt": f"p{i}", "completion": f"a{i}",
                         "language": "sw"} for i in range(5)])
  b = write("b.jsonl", [{"id": str(i), "prompt": f"p{i}", "completion": f"b{i}" if i != 4
                         else "a4", "language": "sw"} for i in range(5)])
  judgments = write("judgments.jsonl", [
      {"id": "0", "verdict": "A", "model_a_shown_as": "A", "error": None},  # A wins
      {"id": "1", "verdict": "A", "model_a_shown_as": "B", "error": None},  # B wins
      {"id": "2", "verdict": "TIE", "model_a_shown_as": "A", "error": None},
      {"id": "3", "verdict": None, "model_a_shown_as": "A", "error": "timeout"},
      {"id": "4", "verdict": "B", "model_a_shown_as": "A", "error": None},  # same answers
  ])
  made = pairs_lib.pairs_from_judgments(judgments, a, b)
  assert [(p.prompt, p.chosen, p.rejected) for p in made.pairs] == [
      ("p0", "a0", "b0"), ("p1", "b1", "a1")]
  assert made.report["skipped"]["reasons"] == {"tie": 1, "judge request failed": 1,
                                               "chosen equals rejected": 1}


BAD = [
    ({"prompt": "p", "chosen": "c", "language": "sw"}, "missing field 'rejected'"),
    ({"prompt": "p", "chosen": "  ", "rejected": "r", "language": "sw"}, "empty 'chosen'"),
    ({"prompt": "p", "chosen": "same ", "rejected": "same", "language": "sw"},
     "chosen equals rejected"),
    ({"prompt": "p", "chosen": "c", "rejected": "r", "language": "klingon"},
     "unknown language 'klingon'"),
]


@pytest.mark.parametrize("record,reason", BAD)
def test_bad_records_are_named(record, reason):
  assert pairs_lib.check_record(record).startswith(reason)


@pytest.fixture
def pairs_file(tmp_path):
  rows = [{"prompt": f"Swali {i}?", "chosen": f"Jibu zuri {i}.", "rejected": "Sijui.",
           "language": "sw"} for i in range(6)]
  rows += [{"prompt": f"Question {i}?", "chosen": f"A good answer {i}.", "rejected": "No.",
            "language": "en"} for i in range(4)]
  rows += [record for record, _ in BAD] + [record for record, _ in BAD[2:3]]
  path = tmp_path / "pairs.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n")
  return path


def test_tasks_add_preference_counts_and_skips(pairs_file, tmp_path, capsys):
  manifest = tmp_path / "tasks.json"
  before = pairs_file.read_bytes()
  assert cli.main(["tasks", "add", "prefs", "--kind", "preference", "--path", str(pairs_file),
                   "--manifest", str(manifest)]) == 0
  out = capsys.readouterr().out
  assert "prefs.sw: 6 pairs" in out and "prefs.en: 4 pairs" in out
  assert f"skipped 2 record(s): chosen equals rejected (first at {pairs_file}:13)" in out
  assert "skipped 1 record(s): unknown language 'klingon'" in out
  assert "skipped 1 record(s): unreadable record" in out
  assert pairs_file.read_bytes() == before
  (entry,) = json.loads(manifest.read_text())["tasks"]
  assert entry["kind"] == "preference"
  # An unknown --language: one line, the manifest untouched.
  with pytest.raises(Exception, match="klingon"):
    cli.main(["tasks", "add", "other", "--kind", "preference", "--path", str(pairs_file),
              "--language", "klingon", "--manifest", str(manifest)])
  assert len(json.loads(manifest.read_text())["tasks"]) == 1


def test_pair_task_batches(pairs_file, tmp_path):
  import seqio

  vocabulary = seqio.ByteVocabulary()
  registered = tasks.register_preference_tasks("prefs", pairs_file, vocabulary=vocabulary)
  assert registered.tasks == {"prefs.en": 4, "prefs.sw": 6} and registered.mixture == "prefs"
  assert registered.skipped.total == 6
  config = input_pipeline.DatasetConfig(
      mixture_or_task_name="prefs.sw", task_feature_lengths={"inputs": 8, "targets": 16},
      batch_size=2, shuffle=False, use_packing=False, num_epochs=1)
  batch = next(iter(input_pipeline.BatchIterator(config)))
  assert set(batch) == set(input_pipeline.batch_spec(config))
  first = batch["chosen_target_tokens"][0]
  assert vocabulary.decode(first[first > 1].tolist()) == "Jibu zuri 0."
  assert first[len(b"Jibu zuri 0.")] == 1  # EOS
  np.testing.assert_array_equal(batch["chosen_input_tokens"][:, 1:],
                                batch["chosen_target_tokens"][:, :-1])
  prompt = batch["encoder_input_tokens"][0]
  assert vocabulary.decode(prompt[prompt > 1].tolist()) == "Swali 0?"[:8]  # cut at 8
  np.testing.assert_array_equal(batch["rejected_loss_weights"],
                                batch["rejected_target_tokens"] > 0)
  with pytest.raises(input_pipeline.DataConfigError, match="USE_PACKING=False"):
    input_pipeline.build_dataset(dataclasses.replace(config, use_packing=True), (0, 1))
