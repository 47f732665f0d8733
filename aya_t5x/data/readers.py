"""Reads records from the formats the sources are published in, each with its file and line.

Formats, chosen by name:

- `*.jsonl`, `*.json` (one JSON object a line), optionally `.gz`;
- `*.parquet` (read in row batches with pyarrow);
- `*.arrow` (Arrow IPC, stream or file format; what `datasets.save_to_disk` writes);
- a Hugging Face `save_to_disk` folder: a Dataset (`state.json` lists its arrow files)
  or a DatasetDict (`dataset_dict.json` lists split folders, whose names become the
  split of their records). No `datasets` package is needed;
- a TFDS build folder (`dataset_info.json` and `features.json` beside the record
  shards, what `tfds build` or `store_as_tfds_dataset` writes): each of its splits, read
  with `tensorflow_datasets`; text features come back as strings. Its records are named
  `<folder>@tfds:<split>`, row by row;
- any other folder: every supported file under it, in sorted order.

Paths with a scheme (`gs://...`) are read through `tf.io.gfile`.

Broken lines do not stop the reader: it yields a `MalformedRecord` in place of the
record, so that the caller either raises it (strict) or counts it (tolerant).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
TABLE_SUFFIXES = (".parquet", ".arrow")
SUFFIXES = JSON_SUFFIXES + TABLE_SUFFIXES
TFDS_SPLIT = "@tfds:"  # `<build folder>@tfds:<split>` names one split of a TFDS build


@dataclasses.dataclass(frozen=True, kw_only=True)
class Location:
  """Where a record is: a file and its 1-based line (JSONL) or row (parquet, arrow)."""

  path: str
  index: int
  unit: str = "line"
  split: str | None = None  # the split the file belongs to, when its folder says so

  def __str__(self) -> str:
    return f"{self.path}:{self.index}" if self.unit == "line" else \
        f"{self.path} {self.unit} {self.index}"


class MalformedRecord(ValueError):
  """A record that cannot be used, with where it is and which field is wrong."""

  def __init__(self, location: Location, field: str | None, reason: str):
    self.location = location
    self.field = field
    self.reason = reason
    where = f"field {field!r}: " if field else ""
    super().__init__(f"{location}: {where}{reason}")


Record = dict[str, Any]


def _is_remote(path: str) -> bool:
  return "://" in path


def _open(path: str) -> BinaryIO:
  if _is_remote(path):
    import tensorflow as tf

    return tf.io.gfile.GFile(path, "rb")
  return open(path, "rb")


def _isdir(path: str) -> bool:
  if _is_remote(path):
    import tensorflow as tf

    return tf.io.gfile.isdir(path)
  return os.path.isdir(path)


def _exists(path: str) -> bool:
  if _is_remote(path):
    import tensorflow as tf

    return tf.io.gfile.exists(path)
  return os.path.exists(path)


def _join(*parts: str) -> str:
  return "/".join(p.rstrip("/") for p in parts) if _is_remote(parts[0]) else \
      os.path.join(*parts)


def _read_json(path: str) -> Any:
  with _open(path) as f:
    return json.loads(f.read().decode("utf-8"))


def _walk(path: str) -> list[str]:
  if _is_remote(path):
    import tensorflow as tf

    return sorted(_join(root, name) for root, _, names in tf.io.gfile.walk(path)
                  for name in names)
  return sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)


def list_files(path: str | os.PathLike, split: str | None = None) -> list[tuple[str, str | None]]:
  """The data files under `path` with the split their folder gives them (or `split`)."""
  path = os.fspath(path)
  if not _exists(path):
    raise FileNotFoundError(
        f"data path {path!r} does not exist; give a file ({', '.join(SUFFIXES)}) or a "
        "folder (for example a Hugging Face save_to_disk folder).")
  if not _isdir(path):
    if not path.endswith(SUFFIXES):
      raise ValueError(f"{path}: unsupported file type; supported: {', '.join(SUFFIXES)}")
    return [(path, split)]
  dict_json = _join(path, "dataset_dict.json")
  if _exists(dict_json):
    files = []
    for name in _read_json(dict_json).get("splits", []):
      files += list_files(_join(path, name), split=name)
    return files
  state_json = _join(path, "state.json")
  if _exists(state_json):
    state = _read_json(state_json)
    names = [entry["filename"] for entry in state.get("_data_files", [])]
    if not names:
      raise ValueError(f"{state_json}: no _data_files listed; is this a save_to_disk folder?")
    return [(_join(path, name), split or state.get("_split")) for name in names]
  if _exists(_join(path, "dataset_info.json")) and _exists(_join(path, "features.json")):
    return _tfds_splits(path, split)
  files = [(f, split) for f in _walk(path) if f.endswith(SUFFIXES)]
  if not files:
    raise FileNotFoundError(f"no data files ({', '.join(SUFFIXES)}) under {path!r}")
  return files


Located = Iterator[tuple[Location, Record | MalformedRecord]]


def _iter_jsonl(path: str, split: str | None) -> Located:
  with _open(path) as raw:
    stream: BinaryIO = gzip.GzipFile(fileobj=raw) if path.endswith(".gz") else raw
    for number, line in enumerate(stream, start=1):
      location = Location(path=path, index=number, unit="line", split=split)
      if not line.strip():
        continue
      try:
        text = line.decode("utf-8")
      except UnicodeDecodeError as e:
        yield location, MalformedRecord(location, None, f"invalid UTF-8 at byte {e.start}")
        continue
      try:
        record = json.loads(text)
      except json.JSONDecodeError as e:
        yield location, MalformedRecord(location, None, f"broken JSON ({e.msg}, column {e.colno})")
        continue
      if not isinstance(record, dict):
        yield location, MalformedRecord(location, None,
                                        f"a JSON object is needed, got {type(record).__name__}")
        continue
      yield location, record


def _arrow_batches(path: str):
  import pyarrow as pa
  import pyarrow.parquet as pq

  with _open(path) as f:
    data = f if not _is_remote(path) else io.BytesIO(f.read())
    if path.endswith(".parquet"):
      yield from pq.ParquetFile(data).iter_batches(batch_size=1024)
      return
    head = data.read(6)
    data.seek(0)
    # The IPC file format starts with the magic "ARROW1"; save_to_disk writes streams.
    reader = pa.ipc.open_file(data) if head == b"ARROW1" else pa.ipc.open_stream(data)
    if head == b"ARROW1":
      for i in range(reader.num_record_batches):
        yield reader.get_batch(i)
    else:
      yield from reader


def _iter_table(path: str, split: str | None) -> Located:
  number = 0
  for batch in _arrow_batches(path):
    for record in batch.to_pylist():
      number += 1
      yield Location(path=path, index=number, unit="row", split=split), record


def _tfds_splits(path: str, split: str | None) -> list[tuple[str, str | None]]:
  import tensorflow_datasets as tfds

  names = list(tfds.builder_from_directory(path).info.splits)
  if split is not None and split in names:
    names = [split]
  # A TFDS split name is the record split unless the user mapped the folder to one.
  return [(f"{path}{TFDS_SPLIT}{name}", split or name) for name in names]


def _plain(value: Any, location: Location, field: str) -> Any:
  """A TFDS feature value as JSON would give it: text as str, arrays as lists."""
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError as e:
      raise MalformedRecord(location, field, f"invalid UTF-8 at byte {e.start}") from None
  if hasattr(value, "tolist"):  # numpy arrays and scalars; text arrays hold bytes
    value = value.tolist()
    return [_plain(v, location, field) for v in value] if isinstance(value, list) else (
        _plain(value, location, field))
  return value


def _iter_tfds(name: str, split: str | None) -> Located:
  import tensorflow_datasets as tfds

  folder, tfds_split = name.rsplit(TFDS_SPLIT, 1)
  dataset = tfds.builder_from_directory(folder).as_dataset(split=tfds_split,
                                                            shuffle_files=False)
  for number, example in enumerate(tfds.as_numpy(dataset), start=1):
    location = Location(path=name, index=number, unit="row", split=split)
    try:
      yield location, {key: _plain(value, location, key) for key, value in example.items()}
    except MalformedRecord as e:
      yield location, e


def iter_file(path: str, split: str | None = None
              ) -> Iterator[tuple[Location, Record | MalformedRecord]]:
  """Records of one file, each with its location; unreadable ones as `MalformedRecord`."""
  if TFDS_SPLIT in path:
    return _iter_tfds(path, split)
  if path.endswith(JSON_SUFFIXES):
    return _iter_jsonl(path, split)
  if path.endswith(TABLE_SUFFIXES):
    return _iter_table(path, split)
  raise ValueError(f"{path}: unsupported file type; supported: {', '.join(SUFFIXES)}")


def iter_records(path: str | os.PathLike, split: str | None = None
                 ) -> Iterator[tuple[Location, Record | MalformedRecord]]:
  """Records of every data file under `path` (see the module docstring for formats)."""
  for name, file_split in list_files(path, split):
    yield from iter_file(name, file_split)
