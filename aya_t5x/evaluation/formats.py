"""Readers for the evaluation sets' published file formats, with errors that name the record.

Each reader takes one file exactly as its dataset publishes it and returns plain dicts
with checked, typed fields. A missing file raises FileNotFoundError naming the path and
the expected format; a record of the wrong shape raises `FormatError` naming the file,
the line (or the JSON path) and the field. Nothing is skipped: an evaluation set with a
dropped example would give a score that cannot be compared with anyone else's.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

XCOPA = ("JSONL, one object per line: {\"premise\", \"choice1\", \"choice2\", \"question\": "
         "\"cause\"|\"effect\", \"label\": 0|1} (XCOPA's data/<lang>/val.<lang>.jsonl)")
XNLI = ("XNLI-1.0's xnli.<split>.tsv (tab-separated, a header row with the columns language, "
        "gold_label, sentence1, sentence2, ...) or xnli.<split>.jsonl with the same fields")
STORY_CLOZE = ("XStoryCloze's spring2016.val.<lang>.tsv.split_20_80_eval.tsv (tab-separated) or "
               "StoryCloze's .csv, with a header row: story_id, input_sentence_1..4, "
               "sentence_quiz1, sentence_quiz2, answer_right_ending (or StoryCloze's "
               "InputSentence1..4, RandomFifthSentenceQuiz1/2, AnswerRightEnding)")
XWINOGRAD = ("JSONL, one object per line: {\"sentence\" (with _ for the blank), \"option1\", "
             "\"option2\", \"answer\": 1|2} (XWinograd's test/<lang>.jsonl)")
OKAPI_MMLU = ("a JSON array of {\"instruction\", \"option_a\", \"option_b\", \"option_c\", "
              "\"option_d\", \"answer\": \"A\"|\"B\"|\"C\"|\"D\"} (Okapi's m_mmlu/<lang>_test.json "
              "and <lang>_dev.json)")
FLORES = ("plain UTF-8 text, one sentence per line, line-aligned across languages (FLORES-200's "
          "devtest/<code>.devtest, e.g. swh_Latn.devtest)")
XLSUM = ("JSONL, one object per line: {\"id\", \"url\", \"title\", \"summary\", \"text\"} "
         "(XL-Sum's <language>_val.jsonl)")
SQUAD = ("SQuAD-style JSON: {\"data\": [{\"paragraphs\": [{\"context\", \"qas\": [{\"id\", "
         "\"question\", \"answers\": [{\"text\", \"answer_start\"}]}]}]}]} (TyDiQA GoldP's "
         "tydiqa-goldp-v1.1-dev.json)")


class FormatError(ValueError):
  """A record is not in the published format; the message names the file, line and field."""


def require_file(path: str | os.PathLike, expected: str) -> Path:
  """`path` as a Path, or FileNotFoundError naming it and the expected format."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found; expected {expected}.")
  return path


def read_text(path: Path, expected: str, *, translate_newlines: bool = True) -> str:
  """The file's text; bytes that are not UTF-8 raise `FormatError` naming the line.

  Newlines are translated as text mode does (\r\n and \r become \n) unless a csv
  reader, which wants them as they are, reads the text.
  """
  data = path.read_bytes()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise FormatError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start}); "
                      f"expected {expected}.") from None
  return text.replace("\r\n", "\n").replace("\r", "\n") if translate_newlines else text


def _shown(value: Any, limit: int = 80) -> str:
  """`value`'s repr, cut short: a huge field must not make a huge message."""
  text = repr(value)
  return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _field(record: Mapping[str, Any], name: str, where: str, expected: str,
           kind: type | tuple[type, ...] = str) -> Any:
  if not isinstance(record, Mapping):
    raise FormatError(f"{where}: not a JSON object; expected {expected}.")
  if name not in record:
    raise FormatError(f"{where}: missing field {name!r}; expected {expected}.")
  value = record[name]
  if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
    wanted = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
    raise FormatError(f"{where}: field {name!r} is {_shown(value)}, not {wanted}; expected "
                      f"{expected}.")
  if isinstance(value, str) and not value.strip():
    raise FormatError(f"{where}: field {name!r} is empty; expected {expected}.")
  return value


def _choice(value: Any, allowed: Sequence[Any], name: str, where: str, expected: str) -> int:
  """The index of `value` in `allowed` (numbers may come as strings)."""
  for index, option in enumerate(allowed):
    if value == option or str(value).strip() == str(option):
      return index
  raise FormatError(f"{where}: field {name!r} is {_shown(value)}, not one of {list(allowed)}; "
                    f"expected {expected}.")


