"""Fuzzed source files: the six sources' schemas (aya_t5x/tasks) from JSONL, parquet and TFDS.

`sources.scan` reads every record; a bad one is a `MalformedRecord` naming the file, the
line or row and the field, or (tolerant) a counted skip. A TFDS build folder costs
seconds to write, so its test draws few examples (text features only: what TFDS stores
as strings, with fields missing, extra, empty, huge or in unknown languages).
"""

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aya_t5x import tasks  # noqa: F401  (registers the six sources)
from aya_t5x.data import readers, sources
from tests.data.fixtures import write_tfds_build
from tests.fuzz.inputs import LANGUAGES, check_outcome, jsonl_bytes, records

SIX = ("aya_dataset", "aya_templated", "aya_translated", "xp3x", "data_provenance",
       "sharegpt_command")


def spec_records(spec: sources.SourceSpec):
  good = {f.name: LANGUAGES for f in spec.schema if "lang" in f.name}
  return records(spec.field_names(), good)


def scan(spec, path, tolerant):
  """Scans a file as the train split, or a TFDS build folder (which holds its splits)."""
  paths = str(path) if path.is_dir() else {"train": path}
  index = sources.scan(spec, paths, tolerant=tolerant)
  report = index.report
  assert report.kept + report.skipped + sum(report.removed_by_filter().values()) == report.read
  return index


def test_the_six_sources_are_registered():
  assert set(SIX) <= set(sources.source_names())


@given(name=st.sampled_from(SIX), data=st.data(), tolerant=st.booleans())
def test_jsonl(tmp_path_factory, name, data, tolerant):
  spec = sources.get_source(name)
  path = tmp_path_factory.mktemp("fuzz") / "train.jsonl"
  path.write_bytes(data.draw(jsonl_bytes(spec_records(spec))))
  result = check_outcome(f"source {name} (JSONL)", path, lambda: scan(spec, path, tolerant))
  if tolerant:  # every bad record is counted, none raises
    assert not isinstance(result, readers.MalformedRecord), result


@given(name=st.sampled_from(SIX), data=st.data(), tolerant=st.booleans())
def test_parquet(tmp_path_factory, name, data, tolerant):
  spec = sources.get_source(name)
  rows = data.draw(st.lists(spec_records(spec).filter(lambda r: isinstance(r, dict)),
                            max_size=5))
  path = tmp_path_factory.mktemp("fuzz") / "train.parquet"
  try:
    pq.write_table(pa.Table.from_pylist(rows), path)
  except (pa.ArrowException, OverflowError, UnicodeEncodeError):
    assume(False)  # not representable in parquet: nobody can publish it
  result = check_outcome(f"source {name} (parquet)", path, lambda: scan(spec, path, tolerant))
  if tolerant:
    assert not isinstance(result, readers.MalformedRecord), result


# Text TFDS can store (UTF-8: no lone surrogates), of every kind the other tests use.
TFDS_TEXT = st.one_of(
    LANGUAGES, st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
    st.sampled_from(["", " ", "\n"]), st.just("ᐃ" * 140_000))


@settings(max_examples=4)  # each example writes a TFDS dataset (seconds)
@given(name=st.sampled_from(SIX), data=st.data(), tolerant=st.booleans())
def test_tfds(tmp_path_factory, name, data, tolerant):
  spec = sources.get_source(name)
  fields = data.draw(st.lists(st.sampled_from([*spec.field_names(), "unexpected"]),
                              min_size=1, unique=True))
  rows = data.draw(st.lists(st.fixed_dictionaries({f: TFDS_TEXT for f in fields}),
                            min_size=1, max_size=3))
  folder = write_tfds_build(tmp_path_factory.mktemp("tfds"), {"train": rows})
  result = check_outcome(f"source {name} (TFDS)", folder,
                         lambda: scan(spec, folder, tolerant))
  if tolerant:
    assert not isinstance(result, readers.MalformedRecord), result
