"""Small evaluation files in each benchmark's published format, with known contents.

Each writer lays files out under a data root exactly where a user would put the
published release (`<root>/xnli/xnli.dev.tsv`, `<root>/flores200/devtest/swh_Latn.devtest`
...) and returns the records it wrote, so that tests check the readers against what was
written, not against the readers themselves. XCOPA needs no writer: its real validation
files are in ../shared/data/xcopa.
"""

import csv
import json
from pathlib import Path

import pytest

# The real XCOPA validation files, at ../shared/data/xcopa from the repository root.
XCOPA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "xcopa"
XCOPA_ROOT = XCOPA_DIR.parent
# CI and the project's machines have ../shared; a user's clone may not. The tests that read
# the real files say so rather than fail.
needs_real_xcopa = pytest.mark.skipif(
    not XCOPA_DIR.is_dir(), reason=f"the real XCOPA files are not at {XCOPA_DIR}")

XNLI_COLUMNS = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
                "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID",
                "pairID", "genre", "label1", "label2", "label3", "label4", "label5"]
XNLI_ROWS = [
    ("en", "entailment", 'He said "yes" to the plan.', "He agreed."),
    ("sw", "contradiction", "Mtoto analala.", "Mtoto anakimbia."),
    ("sw", "neutral", "Mama anapika chakula.", "Mama anapika wali."),
    ("en", "neutral", "The shop opens at nine.", "The shop is big."),
]


def write_jsonl(path: Path, records) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                  encoding="utf-8")
  return path


def write_xnli(root: Path, *, jsonl: bool = False) -> Path:
  """XNLI-1.0's xnli.dev.tsv (unquoted, tab-separated, all columns) or xnli.dev.jsonl."""
  rows = []
  for number, (language, label, premise, hypothesis) in enumerate(XNLI_ROWS):
    row = dict.fromkeys(XNLI_COLUMNS, "")
    row.update(language=language, gold_label=label, sentence1=premise, sentence2=hypothesis,
               sentence1_parse=f"(ROOT {premise})", promptID=str(number),
               pairID=f"{number}e", genre="fiction", label1=label)
    rows.append(row)
  folder = root / "xnli"
  if jsonl:
    return write_jsonl(folder / "xnli.dev.jsonl", rows)
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / "xnli.dev.tsv"
  lines = ["\t".join(XNLI_COLUMNS)] + ["\t".join(r[c] for c in XNLI_COLUMNS) for r in rows]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


STORIES = [
    (["Ana alikwenda sokoni.", "Alinunua maembe.", "Njiani alikutana na rafiki.",
      "Walizungumza kwa muda."], ["Ana alirudi nyumbani na maembe.", "Ana aliruka mwezini."], 1),
    (["Juma alipanda mti.", "Tawi lilikatika.", "Alianguka chini.", "Aliumia mguu."],
     ["Juma alicheka sana.", "Juma alikwenda hospitali."], 2),
]


def write_xstorycloze(root: Path, language: str = "sw") -> Path:
  """XStoryCloze's tab-separated eval file with its header."""
  path = root / "xstorycloze" / f"spring2016.val.{language}.tsv.split_20_80_eval.tsv"
  path.parent.mkdir(parents=True, exist_ok=True)
  header = ["story_id", "input_sentence_1", "input_sentence_2", "input_sentence_3",
            "input_sentence_4", "sentence_quiz1", "sentence_quiz2", "answer_right_ending"]
  lines = ["\t".join(header)] + ["\t".join([f"id{i}", *s, *e, str(a)])
                                 for i, (s, e, a) in enumerate(STORIES)]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def write_story_cloze_csv(path: Path) -> Path:
  """The original English StoryCloze CSV (quoted fields with commas)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3",
                     "InputSentence4", "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2",
                     "AnswerRightEnding"])
    writer.writerow(["s1", "Tom woke up, late.", "He ran.", "The bus left.", "He walked.",
                     "He was late, again.", "He flew to the moon.", "1"])
  return path


XWINOGRAD = [
    {"sentence": "The trophy does not fit in the suitcase because _ is too big.",
     "option1": "the trophy", "option2": "the suitcase", "answer": "1"},
    {"sentence": "トロフィーはスーツケースに入らない、_が小さすぎるから。",
     "option1": "トロフィー", "option2": "スーツケース", "answer": 2},
]


def write_xwinograd(root: Path) -> Path:
  """XWinograd's test/<lang>.jsonl; Japanese is jp.jsonl."""
  write_jsonl(root / "xwinograd" / "test" / "en.jsonl", XWINOGRAD[:1])
  return write_jsonl(root / "xwinograd" / "test" / "jp.jsonl", XWINOGRAD[1:])