def jsonl_records(path: str | os.PathLike, expected: str) -> Iterator[tuple[str, dict]]:
  """(`file:line`, object) for every non-blank line; errors name the line and `expected`."""
  path = require_file(path, expected)
  # Split on \n only, as files are numbered by editors (str.splitlines also splits on
  # \x85, \u2028 and other characters JSON strings may hold raw).
  for number, line in enumerate(read_text(path, expected).split("\n"), start=1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise FormatError(f"{where}: not valid JSON ({e}); expected {expected}.") from None
    yield where, record


def _table(path: str | os.PathLike, expected: str, required: Sequence[str]
           ) -> Iterator[tuple[str, dict]]:
  """(`file:line`, row) of a TSV or CSV file with a header row naming `required` columns."""
  path = require_file(path, expected)
  delimiter = "," if path.suffix == ".csv" else "\t"
  # Published TSVs quote nothing (sentences contain bare quotes); CSVs use quoting.
  text = read_text(path, expected, translate_newlines=False)
  reader = csv.DictReader(io.StringIO(text, newline=""),
                          delimiter=delimiter,
                          quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
  rows = iter(reader)
  while True:
    try:  # csv refuses NUL bytes and fields over its size limit: name the line
      row = next(rows)
    except StopIteration:
      return
    except csv.Error as e:
      raise FormatError(f"{path}:{reader.line_num}: not readable as "
                        f"{'CSV' if delimiter == ',' else 'TSV'} ({e}); expected "
                        f"{expected}.") from None
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
      raise FormatError(f"{path}:1: header lacks column(s) {missing} (found "
                        f"{reader.fieldnames}); expected {expected}.")
    where = f"{path}:{reader.line_num}"
    if None in row or any(row[c] is None for c in required):
      found = sum(v is not None for k, v in row.items() if k is not None) + len(
          row.get(None) or ())
      raise FormatError(f"{where}: {found} columns where the header has "
                        f"{len(reader.fieldnames)}; expected {expected}.")
    yield where, row


# ----------------------------------------------------------------------------- XCOPA


def read_xcopa(path: str | os.PathLike) -> list[dict[str, Any]]:
  """XCOPA: premise, choice1, choice2, question ('cause' or 'effect'), label (0 or 1)."""
  records = []
  for where, record in jsonl_records(path, XCOPA):
    out = {name: _field(record, name, where, XCOPA) for name in
           ("premise", "choice1", "choice2", "question")}
    if out["question"] not in ("cause", "effect"):
      raise FormatError(f"{where}: field 'question' is {_shown(out['question'])}, not 'cause' or "
                        f"'effect'; expected {XCOPA}.")
    out["label"] = _choice(_field(record, "label", where, XCOPA, (int, str)), (0, 1), "label",
                           where, XCOPA)
    records.append(out)
  return records


# ----------------------------------------------------------------------------- XNLI

XNLI_LABELS = ("entailment", "neutral", "contradiction")


def read_xnli(path: str | os.PathLike, language: str) -> list[dict[str, Any]]:
  """XNLI rows of one language: premise, hypothesis, label (an index into XNLI_LABELS)."""
  path = Path(path)
  columns = ("language", "gold_label", "sentence1", "sentence2")
  if path.suffix == ".jsonl":
    rows = ((where, {c: _field(r, c, where, XNLI) for c in columns})
            for where, r in jsonl_records(path, XNLI))
  else:
    rows = _table(path, XNLI, columns)
  records = []
  for where, row in rows:
    if row["language"] != language:
      continue
    for column in ("sentence1", "sentence2"):
      if not row[column].strip():
        raise FormatError(f"{where}: column {column!r} is empty; expected {XNLI}.")
    label = _choice(row["gold_label"], XNLI_LABELS, "gold_label", where, XNLI)
    records.append({"premise": row["sentence1"], "hypothesis": row["sentence2"],
                    "label": label})
  return records


# ----------------------------------------------------------------------------- StoryCloze

# XStoryCloze's column names, and the original StoryCloze CSV's.
_STORY_COLUMNS = (
    ("input_sentence_1", "input_sentence_2", "input_sentence_3", "input_sentence_4",
     "sentence_quiz1", "sentence_quiz2", "answer_right_ending"),
    ("InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
     "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding"),
)


def read_story_cloze(path: str | os.PathLike) -> list[dict[str, Any]]:
  """(X)StoryCloze: four story sentences, two endings, the right one (1 or 2; 0 or 1 out)."""
  path = require_file(path, STORY_CLOZE)
  header = read_text(path, STORY_CLOZE).split("\n", 1)[0]
  columns = next((names for names in _STORY_COLUMNS if names[0] in header), _STORY_COLUMNS[0])
  records = []
  for where, row in _table(path, STORY_CLOZE, columns):
    texts = [row[c].strip() for c in columns[:6]]
    if not all(texts):
      raise FormatError(f"{where}: an empty sentence or ending; expected {STORY_CLOZE}.")
    answer = _choice(row[columns[6]], (1, 2), columns[6], where, STORY_CLOZE)
    records.append({"sentences": texts[:4], "endings": texts[4:], "answer": answer})
  return records


# ----------------------------------------------------------------------------- XWinograd


def read_xwinograd(path: str | os.PathLike) -> list[dict[str, Any]]:
  """XWinograd: sentence (with `_`), option1, option2, answer (1 or 2; 0 or 1 out)."""
  records = []
  for where, record in jsonl_records(path, XWINOGRAD):
    out = {name: _field(record, name, where, XWINOGRAD) for name in
           ("sentence", "option1", "option2")}
    if "_" not in out["sentence"]:
      raise FormatError(f"{where}: field 'sentence' has no _ blank; expected {XWINOGRAD}.")
    out["answer"] = _choice(_field(record, "answer", where, XWINOGRAD, (int, str)), (1, 2),
                            "answer", where, XWINOGRAD)
    records.append(out)
  return records


# ----------------------------------------------------------------------------- Okapi MMLU

MMLU_LETTERS = ("A", "B", "C", "D")


def read_okapi_mmlu(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Okapi's multilingual MMLU: question, options (4), answer (an index into A-D)."""
  path = require_file(path, OKAPI_MMLU)
  try:
    data = json.loads(read_text(path, OKAPI_MMLU))
  except json.JSONDecodeError as e:
    raise FormatError(f"{path}: not valid JSON ({e}); expected {OKAPI_MMLU}.") from None
  if not isinstance(data, list):
    raise FormatError(f"{path}: the top level is {type(data).__name__}, not an array; "
                      f"expected {OKAPI_MMLU}.")
  records = []
  for index, record in enumerate(data):
    where = f"{path}: record [{index}]"
    question = _field(record, "instruction", where, OKAPI_MMLU)
    options = [_field(record, f"option_{letter.lower()}", where, OKAPI_MMLU, (str, int, float))
               for letter in MMLU_LETTERS]
    answer = _choice(_field(record, "answer", where, OKAPI_MMLU), MMLU_LETTERS, "answer", where,
                     OKAPI_MMLU)
    records.append({"question": question, "options": [str(o) for o in options],
                    "answer": answer})
  return records


# ----------------------------------------------------------------------------- FLORES-200


def read_lines(path: str | os.PathLike, expected: str = FLORES) -> list[str]:
  """The lines of a sentence-per-line file; a blank line is an error (it breaks alignment)."""
  path = require_file(path, expected)
  lines = read_text(path, expected).split("\n")
  if lines and lines[-1] == "":
    lines.pop()  # the final newline
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      raise FormatError(f"{path}:{number}: blank line; expected {expected}.")
  return lines


# ----------------------------------------------------------------------------- XL-Sum


def read_xlsum(path: str | os.PathLike) -> list[dict[str, Any]]:
  """XL-Sum: id, title, text (the article) and summary."""
  return [{name: _field(record, name, where, XLSUM) for name in ("id", "title", "text",
                                                                 "summary")}
          for where, record in jsonl_records(path, XLSUM)]


# ----------------------------------------------------------------------------- SQuAD


def read_squad(path: str | os.PathLike) -> list[dict[str, Any]]:
  """SQuAD-style QA (TyDiQA GoldP): id, context, question and the gold answer texts."""
  path = require_file(path, SQUAD)
  try:
    data = json.loads(read_text(path, SQUAD))
  except json.JSONDecodeError as e:
    raise FormatError(f"{path}: not valid JSON ({e}); expected {SQUAD}.") from None
  articles = _field(data, "data", f"{path}: top level", SQUAD, list)
  records = []
  for a, article in enumerate(articles):
    paragraphs = _field(article, "paragraphs", f"{path}: data[{a}]", SQUAD, list)
    for p, paragraph in enumerate(paragraphs):
      where = f"{path}: data[{a}].paragraphs[{p}]"
      context = _field(paragraph, "context", where, SQUAD)
      for q, qa in enumerate(_field(paragraph, "qas", where, SQUAD, list)):
        at = f"{where}.qas[{q}]"
        answers = _field(qa, "answers", at, SQUAD, list)
        texts = [_field(answer, "text", f"{at}.answers[{i}]", SQUAD)
                 for i, answer in enumerate(answers)]
        if not texts:
          raise FormatError(f"{at}: no answers; expected {SQUAD}.")
        records.append({"id": _field(qa, "id", at, SQUAD), "context": context,
                        "question": _field(qa, "question", at, SQUAD), "answers": texts})
  return records
