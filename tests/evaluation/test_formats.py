"""Readers of the published formats: real XCOPA files, fixtures for the rest, clear errors."""

import json

import pytest

from aya_t5x.evaluation import formats
from tests.evaluation import fixtures


@fixtures.needs_real_xcopa
def test_reads_the_real_xcopa_validation_files():
  records = formats.read_xcopa(fixtures.XCOPA_DIR / "val.et.jsonl")
  assert len(records) == 100
  assert records[0] == {"premise": "Mees keeras kraani lahti.",
                        "choice1": "Tualett täitus veega.", "choice2": "Tilast voolas vett.",
                        "question": "effect", "label": 1}
  for language in ("qu", "ta", "th", "zh"):
    records = formats.read_xcopa(fixtures.XCOPA_DIR / f"val.{language}.jsonl")
    assert len(records) == 100 and {r["label"] for r in records} == {0, 1}
  assert records[2] == {"premise": "女人退休了。", "choice1": "她领了退休金。",
                        "choice2": "她还清了抵押贷款。", "question": "effect", "label": 0}


@fixtures.needs_real_xcopa
@pytest.mark.parametrize("line, field", [
    ('{"premise": "p", "choice1": "a", "choice2": "b", "question": "why", "label": 0}',
     "'question'"),
    ('{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 2}',
     "'label'"),
    ('{"premise": "p", "choice1": "a", "question": "cause", "label": 0}', "'choice2'"),
    ('{"premise": "", "choice1": "a", "choice2": "b", "question": "cause", "label": 0}',
     "'premise' is empty"),
    ('{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": true}',
     "'label'"),
    ("{not json", "not valid JSON"),
])
def test_a_bad_xcopa_record_names_file_line_and_field(tmp_path, line, field):
  good = (fixtures.XCOPA_DIR / "val.sw.jsonl").read_text(encoding="utf-8").splitlines()[0]
  path = tmp_path / "val.sw.jsonl"
  path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
  with pytest.raises(formats.FormatError) as error:
    formats.read_xcopa(path)
  assert f"{path}:3" in str(error.value) and field in str(error.value)
  assert "premise" in str(error.value)  # the expected format is spelled out


def test_a_missing_file_names_the_path_and_the_format(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"nowhere\.jsonl not found; expected JSONL"):
    formats.read_xcopa(tmp_path / "nowhere.jsonl")


@pytest.mark.parametrize("jsonl", [False, True], ids=["tsv", "jsonl"])
def test_xnli_per_language_from_tsv_and_jsonl(tmp_path, jsonl):
  path = fixtures.write_xnli(tmp_path, jsonl=jsonl)
  sw = formats.read_xnli(path, "sw")
  assert sw == [{"premise": "Mtoto analala.", "hypothesis": "Mtoto anakimbia.", "label": 2},
                {"premise": "Mama anapika chakula.", "hypothesis": "Mama anapika wali.",
                 "label": 1}]
  # Bare double quotes inside a TSV field are text, not CSV quoting.
  assert formats.read_xnli(path, "en")[0]["premise"] == 'He said "yes" to the plan.'


def test_xnli_bad_label_and_bad_header(tmp_path):
  path = fixtures.write_xnli(tmp_path)
  text = path.read_text(encoding="utf-8").replace("contradiction", "contradicts")
  path.write_text(text, encoding="utf-8")
  with pytest.raises(formats.FormatError, match=rf"{path}:3: field 'gold_label' is "
                     r"'contradicts'"):
    formats.read_xnli(path, "sw")
  path.write_text("lang\tlabel\nsw\tneutral\n", encoding="utf-8")
  with pytest.raises(formats.FormatError, match=r":1: header lacks column\(s\) \['language'"):
    formats.read_xnli(path, "sw")


def test_story_cloze_tsv_and_original_csv(tmp_path):
  records = formats.read_story_cloze(fixtures.write_xstorycloze(tmp_path))
  assert [(r["sentences"], r["endings"], r["answer"]) for r in records] == [
      (s, e, a - 1) for s, e, a in fixtures.STORIES]
  csv = formats.read_story_cloze(fixtures.write_story_cloze_csv(tmp_path / "story.csv"))
  assert csv == [{"sentences": ["Tom woke up, late.", "He ran.", "The bus left.", "He walked."],
                  "endings": ["He was late, again.", "He flew to the moon."], "answer": 0}]


