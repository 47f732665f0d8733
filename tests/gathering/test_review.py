"""Dataset review (Filtering II) on the seed's Swahili examples, end to end through the CLI.

The seed lists three translations the assessors dropped: a title that should not have been
translated ("Heartbreak Hotel", whose round trip is perfect) and two wrong word senses.
The round-trip pre-screen must rank the title as fine; the assessors' votes, weighed by
the skill measured in qualification (crowd-kit), must drop all three and keep the good
examples, with one skilled assessor outvoting two lenient ones on the title.
"""

import csv
import json

import pytest
import seqio

from aya_t5x import cli
from aya_t5x.data import manifest as manifest_lib
from aya_t5x.gathering import crowd_files, qualification, review, roundtrip
from tests.data.fixtures import write_jsonl

# (English instruction, answer) -> Swahili -> English again.
EXAMPLES = [
    ("Heartbreak Hotel", "A song by Elvis Presley.",
     "Hoteli ya Moyo", "Wimbo wa Elvis Presley.",
     "Heartbreak Hotel", "A song by Elvis Presley."),
    ("where do aliens come from", "Nobody knows.",
     "wageni wanatoka wapi", "Hakuna anayejua.",
     "where do guests come from", "Nobody knows."),
    ("Because whisky is Manly.", "That is a joke.",
     "Kwa sababu whisky ni Mwanaume", "Hiyo ni utani.",
     "Because whiskey is a Man", "That is a joke."),
    ("The children read books.", "They like stories.",
     "Watoto wanasoma vitabu.", "Wanapenda hadithi.",
     "The children are reading books.", "They like stories."),
    ("Water boils at one hundred degrees.", "At sea level.",
     "Maji huchemka kwa nyuzi mia moja.", "Katika usawa wa bahari.",
     "Water boils at a hundred degrees.", "At sea level."),
    ("The market opens early.", "Before sunrise.",
     "Soko hufunguliwa mapema.", "Kabla ya jua kuchomoza.",
     "The market opens early.", "Before the sun rises."),
    ("Rain is good for farms.", "Crops need water.",
     "Mvua ni nzuri kwa mashamba.", "Mazao yanahitaji maji.",
     "Rain is good for the fields.", "Crops need water."),
    ("The teacher helps the students.", "Every day.",
     "Mwalimu huwasaidia wanafunzi.", "Kila siku.",
     "The teacher helps the students.", "Every day."),
]
BAD = {"Heartbreak Hotel", "where do aliens come from", "Because whisky is Manly."}
TITLE = "title: should not be translated"
SENSE = "wrong word sense"


def _dictionary():
  en_sw, sw_en = {}, {}
  for en_q, en_a, sw_q, sw_a, back_q, back_a in EXAMPLES:
    en_sw.update({en_q: sw_q, en_a: sw_a})
    sw_en.update({sw_q: back_q, sw_a: back_a})
  return {"en-sw": en_sw, "sw-en": sw_en}


# Qualification: 14 good and 6 bad golden translations. A is right on all; B and C are
# lenient (they pass 2 of the 6 bad ones as good); D guesses.
def _golden():
  return {f"q{i:02d}": ("bad" if i > 14 else "good") for i in range(1, 21)}


def _qualification_answers(golden):
  rows = []
  for item, truth in golden.items():
    number = int(item[1:])
    rows.append({"assessor": "A", "item_id": item, "label": truth})
    for lenient in ("B", "C"):
      rows.append({"assessor": lenient, "item_id": item,
                   "label": "good" if number in (15, 16, 17, 18) else truth})
    rows.append({"assessor": "D", "item_id": item, "label": "good" if number % 2 else "bad"})
  return rows


def _votes(items):
  """Review votes as Toloka's results TSV; D (not qualified) votes too, once."""
  by_source = {item["original_inputs"]: item["item_id"] for item in items}
  votes = []
  for en_q, *_ in EXAMPLES:
    item = by_source[en_q]
    if en_q == "Heartbreak Hotel":  # the round trip fools the lenient pair
      votes += [("A", item, "BAD", TITLE), ("B", item, "OK", ""), ("C", item, "OK", "")]
    elif en_q == "where do aliens come from":
      votes += [("A", item, "BAD", SENSE), ("B", item, "BAD", SENSE), ("C", item, "OK", "")]
    elif en_q == "Because whisky is Manly.":
      votes += [("A", item, "BAD", SENSE), ("B", item, "OK", ""), ("C", item, "BAD", "")]
    elif en_q == "The market opens early.":  # one false alarm, outvoted
      votes += [("A", item, "OK", ""), ("B", item, "BAD", "grammar"), ("C", item, "OK", "")]
    else:
      votes += [(w, item, "OK", "") for w in "ABC"]
  votes.append(("D", by_source["The children read books."], "BAD", "no idea"))
  return votes


