"""Assessor qualification (Filtering I): the task, answers in every format, Wilson intervals,
selection, the report, and bad answer files named by file and line."""

import csv
import json

import pytest
from scipy.stats import binomtest

from aya_t5x import cli
from aya_t5x.gathering import crowd_files, qualification
from tests.data.fixtures import write_jsonl


@pytest.mark.parametrize("k,n", [(0, 1), (7, 10), (48, 50), (5, 5), (13, 40)])
def test_wilson_interval_equals_scipy(k, n):
  reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
  assert qualification.wilson_interval(k, n) == (pytest.approx(reference.low),
                                                 pytest.approx(reference.high))
  wide = binomtest(k, n).proportion_ci(confidence_level=0.99, method="wilson")
  assert qualification.wilson_interval(k, n, 0.99)[0] == pytest.approx(wide.low)


def _sets():
  correct = [(f"good.jsonl:{i}", {"source": f"good {i}", "translation": f"nzuri {i}"})
             for i in range(1, 7)]
  incorrect = [(f"bad.jsonl:{i}", {"source": f"bad {i}", "translation": f"mbaya {i}"})
               for i in range(1, 5)]
  return correct, incorrect


def test_task_is_shuffled_with_neutral_ids_and_an_answer_key():
  items, golden = qualification.build_task(*_sets(), seed=3)
  assert [i["item_id"] for i in items] == [f"q{n:02d}" for n in range(1, 11)]
  assert sorted(golden.values()) == ["bad"] * 4 + ["good"] * 6
  for item in items:  # each item carries its own pair, and the key says which set it came from
    assert golden[item["item_id"]] == ("good" if item["translation"].startswith("nzuri")
                                       else "bad")
  assert [i["source"] for i in items] != sorted(i["source"] for i in items)  # shuffled
  assert qualification.build_task(*_sets(), seed=3) == (items, golden)
  with pytest.raises(ValueError, match=r"good.jsonl:1: field 'translation' is missing"):
    qualification.build_task([("good.jsonl:1", {"source": "x"})], _sets()[1])


# Four assessors' answers on ten golden items: w1 all right, w2 8 of 10, w3 5 of 10.
GOLDEN = {f"q{i:02d}": ("bad" if i % 3 == 0 else "good") for i in range(1, 11)}
FLIP = {"w1": set(), "w2": {"q01", "q03"}, "w3": {"q01", "q02", "q03", "q04", "q05"}}


def _answers():
  rows = []
  for worker, wrong in FLIP.items():
    for item, truth in GOLDEN.items():
      label = truth if item not in wrong else ("good" if truth == "bad" else "bad")
      rows.append((worker, item, label))
  return rows


