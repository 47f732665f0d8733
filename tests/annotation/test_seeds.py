"""`aya-t5x annotate import`: existing pairs into the re-annotation queues, bad records named."""

import json

import pytest

from aya_t5x import cli
from aya_t5x.annotation import forms, seeds
from aya_t5x.annotation.store import Store


def _write(path, lines):
  path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  return path


@pytest.fixture
def pairs(tmp_path):
  good = [json.dumps({"q": f"Swali {i}?", "a": f"Jibu {i}.", "lang": lang})
          for i, lang in enumerate(["sw", "swh", "Yoruba", "sw"])]
  return _write(tmp_path / "pairs.jsonl", [
      good[0], good[1], "{broken", json.dumps({"q": "Swali?", "a": " ", "lang": "sw"}),
      good[2], json.dumps({"q": "x", "a": "y", "lang": "Klingon"}),
      json.dumps({"q": "x" * 101, "a": "y", "lang": "sw"}), json.dumps({"a": "y", "lang": "sw"}),
      good[3]])


def test_strict_import_names_the_line_and_adds_nothing(tmp_path, pairs):
  with Store(tmp_path / "a.db") as store:
    with pytest.raises(ValueError, match=r"pairs.jsonl:3: broken JSON"):
      seeds.import_seeds(store, pairs, language_key="lang", inputs_key="q", targets_key="a")
    assert store.items() == []
    with pytest.raises(ValueError, match="one of the two"):
      seeds.import_seeds(store, pairs)


def test_tolerant_import_counts_what_it_skips(tmp_path, pairs):
  with Store(tmp_path / "a.db") as store:
    report = seeds.import_seeds(store, pairs, language_key="lang", inputs_key="q",
                                targets_key="a", tolerant=True,
                                limits=forms.Limits(max_field_chars=100))
    assert report.added == {"sw": 3, "yo": 1} and report.duplicates == 0
    reasons = {where.rsplit(":", 1)[1]: why for where, why in report.skipped.items()}
    assert set(reasons) == {"3", "4", "6", "7", "8"}
    assert reasons["4"].startswith("field 'a': the completion is empty")
    assert "Klingon" in reasons["6"] and "field 'lang'" in reasons["6"]
    assert "101 characters; the limit is 100" in reasons["7"]
    assert "field 'q': missing" in reasons["8"]
    queue = store.next_to_reannotate("amina", "sw")
    assert (queue.kind, queue.inputs, queue.source) == ("seed", "Swali 0?", f"{pairs}:1")
    again = seeds.import_seeds(store, pairs, language_key="lang", inputs_key="q",
                               targets_key="a", tolerant=True,
                               limits=forms.Limits(max_field_chars=100))
    assert again.added == {} and again.duplicates == 4


def test_import_command(tmp_path, capsys):
  data = _write(tmp_path / "p.jsonl", [json.dumps({"inputs": "Habari?", "targets": "Nzuri."})])
  db = tmp_path / "a.db"
  assert cli.main(["annotate", "import", str(data), "--db", str(db), "--language", "sw"]) == 0
  assert "added 1 pair(s) to the re-annotation queues (sw 1)" in capsys.readouterr().out
  assert cli.main(["annotate", "import", str(tmp_path / "nope.jsonl"), "--db", str(db),
                   "--language", "sw"]) == 2
  assert "no such file" in capsys.readouterr().err