def test_story_cloze_short_row_names_the_line(tmp_path):
  path = fixtures.write_xstorycloze(tmp_path)
  lines = path.read_text(encoding="utf-8").splitlines()
  lines[2] = "\t".join(lines[2].split("\t")[:5])
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  with pytest.raises(formats.FormatError, match=rf"{path}:3: 5 columns where the header has 8"):
    formats.read_story_cloze(path)


def test_xwinograd_answers_as_strings_or_numbers_and_the_blank(tmp_path):
  fixtures.write_xwinograd(tmp_path)
  en = formats.read_xwinograd(tmp_path / "xwinograd" / "test" / "en.jsonl")
  jp = formats.read_xwinograd(tmp_path / "xwinograd" / "test" / "jp.jsonl")
  assert (en[0]["answer"], jp[0]["answer"]) == (0, 1)
  bad = fixtures.write_jsonl(tmp_path / "bad.jsonl", [{**fixtures.XWINOGRAD[0],
                                                        "sentence": "No blank here."}])
  with pytest.raises(formats.FormatError, match=rf"{bad}:1: field 'sentence' has no _ blank"):
    formats.read_xwinograd(bad)


def test_okapi_mmlu_records_and_a_bad_answer(tmp_path):
  folder = fixtures.write_mmlu(tmp_path, tests=2)
  records = formats.read_okapi_mmlu(folder / "id_test.json")
  assert records[1] == {"question": "Soal 1: berapa 2 + 1?",
                        "options": ["1", "3", "nol", "seratus"], "answer": 1}
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps([fixtures.mmlu_record(0), fixtures.mmlu_record(1, "E")]))
  with pytest.raises(formats.FormatError, match=r"record \[1\]: field 'answer' is 'E'"):
    formats.read_okapi_mmlu(bad)
  bad.write_text(json.dumps({"instruction": "not an array"}))
  with pytest.raises(formats.FormatError, match="not an array"):
    formats.read_okapi_mmlu(bad)


def test_flores_lines_and_a_blank_line(tmp_path):
  folder = fixtures.write_flores(tmp_path)
  assert formats.read_lines(folder / "zho_Hans.devtest") == fixtures.FLORES["zho_Hans"]
  path = folder / "swh_Latn.devtest"
  path.write_text("Paka analala.\n\nTunasoma vitabu.\n", encoding="utf-8")
  with pytest.raises(formats.FormatError, match=rf"{path}:2: blank line"):
    formats.read_lines(path)


def test_xlsum_records_and_a_missing_summary(tmp_path):
  path = fixtures.write_xlsum(tmp_path)
  assert [r["summary"] for r in formats.read_xlsum(path)] == [r["summary"]
                                                              for r in fixtures.XLSUM]
  record = dict(fixtures.XLSUM[0])
  del record["summary"]
  bad = fixtures.write_jsonl(tmp_path / "bad_val.jsonl", [fixtures.XLSUM[1], record])
  with pytest.raises(formats.FormatError, match=rf"{bad}:2: missing field 'summary'"):
    formats.read_xlsum(bad)


def test_squad_records_and_json_paths_in_errors(tmp_path):
  path = fixtures.write_tydiqa(tmp_path)
  records = formats.read_squad(path)
  assert [(r["id"], r["answers"]) for r in records] == [
      ("swahili-1-1", ["Nairobi", "Nairobi ni mji mkuu"]), ("japanese-2-1", ["東京"])]
  data = json.loads(path.read_text(encoding="utf-8"))
  data["data"][1]["paragraphs"][0]["qas"][0]["answers"] = []
  path.write_text(json.dumps(data), encoding="utf-8")
  with pytest.raises(formats.FormatError, match=r"data\[1\]\.paragraphs\[0\]\.qas\[0\]: no "
                     "answers"):
    formats.read_squad(path)
