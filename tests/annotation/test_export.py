"""Export to the Aya Dataset schema: inclusion rules, quality signals, report, registration."""

import json

import pytest

from aya_t5x import cli
from aya_t5x.annotation import export
from aya_t5x.annotation.store import Store
from aya_t5x.data import sources
from aya_t5x.tasks import AYA_DATASET


@pytest.fixture
def db(tmp_path):
  """Swahili: 48 originals and 2 re-annotations big enough (exactly 50); Yoruba: 49.

  Re-annotations of four seeds by 'chema' change 2+2, 3+2, 3+3 and 0+0 characters.
  Votes and ratings are chosen so that every signal has a hand-computed value.
  """
  path = tmp_path / "annotations.db"
  with Store(path) as store:
    a = [store.add_original(user_id="amina", language="sw", inputs=f"Swali la Amina {i}?",
                            targets=f"Jibu {i}.") for i in range(30)]
    b = [store.add_original(user_id="baraka", language="sw", inputs=f"Baraka {i}",
                            targets="ndiyo") for i in range(18)]
    d = [store.add_original(user_id="dayo", language="yo", inputs=f"Ìbéèrè {i}",
                            targets="Ìdáhùn") for i in range(49)]
    store.add_seeds([("sw", f"swali {i}", "jibu", f"seeds.jsonl:{i + 1}") for i in range(4)])
    seeds = [i for i in store.items() if i.kind == "seed"]
    edits = [store.add_reannotation(user_id="chema", language="sw", parent_id=seed.id,
                                    inputs=seed.inputs + extra_in, targets="jibu" + extra_out)
             for seed, extra_in, extra_out in zip(
                 seeds, ("xx", "xxx", "xxx", ""), ("yy", "yy", "yyy", ""), strict=True)]
    assert [e.distance for e in edits] == [4, 5, 6, 0]

    def votes(item, ups, downs, prefix="v"):
      for n in range(ups + downs):
        store.vote(user_id=f"{prefix}{n}", language=item.language, item_id=item.id,
                   up=n < ups)

    votes(a[0], 10, 2)
    votes(b[0], 3, 5)
    votes(edits[1], 1, 0)
    votes(edits[0], 0, 1)  # a dropped re-annotation: counts nowhere
    votes(d[0], 4, 1, prefix="w")
    for rater, item, rating in (("amina", edits[1], 5), ("baraka", edits[1], 4),
                                ("amina", edits[2], 5), ("amina", edits[0], 1)):
      store.rate(user_id=rater, language="sw", item_id=item.id, rating=rating)
  return path


def test_inclusion_rules_and_schema(db):
  with Store(db) as store:
    result = export.build_export(store)
  records = result.records
  assert len(records) == 50
  assert all(tuple(r) == export.FIELDS for r in records)
  assert {(r["language"], r["language_code"]) for r in records} == {("Swahili", "swa")}
  types = [r["annotation_type"] for r in records]
  assert types.count("original-annotations") == 48 and types.count("re-annotations") == 2
  assert {r["inputs"] for r in records if r["user_id"] == "chema"} == {"swali 1xxx",
                                                                       "swali 2xxx"}
  report = result.report
  assert report["totals"] == {"originals": 97, "reannotations": 4, "reannotations_dropped": 2,
                              "languages_dropped": 1, "records_written": 50}
  assert [(d["prompt_distance"], d["completion_distance"])
          for d in report["dropped_reannotations"]] == [(2, 2), (0, 0)]
  assert report["dropped_languages"] == [{"language": "yo", "name": "Yoruba",
                                          "contributions": 49}]
  sw, yo = report["languages"]
  assert (sw["contributions"], sw["included"], sw["votes"]) == (50, True, 21)
  assert sw["approval_ratio"] == pytest.approx(14 / 21)
  assert (yo["votes"], yo["approval_ratio"]) == (5, None)  # under 20 votes: not reported