def _write_toloka_votes(path, votes):
  with path.open("w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, delimiter="\t")
    writer.writerow(["INPUT:item_id", "OUTPUT:label", "OUTPUT:reason", "ASSIGNMENT:worker_id",
                     "ASSIGNMENT:assignment_id", "ASSIGNMENT:status"])
    for n, (worker, item, label, reason) in enumerate(votes):
      writer.writerow([item, label, reason, worker, f"a{n}", "ACCEPTED"])
  return path


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
  """translate -> retranslate -> review task -> qualification, through the CLI."""
  root = tmp_path_factory.mktemp("swahili")
  (root / "d.json").write_text(json.dumps(_dictionary()))
  write_jsonl(root / "dolly.jsonl", [{"inputs": q, "targets": a} for q, a, *_ in EXAMPLES])
  backend = ["--backend", "dictionary", "--dictionary", str(root / "d.json")]
  assert cli.main(["translate", "--input", str(root / "dolly.jsonl"), "--target_languages",
                   "sw", "--output", str(root / "sw"), *backend]) == 0
  assert cli.main(["retranslate", "--input", str(root / "sw"), "--output", str(root / "back"),
                   *backend]) == 0
  assert cli.main(["review", "build-task", "--input", str(root / "back"), "--output",
                   str(root / "task")]) == 0
  golden = _golden()
  write_jsonl(root / "golden.jsonl", [{"item_id": k, "label": v} for k, v in golden.items()])
  write_jsonl(root / "answers.jsonl", _qualification_answers(golden))
  assert cli.main(["assessors", "qualify", "--answers", str(root / "answers.jsonl"),
                   "--golden", str(root / "golden.jsonl"), "--min_accuracy", "0.55",
                   "--output", str(root / "qual")]) == 0
  items = [json.loads(line) for line in (root / "task" / "review.jsonl").read_text().splitlines()]
  return root, items


def test_the_round_trip_prescreen_ranks_the_title_as_fine(pipeline):
  root, items = pipeline
  assert [i["original_inputs"] for i in items][-1] in ("Heartbreak Hotel",
                                                      "The teacher helps the students.")
  scored = {r["original"]["inputs"]: r["roundtrip"]["chrf"]
            for r in roundtrip.read_scored(root / "back" / "data")}
  assert scored["Heartbreak Hotel"] == pytest.approx(100.0)  # a perfect round trip...
  good = [scored[q] for q, *_ in EXAMPLES if q not in BAD]
  assert scored["Heartbreak Hotel"] >= max(good)             # ...ranked with the best
  assert items[0]["original_inputs"] in BAD                  # a wrong sense comes first
  assert set(items[0]) == {"item_id", "language", "original_inputs", "translation_inputs",
                           "retranslation_inputs", "original_targets", "translation_targets",
                           "retranslation_targets"}  # no scores shown to assessors
  with (root / "task" / "review_toloka.tsv").open(newline="") as f:
    assert next(csv.reader(f, delimiter="\t"))[:3] == ["INPUT:item_id", "INPUT:language",
                                                       "INPUT:original_inputs"]


def test_qualification_selects_the_skilled_and_the_lenient_not_the_guesser(pipeline):
  root, _ = pipeline
  skills = qualification.read_qualification(root / "qual")
  assert {a: s.selected for a, s in skills.items()} == {"A": True, "B": True, "C": True,
                                                         "D": False}
  assert (skills["A"].correct, skills["B"].correct, skills["D"].correct) == (20, 16, 10)
  assert skills["B"].recall("bad") == pytest.approx(2 / 6)


def test_skill_weighted_votes_drop_the_three_seed_failures_and_keep_the_rest(pipeline, tmp_path,
                                                                            small_vocabulary,
                                                                            capsys):
  root, items = pipeline
  votes = _write_toloka_votes(tmp_path / "votes.tsv", _votes(items))
  args = ["review", "aggregate", "--votes", str(votes), "--qualification", str(root / "qual"),
          "--data", str(root / "back"), "--output", str(tmp_path / "out")]
  assert cli.main(args) == 2  # D did not pass qualification: named with file and line
  assert f"{votes}:26: assessor 'D' did not pass the qualification" in capsys.readouterr().err
  manifest = tmp_path / "tasks.json"
  assert cli.main([*args, "--tolerant", "--register", "sw_reviewed", "--manifest",
                   str(manifest)]) == 0
  out = tmp_path / "out"
  kept = [json.loads(x) for x in (out / "data" / "reviewed.jsonl").read_text().splitlines()]
  dropped = [json.loads(x) for x in (out / "dropped.jsonl").read_text().splitlines()]
  assert {r["original"]["inputs"] for r in dropped} == BAD
  assert {r["original"]["inputs"] for r in kept} == {q for q, *_ in EXAMPLES} - BAD
  reasons = {r["original"]["inputs"]: r["review"]["reason"] for r in dropped}
  assert reasons == {"Heartbreak Hotel": TITLE, "where do aliens come from": SENSE,
                     "Because whisky is Manly.": SENSE}
  report = json.loads((out / "review_report.json").read_text())
  assert report["votes_skipped"] == {"unknown_assessor": 1}
  hotel = next(r for r in report["dropped_examples"] if r["original"].startswith("Heartbreak"))
  assert hotel["prescreen_rank"] >= len(EXAMPLES) - 1 and hotel["chrf"] == pytest.approx(100)
  market = next(r["id"] for r in kept if r["original"]["inputs"] == "The market opens early.")
  assert sorted(report["changed_by_skill"]) == sorted([hotel["id"]])  # majority kept the title
  assert market not in report["changed_by_skill"]
  markdown = (out / "review_report.md").read_text()
  assert "## Why examples were dropped" in markdown and TITLE in markdown
  # The kept examples are a SeqIO task in one step.
  manifest_lib.load_manifest(str(manifest), small_vocabulary)
  task = seqio.get_mixture_or_task("sw_reviewed.sw")
  inputs = {small_vocabulary.decode(ex["inputs"].tolist())
            for ex in task.get_dataset(None, split="train", shuffle=False).as_numpy_iterator()}
  assert inputs == {sw_q for en_q, _, sw_q, *_ in EXAMPLES if en_q not in BAD}


@pytest.mark.parametrize("method", ["dawid_skene", "glad", "weighted_majority"])
def test_every_skill_weighted_method_agrees_and_plain_majority_does_not(pipeline, tmp_path,
                                                                       method):
  root, items = pipeline
  votes = _write_toloka_votes(tmp_path / "votes.tsv", [v for v in _votes(items) if v[0] != "D"])
  skills = qualification.read_qualification(root / "qual")
  answers, _ = crowd_files.read_answers(votes)
  source = {i["item_id"]: i["original_inputs"] for i in items}
  verdicts = review.aggregate(answers, skills, method=method)
  assert {source[i] for i, v in verdicts.items() if not v.keep} == BAD
  hotel = next(v for i, v in verdicts.items() if source[i] == "Heartbreak Hotel")
  assert hotel.p_good < 0.5 and hotel.votes == {"A": "bad", "B": "good", "C": "good"}
  majority = review.aggregate(answers, skills, method="majority")
  assert {source[i] for i, v in majority.items() if not v.keep} == BAD - {"Heartbreak Hotel"}
  mmsr = review.aggregate(answers, skills, method="mmsr")
  assert set(mmsr) == set(verdicts) and all(v.p_good is None for v in mmsr.values())


def test_review_inputs_are_checked(pipeline):
  root, items = pipeline
  skills = qualification.read_qualification(root / "qual")
  answer = crowd_files.Answer(assessor="Z", item=items[0]["item_id"], label="good")
  with pytest.raises(ValueError, match="without a qualification score: Z"):
    review.aggregate([answer], skills)
  with pytest.raises(ValueError, match="choose from dawid_skene"):
    review.aggregate([answer], skills, method="vote")
  records = roundtrip.read_scored(root / "back" / "data")
  kept, dropped = review.apply_verdicts(records, {}, unreviewed="keep")
  assert len(kept) == len(EXAMPLES) and kept[0]["review"] == {"status": "unreviewed"}
  kept, dropped = review.apply_verdicts(records, {})
  assert not kept and dropped[0]["review"]["reason"] == "not reviewed"
