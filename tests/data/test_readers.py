"""Readers: every format yields the same records with file and line; broken lines are reported."""

import gzip
import json

import pytest

from aya_t5x.data import readers
from tests.data import fixtures

RECORDS = [{"inputs": f"q{i}", "targets": f"a{i}", "n": i} for i in range(5)]


def _records(path, split=None):
  return [(loc, rec) for loc, rec in readers.iter_records(path, split)]


@pytest.mark.parametrize("writer, name", [
    (fixtures.write_jsonl, "data.jsonl"), (fixtures.write_parquet, "data.parquet"),
    (fixtures.write_arrow_stream, "data.arrow"),
])
def test_formats_read_the_same_records(tmp_path, writer, name):
  path = writer(tmp_path / name, RECORDS)
  got = _records(path)
  assert [rec for _, rec in got] == RECORDS
  assert [loc.index for loc, _ in got] == [1, 2, 3, 4, 5]
  assert all(loc.path == str(path) for loc, _ in got)


def test_arrow_file_format_and_gzip(tmp_path):
  import pyarrow as pa

  table = pa.Table.from_pylist(RECORDS)
  path = tmp_path / "file_format.arrow"
  with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
    writer.write_table(table)
  assert [rec for _, rec in _records(path)] == RECORDS
  gz = tmp_path / "data.jsonl.gz"
  gz.write_bytes(gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS)))
  assert [rec for _, rec in _records(gz)] == RECORDS


def test_save_to_disk_dataset_dict_gives_splits(tmp_path):
  folder = fixtures.write_save_to_disk(tmp_path / "hf", {"train": RECORDS[:3],
                                                         "test": RECORDS[3:]})
  got = _records(folder)
  assert [(loc.split, rec["n"]) for loc, rec in got] == [
      ("train", 0), ("train", 1), ("train", 2), ("test", 3), ("test", 4)]
  # A single split folder (a Dataset) reads by its state.json too.
  assert [rec["n"] for _, rec in _records(folder / "test")] == [3, 4]


def test_broken_lines_are_reported_with_line_numbers(tmp_path):
  path = fixtures.write_jsonl(tmp_path / "bad.jsonl", RECORDS[:2],
                              extra_lines=[b'{"inputs": "x",', b"\xff\xfe not utf8", b"[1, 2]"])
  got = _records(path)
  errors = [rec for _, rec in got if isinstance(rec, readers.MalformedRecord)]
  assert [e.location.index for e in errors] == [3, 4, 5]
  assert "broken JSON" in str(errors[0]) and f"{path}:3" in str(errors[0])
  assert "invalid UTF-8" in str(errors[1])
  assert "a JSON object is needed, got list" in str(errors[2])


def test_missing_and_unsupported_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    readers.list_files(tmp_path / "nope")
  (tmp_path / "notes.txt").write_text("x")
  with pytest.raises(ValueError, match="unsupported file type"):
    readers.list_files(tmp_path / "notes.txt")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="no data files"):
    readers.list_files(tmp_path / "empty")