def test_contributor_scores(db):
  with Store(db) as store:
    rows = export.build_export(store).report["contributors"]
  scores = {r["user_id"]: r["score"] for r in rows}
  # max(0, mean_rating - 3) * edited_count + approval_ratio * original_count
  assert scores == pytest.approx({"dayo": 0.8 * 49, "amina": 10 / 12 * 30,
                                  "baraka": 3 / 8 * 18, "chema": (14 / 3 - 3) * 2})
  assert [r["user_id"] for r in rows] == ["dayo", "amina", "baraka", "chema"]
  chema = rows[-1]
  assert (chema["edited_count"], chema["ratings_received"], chema["votes_received"]) == (2, 3, 1)
  assert export.contributor_score(mean_rating=2.0, edited_count=5, approval_ratio=None,
                                  original_count=3) == 0.0


def test_length_signal(db):
  with Store(db) as store:
    signal = export.build_export(store).report["length_vs_approval"]
  assert signal["approved"]["count"] == 3  # amina's, chema's and dayo's voted items
  assert signal["disapproved"] == {"count": 1, "mean_chars": len("Baraka 0") + len("ndiyo")}


def test_export_command_writes_files_the_aya_source_reads(db, tmp_path, capsys):
  output = tmp_path / "out" / "aya_dataset.jsonl"
  assert cli.main(["annotate", "export", "--db", str(db), "--output", str(output)]) == 0
  lines = output.read_text(encoding="utf-8").splitlines()
  assert len(lines) == 50
  report = json.loads((tmp_path / "out" / "aya_dataset.report.json").read_text())
  assert report["totals"]["records_written"] == 50
  markdown = (tmp_path / "out" / "aya_dataset.report.md").read_text()
  assert "| Yoruba (yo) | 49 | 0 | 0 | 49 | no |" in markdown
  assert "| chema | sw | 0 | 2 | 1 | 1.00 | 3 | 4.67 | 3.33 |" in markdown
  # The published Aya Dataset source reads the export as it reads the real dataset.
  index = sources.scan(AYA_DATASET, str(output))
  assert index.count(split="train") == 50 and index.languages("train") == ["sw"]
  assert "wrote" in capsys.readouterr().out


def test_export_registers_seqio_tasks_ready_for_a_mixture(db, tmp_path, capsys):
  import seqio

  from aya_t5x.data import manifest as manifest_lib

  output, manifest = tmp_path / "aya_ours.jsonl", tmp_path / "tasks.json"
  args = ["annotate", "export", "--db", str(db), "--output", str(output),
          "--min_language_contributions", "49", "--register", "aya_ours",
          "--manifest", str(manifest)]
  assert cli.main(args) == 0
  assert cli.main(args) == 0  # exporting again refreshes the same task
  assert "SeqIO task(s) aya_ours.sw, aya_ours.yo and mixture aya_ours" in \
      capsys.readouterr().out
  (entry,) = manifest_lib.read(manifest).tasks
  assert entry == {"name": "aya_ours", "splits": {"train": "aya_ours.jsonl"},
                   "language_key": "language_code", "inputs_key": "inputs",
                   "targets_key": "targets", "dataset": "aya_ours"}
  vocabulary = seqio.ByteVocabulary()
  manifest_lib.load_manifest(str(manifest), vocabulary)
  mixture = seqio.get_mixture_or_task("aya_ours")
  assert sorted(t.name for t in mixture.tasks) == ["aya_ours.sw", "aya_ours.yo"]
  assert mixture.get_rate(seqio.get_mixture_or_task("aya_ours.yo")) == pytest.approx(49 / 99)
  first = next(seqio.get_mixture_or_task("aya_ours.sw").get_dataset(
      sequence_length=None, split="train", shuffle=False).as_numpy_iterator())
  assert vocabulary.decode(first["inputs"].tolist()) == "Swali la Amina 0?"
  other = tmp_path / "other.jsonl"  # the name is taken by another file: needs --replace
  assert cli.main(["annotate", "export", "--db", str(db), "--output", str(other),
                   "--register", "aya_ours", "--manifest", str(manifest)]) == 2  # exists


def test_nothing_to_register(db, tmp_path, capsys):
  code = cli.main(["annotate", "export", "--db", str(db), "--output",
                   str(tmp_path / "x.jsonl"), "--min_language_contributions", "51",
                   "--register", "x", "--manifest", str(tmp_path / "m.json")])
  assert code == 2 and "nothing to register" in capsys.readouterr().err
  assert not (tmp_path / "m.json").exists()