def mmlu_record(number: int, answer: str = "B") -> dict:
  return {"instruction": f"Soal {number}: berapa 2 + {number}?", "option_a": str(number),
          "option_b": str(2 + number), "option_c": "nol", "option_d": "seratus",
          "answer": answer, "id": f"math/{number}"}


def write_mmlu(root: Path, language: str = "id", tests: int = 2, shots: int = 6) -> Path:
  """Okapi's m_mmlu/<lang>_test.json and <lang>_dev.json (JSON arrays)."""
  folder = root / "mmlu"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / f"{language}_dev.json").write_text(json.dumps(
      [mmlu_record(100 + i, "ABCD"[i % 4]) for i in range(shots)], ensure_ascii=False))
  (folder / f"{language}_test.json").write_text(json.dumps(
      [mmlu_record(i, "B") for i in range(tests)], ensure_ascii=False))
  return folder


FLORES = {
    "eng_Latn": ["The cat sleeps.", "It is raining today.", "We read books."],
    "swh_Latn": ["Paka analala.", "Leo kunanyesha.", "Tunasoma vitabu."],
    "zho_Hans": ["猫在睡觉。", "今天下雨。", "我们读书。"],
}


def write_flores(root: Path) -> Path:
  """FLORES-200's devtest/<code>.devtest, one sentence per line, aligned."""
  folder = root / "flores200" / "devtest"
  folder.mkdir(parents=True, exist_ok=True)
  for code, lines in FLORES.items():
    (folder / f"{code}.devtest").write_text("\n".join(lines) + "\n", encoding="utf-8")
  return folder


XLSUM = [
    {"id": "a1", "url": "https://www.bbc.com/hindi/1", "title": "मौसम",
     "summary": "दिल्ली में आज बारिश हुई।", "text": "दिल्ली में आज सुबह से बारिश हो रही है। लोग घरों में रहे।"},
    {"id": "a2", "url": "https://www.bbc.com/hindi/2", "title": "खेल",
     "summary": "भारत ने मैच जीता।", "text": "भारत ने कल रात मैच जीत लिया। दर्शक खुश थे।"},
]


def write_xlsum(root: Path) -> Path:
  """XL-Sum's <language>_val.jsonl."""
  return write_jsonl(root / "xlsum" / "hindi_val.jsonl", XLSUM)


TYDIQA = {"version": "1.1", "data": [
    {"title": "Nairobi", "paragraphs": [{
        "context": "Nairobi ni mji mkuu wa Kenya. Una wakazi wengi.",
        "qas": [{"id": "swahili-1-1", "question": "Mji mkuu wa Kenya ni upi?",
                 "answers": [{"text": "Nairobi", "answer_start": 0},
                             {"text": "Nairobi ni mji mkuu", "answer_start": 0}]}]}]},
    {"title": "Tokyo", "paragraphs": [{
        "context": "東京は日本の首都です。",
        "qas": [{"id": "japanese-2-1", "question": "日本の首都は？",
                 "answers": [{"text": "東京", "answer_start": 0}]}]}]},
]}


def write_tydiqa(root: Path) -> Path:
  """TyDiQA GoldP's combined tydiqa-goldp-v1.1-dev.json (SQuAD format)."""
  path = root / "tydiqa" / "tydiqa-goldp-v1.1-dev.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(TYDIQA, ensure_ascii=False), encoding="utf-8")
  return path


def write_all(root: Path) -> Path:
  """Every benchmark's fixture under one data root (XCOPA linked from shared/data)."""
  write_xnli(root)
  write_xstorycloze(root)
  write_xwinograd(root)
  write_mmlu(root)
  write_flores(root)
  write_xlsum(root)
  write_tydiqa(root)
  (root / "xcopa").symlink_to(XCOPA_DIR, target_is_directory=True)
  return root
