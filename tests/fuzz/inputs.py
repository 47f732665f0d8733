"""What the fuzz tests feed the readers, and the one property every reader must have.

Inputs: JSON values of every type (strings in any script, lone surrogates, huge strings,
numbers, nested lists and objects), records with the expected fields missing, mistyped or
joined by unknown ones, lines of broken UTF-8 and of non-JSON, empty files, and table
cells holding tabs, quotes, newlines and NULs.

The property (`check_outcome`): a reader returns a result (skips counted), or raises a
ValueError/FileNotFoundError whose message names the file, so that a user can find the
record; anything else (a TypeError, a KeyError, a UnicodeDecodeError that names no file)
is a crash.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

INPUTS: Counter = Counter()  # reader name -> inputs given (reported by conftest)

# Language codes and names that exist, that do not, and scripts nobody listed.
LANGUAGES = st.sampled_from(["sw", "swh", "swa", "Swahili", "en", "yo", "zh-Hant", "xx",
                             "qqq", "", "klingon", "sw_Latn", "ar-Arab", "ﻉﺮﺒﻳ", "ᐃᓄᒃᑎᑐᑦ",
                             "zzz_Zzzz", "123"])
TEXT = st.one_of(
    st.text(max_size=40),  # any code point, lone surrogates included
    st.text(alphabet=st.characters(categories=["Lo", "Mn", "Cf", "Zs"]), max_size=20),
    st.sampled_from(["", " ", "\t", "\n", "_", "0", "1", "2", "A", "good", "bad", "cause",
                     "effect", "entailment", "null", "NaN"]),
    # A huge field: past csv's 131,072-character field limit.
    st.builds(lambda c, n: c * n, st.characters(), st.sampled_from([2_000, 140_000])),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(),
                    st.floats(allow_nan=True, allow_infinity=True), TEXT, LANGUAGES)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)


def records(fields: Sequence[str], good: dict[str, st.SearchStrategy] | None = None
            ) -> st.SearchStrategy[Any]:
  """Objects with some of `fields` (well-formed values from `good`, or any value) and
  extra fields; sometimes not an object at all."""
  good = good or {}
  value_of = {f: st.one_of(good.get(f, TEXT), VALUES) for f in fields}
  obj = st.fixed_dictionaries({}, optional=value_of).flatmap(
      lambda d: st.dictionaries(st.text(max_size=8), VALUES, max_size=2).map(
          lambda extra: {**extra, **d}))
  return st.one_of(obj, obj, obj, VALUES)


def _json_line(value: Any) -> bytes:
  return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


JUNK_LINES = st.one_of(st.binary(max_size=30), st.just(b"\xff\xfe\x80"),
                       st.just(b"{\"a\": \xc3\x28}"), st.just(b"{"), st.just(b""),
                       st.just(b"   "), st.text(max_size=20).map(
                           lambda t: t.encode("utf-8", "surrogatepass")))


def jsonl_bytes(record_strategy: st.SearchStrategy) -> st.SearchStrategy[bytes]:
  """JSONL files: records, mixed with junk lines; sometimes empty."""
  line = st.one_of(record_strategy.map(_json_line), record_strategy.map(_json_line),
                   JUNK_LINES)
  return st.lists(line, max_size=6).map(lambda lines: b"\n".join(lines))


def json_bytes(value_strategy: st.SearchStrategy) -> st.SearchStrategy[bytes]:
  """One JSON document (or junk)."""
  return st.one_of(value_strategy.map(_json_line), value_strategy.map(_json_line), JUNK_LINES)


CELLS = st.one_of(TEXT, st.sampled_from(["\t", "\"", "a\"b", "x\ny", "\0", ",", "\r"]))


def table_bytes(columns: Sequence[str], delimiter: str,
                good: dict[str, st.SearchStrategy] | None = None) -> st.SearchStrategy[bytes]:
  """TSV/CSV files: a header of some of `columns` (and others), rows of any cells."""
  good = good or {}

  def build(header, rows, junk):
    if delimiter == "\t":  # published TSVs quote nothing: cells go in as they are
      text = "".join("\t".join(map(str, row)) + "\n" for row in [header, *rows])
    else:
      out = io.StringIO()
      writer = csv.writer(out)
      for row in [header, *rows]:
        writer.writerow(row)
      text = out.getvalue()
    return text.encode("utf-8", "surrogatepass") + junk

  header = st.lists(st.one_of(st.sampled_from(list(columns)), st.text(max_size=6)),
                    min_size=0, max_size=len(columns) + 2).flatmap(
      lambda h: st.one_of(st.just(list(columns)), st.just(h)))
  return header.flatmap(lambda h: st.tuples(
      st.just(h),
      st.lists(st.lists(st.one_of(*(good.get(c, CELLS) for c in h), CELLS) if h else CELLS,
                        min_size=max(0, len(h) - 1), max_size=len(h) + 1), max_size=5),
      st.one_of(st.just(b""), JUNK_LINES))).map(lambda t: build(*t))


def check_outcome(name: str, path: Path, call: Callable[[], Any],
                  named_errors: tuple[type[BaseException], ...] = (ValueError,
                                                                   FileNotFoundError)) -> Any:
  """Runs a reader on `path`: a result, or a named error mentioning the file."""
  INPUTS[name] += 1
  try:
    return call()
  except named_errors as e:
    message = str(e)
    assert str(path) in message or path.name in message, (
        f"{type(e).__name__} does not name the file: {message[:300]}")
    assert len(message) < 5000, f"an unreadable message of {len(message)} characters"
    return e