def _write_toloka(path, rows, golden=GOLDEN):
  header = ["INPUT:item_id", "INPUT:source", "INPUT:translation", "OUTPUT:label",
            "GOLDEN:label", "HINT:text", "ASSIGNMENT:link", "ASSIGNMENT:assignment_id",
            "ASSIGNMENT:worker_id", "ASSIGNMENT:status", "ASSIGNMENT:started"]
  with path.open("w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, delimiter="\t")
    writer.writerow(header)
    for n, (worker, item, label) in enumerate(rows):
      writer.writerow([item, "source text", "tafsiri", label.upper() if n % 2 else label,
                       golden[item], "", "https://platform.toloka.ai/task/1", f"a{n}", worker,
                       "APPROVED", "2024-01-01T10:00:00"])
    writer.writerow(["q01", "s", "t", "bad", "", "", "", "a99", "w9", "REJECTED", ""])
  return path


def _write_mturk(path, rows):
  header = ["HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime",
            "MaxAssignments", "RequesterAnnotation", "AssignmentDurationInSeconds",
            "AutoApprovalDelayInSeconds", "Expiration", "NumberOfSimilarHITs",
            "LifetimeInSeconds", "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime",
            "SubmitTime", "AutoApprovalTime", "ApprovalTime", "RejectionTime",
            "RequesterFeedback", "WorkTimeInSeconds", "LifetimeApprovalRate",
            "Last30DaysApprovalRate", "Last7DaysApprovalRate", "Input.item_id", "Input.source",
            "Input.translation", "Answer.label", "Approve", "Reject"]
  with path.open("w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=header)
    writer.writeheader()
    for n, (worker, item, label) in enumerate(rows + [("w9", "q01", "bad")]):
      writer.writerow({h: "" for h in header} | {
          "HITId": f"H{item}", "AssignmentId": f"A{n}", "WorkerId": worker,
          "AssignmentStatus": "Rejected" if worker == "w9" else "Submitted",
          "Input.item_id": item, "Input.source": "source, with a comma",
          "Input.translation": "tafsiri", "Answer.label": label})
  return path


def _write_plain(path, rows, delimiter):
  with path.open("w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, delimiter=delimiter)
    writer.writerow(["worker_id", "item_id", "answer"])
    writer.writerows(rows)
  return path


@pytest.mark.parametrize("kind", ["jsonl", "csv", "tsv", "toloka", "mturk"])
def test_every_answer_format_reads_the_same_answers(tmp_path, kind):
  rows = _answers()
  path = {"jsonl": lambda: write_jsonl(tmp_path / "a.jsonl", [
              {"assessor": w, "item_id": i, "label": lab} for w, i, lab in rows]),
          "csv": lambda: _write_plain(tmp_path / "a.csv", rows, ","),
          "tsv": lambda: _write_plain(tmp_path / "a.tsv", rows, "\t"),
          "toloka": lambda: _write_toloka(tmp_path / "results.tsv", rows),
          "mturk": lambda: _write_mturk(tmp_path / "Batch_1_batch_results.csv", rows)}[kind]()
  assert crowd_files.detect_format(path) == kind
  answers, counts = crowd_files.read_answers(path, known_items=GOLDEN)
  assert [(a.assessor, a.item, a.label) for a in answers] == rows
  assert counts.skipped == ({"rejected": 1} if kind in ("toloka", "mturk") else {})
  scores = {s.assessor: s for s in qualification.score_assessors(answers, GOLDEN)}
  assert {w: (s.correct, s.answers) for w, s in scores.items()} == \
      {"w1": (10, 10), "w2": (8, 10), "w3": (5, 10)}
  assert scores["w2"].confusion == {"good": {"good": 6, "bad": 1}, "bad": {"good": 1, "bad": 2}}
  assert scores["w2"].recall("bad") == pytest.approx(2 / 3)


def test_bad_answer_rows_are_named_by_file_and_line_or_counted(tmp_path):
  path = tmp_path / "a.csv"
  path.write_text("worker_id,item_id,label\n"
                  "w1,q01,good\n"
                  "w1,q77,good\n"          # not in the golden set
                  "stranger,q02,bad\n"      # not on the roster
                  "w1,q03,maybe\n"          # not a label
                  ",q04,good\n"             # no assessor
                  "w1,q05,good,extra\n"     # more cells than the header
                  "w1,q01,bad\n")           # a second answer to q01
  roster = lambda a: None if a.startswith("w") else "is not in roster.txt"
  read = lambda **kw: crowd_files.read_answers(path, known_items=GOLDEN,
                                               items_name="the golden set g.jsonl",
                                               known_assessors=roster, **kw)
  with pytest.raises(ValueError, match=r"a.csv:3: item 'q77' is not in the golden set g.jsonl"):
    read()
  answers, counts = read(tolerant=True)
  assert [(a.assessor, a.item) for a in answers] == [("w1", "q01")]
  assert counts.skipped == {"unknown_item": 1, "unknown_assessor": 1, "malformed": 3,
                            "duplicate": 1}
  assert counts.examples[1] == f"{path}:4: assessor 'stranger' is not in roster.txt"
  assert any(":5: label 'maybe' is neither good nor bad" in e for e in counts.examples)
  broken = tmp_path / "b.jsonl"
  broken.write_text('{"assessor": "w1", "item_id": "q01", "label": "yes"}\n{oops\n')
  with pytest.raises(ValueError, match=r"b.jsonl:2: broken JSON"):
    crowd_files.read_answers(broken)


def test_selection_by_lower_bound_prefers_many_answers_over_few_lucky_ones():
  def score(name, k, n):
    low, high = qualification.wilson_interval(k, n)
    return qualification.AssessorScore(assessor=name, answers=n, correct=k, low=low, high=high,
                                       confusion={})

  scores = [score("lucky", 5, 5), score("steady", 48, 50), score("weak", 30, 50)]
  by_low = qualification.select(scores, top_k=1)
  assert [s.assessor for s in by_low if s.selected] == ["steady"]
  by_accuracy = qualification.select(scores, top_k=1, by="accuracy")
  assert [s.assessor for s in by_accuracy if s.selected] == ["lucky"]
  threshold = qualification.select(scores, min_accuracy=0.5)  # lows: 0.57, 0.87, 0.46
  assert [s.assessor for s in threshold if s.selected] == ["lucky", "steady"]
  assert [s.assessor for s in qualification.select(scores, min_accuracy=0.5, min_answers=10)
          if s.selected] == ["steady"]
  with pytest.raises(ValueError, match="--min_accuracy"):
    qualification.select(scores)


def test_cli_builds_the_task_and_qualifies_from_a_toloka_export(tmp_path, capsys):
  write_jsonl(tmp_path / "good.jsonl", [{"en": f"good {i}", "sw": f"nzuri {i}"}
                                        for i in range(6)])
  write_jsonl(tmp_path / "bad.jsonl", [{"en": f"bad {i}", "sw": f"mbaya {i}"} for i in range(4)])
  out = tmp_path / "qual"
  assert cli.main(["assessors", "build-task", "--correct", str(tmp_path / "good.jsonl"),
                   "--incorrect", str(tmp_path / "bad.jsonl"), "--source_key", "en",
                   "--translation_key", "sw", "--output", str(out)]) == 0
  with (out / "qualification_toloka.tsv").open(newline="") as f:
    uploaded = list(csv.DictReader(f, delimiter="\t"))
  assert list(uploaded[0]) == ["INPUT:item_id", "INPUT:source", "INPUT:translation",
                               "GOLDEN:label"]
  golden = qualification.read_golden(out / "golden.jsonl")
  assert {r["INPUT:item_id"]: r["GOLDEN:label"] for r in uploaded} == golden
  # Answers to the real task: w1 all right, w2 and w3 wrong on the items FLIP names.
  rows = [(w, i, (lab if i not in FLIP[w] else {"good": "bad", "bad": "good"}[lab]))
          for w in FLIP for i, lab in golden.items()]
  _write_toloka(tmp_path / "results.tsv", rows, golden)
  assert cli.main(["assessors", "qualify", "--answers", str(tmp_path / "results.tsv"),
                   "--golden", str(out / "golden.jsonl"), "--min_accuracy", "0.45",
                   "--output", str(out)]) == 0
  assert "selected 2 of 3 assessors" in capsys.readouterr().out
  assert (out / "selected_assessors.txt").read_text() == "w1\nw2\n"
  report = json.loads((out / "qualification_report.json").read_text())
  assert report["answers_skipped"] == {"rejected": 1} and report["selected"] == ["w1", "w2"]
  assert "| w3 | 10 | 0.500 |" in (out / "qualification_report.md").read_text()
  skills = qualification.read_qualification(out)
  assert skills["w2"].accuracy == 0.8 and skills["w2"].selected and not skills["w3"].selected
  (tmp_path / "roster.txt").write_text("w1\nw2\n")
  code = cli.main(["assessors", "qualify", "--answers", str(tmp_path / "results.tsv"),
                   "--golden", str(out / "golden.jsonl"), "--top_k", "1", "--assessors",
                   str(tmp_path / "roster.txt"), "--output", str(out)])
  assert code == 2
  assert "results.tsv:" in capsys.readouterr().err
