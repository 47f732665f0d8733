"""Fuzzed evaluation files: the eight published formats of aya_t5x/evaluation/formats.py.

Every input gives records or a `FormatError` naming the file, the line (or JSON path)
and the field; see tests/fuzz/inputs.py for what is generated.
"""

from hypothesis import example, given
from hypothesis import strategies as st

from aya_t5x.evaluation import formats
from tests.fuzz.inputs import (
  LANGUAGES,
  TEXT,
  VALUES,
  check_outcome,
  json_bytes,
  jsonl_bytes,
  records,
  table_bytes,
)

ANY_LABEL = st.one_of(st.sampled_from([0, 1, 2, "0", "1", "2", "A", "D", "x"]), VALUES)


def run(tmp_path_factory, name, suffix, content, read):
  path = tmp_path_factory.mktemp("fuzz") / f"input{suffix}"
  path.write_bytes(content)
  result = check_outcome(name, path, lambda: read(path))
  if isinstance(result, list):  # records come out typed as documented
    assert all(isinstance(r, (dict, str)) for r in result)
  return result


@given(jsonl_bytes(records(("premise", "choice1", "choice2", "question", "label"),
                           {"label": ANY_LABEL})))
@example(content=b"\x80")  # found: bad UTF-8 raised a UnicodeDecodeError naming no file
def test_xcopa(tmp_path_factory, content):
  run(tmp_path_factory, "xcopa", ".jsonl", content, formats.read_xcopa)


XNLI_COLUMNS = ("language", "gold_label", "sentence1", "sentence2")
XNLI_GOOD = {"language": LANGUAGES, "gold_label": st.sampled_from(formats.XNLI_LABELS)}


@given(st.one_of(table_bytes(XNLI_COLUMNS, "\t", XNLI_GOOD),
                 jsonl_bytes(records(XNLI_COLUMNS, XNLI_GOOD))), st.booleans(), LANGUAGES)
def test_xnli(tmp_path_factory, content, as_jsonl, language):
  run(tmp_path_factory, "xnli", ".jsonl" if as_jsonl else ".tsv", content,
      lambda p: formats.read_xnli(p, language))


@given(st.sampled_from(formats._STORY_COLUMNS).flatmap(lambda columns: st.one_of(
    table_bytes(columns, "\t", {columns[-1]: ANY_LABEL}),
    table_bytes(columns, ",", {columns[-1]: ANY_LABEL}))), st.booleans())
# Found: a field over csv's size limit, and a NUL byte, raised csv.Error naming no file.
@example(content=",".join(formats._STORY_COLUMNS[0]).encode() + b"\n" + b"x" * 140_000,
         csv_file=True)
@example(content="\t".join(formats._STORY_COLUMNS[0]).encode() + b"\na\0b", csv_file=False)
def test_story_cloze(tmp_path_factory, content, csv_file):
  run(tmp_path_factory, "story_cloze", ".csv" if csv_file else ".tsv", content,
      formats.read_story_cloze)


@given(jsonl_bytes(records(("sentence", "option1", "option2", "answer"),
                           {"answer": ANY_LABEL})))
def test_xwinograd(tmp_path_factory, content):
  run(tmp_path_factory, "xwinograd", ".jsonl", content, formats.read_xwinograd)


MMLU = records(("instruction", "option_a", "option_b", "option_c", "option_d", "answer"),
               {"answer": ANY_LABEL})


@given(json_bytes(st.one_of(st.lists(MMLU, max_size=4), MMLU)))
def test_okapi_mmlu(tmp_path_factory, content):
  run(tmp_path_factory, "okapi_mmlu", ".json", content, formats.read_okapi_mmlu)


@given(st.one_of(st.lists(TEXT, max_size=6).map(
    lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    jsonl_bytes(st.nothing())))
def test_flores_lines(tmp_path_factory, content):
  run(tmp_path_factory, "flores", ".devtest", content, formats.read_lines)


@given(jsonl_bytes(records(("id", "url", "title", "summary", "text"))))
def test_xlsum(tmp_path_factory, content):
  run(tmp_path_factory, "xlsum", ".jsonl", content, formats.read_xlsum)


ANSWER = records(("text", "answer_start"))
QA = records(("id", "question", "answers"), {"answers": st.lists(ANSWER, max_size=2)})
PARAGRAPH = records(("context", "qas"), {"qas": st.lists(QA, max_size=2)})
ARTICLE = records(("paragraphs",), {"paragraphs": st.lists(PARAGRAPH, max_size=2)})


@given(json_bytes(records(("data",), {"data": st.lists(ARTICLE, max_size=2)})))
# Found: a huge mistyped field was quoted whole in the message (140,000 characters).
@example(content=b'{"data": "' + b"x" * 140_000 + b'"}')
def test_squad(tmp_path_factory, content):
  run(tmp_path_factory, "squad", ".json", content, formats.read_squad)
