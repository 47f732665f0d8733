"""Fuzzed crowd answer files (assessor qualification and review rounds read the same files).

`crowd_files.read_answers` in every format (JSONL, CSV, TSV, Toloka TSV, Mechanical Turk
CSV, and auto-detection): answers with counted skips (tolerant), or a ValueError naming
the file and line.
"""

from hypothesis import example, given
from hypothesis import strategies as st

from aya_t5x.gathering import crowd_files
from tests.fuzz.inputs import check_outcome, jsonl_bytes, records, table_bytes

LABELS = st.sampled_from(["good", "bad", "yes", "no", "1", "0", "maybe", "", "GOOD "])
PLAIN = ("assessor", "item_id", "label", "reason", "worker_id", "answer")
TOLOKA = ("ASSIGNMENT:worker_id", "INPUT:item_id", "OUTPUT:label", "OUTPUT:reason",
          "ASSIGNMENT:status")
MTURK = ("WorkerId", "Input.item_id", "Answer.label", "Answer.reason", "AssignmentStatus")
GOOD = {"label": LABELS, "answer": LABELS, "OUTPUT:label": LABELS, "Answer.label": LABELS,
        "ASSIGNMENT:status": st.sampled_from(["APPROVED", "REJECTED", "rejected"]),
        "AssignmentStatus": st.sampled_from(["Approved", "Rejected"]),
        "item_id": st.sampled_from(["a", "b", "c"]), "INPUT:item_id": st.just("a")}

FILES = st.one_of(
    st.tuples(st.just(".jsonl"), st.sampled_from(["auto", "jsonl"]),
              jsonl_bytes(records(PLAIN, GOOD))),
    st.tuples(st.just(".csv"), st.sampled_from(["auto", "csv"]), table_bytes(PLAIN, ",", GOOD)),
    st.tuples(st.just(".tsv"), st.sampled_from(["auto", "tsv"]),
              table_bytes(PLAIN, "\t", GOOD)),
    st.tuples(st.just(".tsv"), st.sampled_from(["auto", "toloka"]),
              table_bytes(TOLOKA, "\t", GOOD)),
    st.tuples(st.just(".csv"), st.sampled_from(["auto", "mturk"]),
              table_bytes(MTURK, ",", GOOD)),
)


@given(FILES, st.booleans(), st.booleans())
# Found: bad UTF-8 raised a UnicodeDecodeError naming no file (now a counted skip in JSONL,
# a named error in tables).
@example(file=(".jsonl", "auto", b"\xff\xfe\x80"), tolerant=False, known=False)
@example(file=(".jsonl", "jsonl", b"\xff\xfe\x80"), tolerant=True, known=False)
@example(file=(".csv", "csv", b"assessor,item_id,label\n\xff,a,good"), tolerant=True,
         known=False)
def test_read_answers(tmp_path_factory, file, tolerant, known):
  suffix, fmt, content = file
  path = tmp_path_factory.mktemp("fuzz") / f"answers{suffix}"
  path.write_bytes(content)
  result = check_outcome("crowd answers", path, lambda: crowd_files.read_answers(
      path, fmt=fmt, tolerant=tolerant, known_items={"a", "b"} if known else None))
  if isinstance(result, tuple):
    answers, counts = result
    assert counts.read == len(answers)
    assert all(a.label in (crowd_files.GOOD, crowd_files.BAD) for a in answers)
