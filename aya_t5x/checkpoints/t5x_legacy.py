"""Reads and writes checkpoints in the legacy T5X layout: a msgpack index plus TensorStore arrays.

This is the layout of the public pretrained mT5 checkpoints
(`gs://t5-data/pretrained_models/t5x/mt5_*/checkpoint_1000000`). A checkpoint directory
holds:

* `checkpoint`: a msgpack file written with `flax.serialization`. Its top level is
  `{"version": 3, "optimizer": {"target": ..., "state": {"step": ..., "param_states": ...}}}`
  (version 0 files are bare Flax checkpoints whose top level is the `optimizer` level
  itself). `target` is the nested parameter dict, keyed the T5X way
  (`encoder/layers_0/attention/query/kernel`). A leaf is either an array stored inline
  (msgpack extension type 1: `(shape, dtype name, raw bytes)`; arrays over 1 GiB are split
  into `__msgpack_chunked_array__` dicts) or, for a parameter T5X partitions, the JSON
  of a TensorStore spec pointing at a zarr array.
* one zarr v2 array per such parameter, in a sibling directory named by the parameter's
  path in the train state joined with dots, e.g. `target.encoder.layers_0.attention.query.kernel`.
  The spec in the index holds that name as a relative path (`kvstore.path`, or a top-level
  `path` in specs written before TensorStore 0.1.14), so the directory can be moved; files
  written to Cloud Storage carry a `gcs` kvstore with the placeholder bucket
  `t5x-dummy-bucket`. The arrays are gzip-compressed, their chunks evenly divide the shape
  and hold at most 64 MiB, and their `.zarray` records the dtype (`<f4`, `bfloat16`, ...).

Which parameters go to TensorStore is decided in T5X by partitioning, not by size: every
parameter of a model trained with the pjit partitioner has mesh axes and is written to
TensorStore, however small (norm scales included), while unpartitioned leaves such as the
step counter are stored inline. The writer here does the same: every parameter becomes a
zarr array and the step is stored inline. The reader accepts both kinds of leaf anywhere.

Format version 2 stored bfloat16 arrays in TensorStore as uint16; like T5X, the reader
rejects such arrays instead of returning integers as weights.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import msgpack
import numpy as np
import tensorstore as ts
from flax import serialization, traverse_util

from aya_t5x.atomic_files import write_bytes_atomically

CHECKPOINT_FILENAME = "checkpoint"
_FORMAT_VERSION = 3
# T5X's desired chunk size for a zarr array.
_MAX_CHUNK_BYTES = 64 * 1024 * 1024
# Prefix of every TensorStore directory name: the parameters live under `target` in the
# train state.
_TARGET = "target"


def read_t5x_checkpoint(path: str | os.PathLike) -> dict:
  """Reads the model parameters (`target`) of a legacy T5X checkpoint as numpy arrays.

  Args:
    path: the checkpoint directory (`.../checkpoint_1000000`) or its `checkpoint` file.

  Returns:
    The nested parameter dict keyed as in T5X, for example
    `{"encoder": {"layers_0": {"attention": {"query": {"kernel": array}}}}, ...}`. Each
    array has the dtype it was stored with (float32 for the public checkpoints; bfloat16
    arrays come back as `ml_dtypes.bfloat16`). Optimizer state is not read.

  Raises:
    FileNotFoundError: `path` or its `checkpoint` file does not exist.
    ValueError: the index does not parse or has no `target`, or a referenced zarr array is
      missing, corrupt or of another shape than the index says; the message names the
      parameter and the path.
  """
  checkpoint_dir, index_file = _locate(path)
  match _load_optimizer_level(index_file):
    case {"target": dict() as target}:
      pass
    case _:
      raise ValueError(f"{index_file}: the checkpoint holds no parameter tree under "
                       f"'{_TARGET}'; it is not a T5X train-state checkpoint.")
  leaves = traverse_util.flatten_dict(target, is_leaf=lambda _, node: _is_tensorstore_spec(node))
  params = {keys: _inline_array(keys, leaf) for keys, leaf in leaves.items()
            if not _is_tensorstore_spec(leaf)}
  stored = {keys: leaf for keys, leaf in leaves.items() if _is_tensorstore_spec(leaf)}
  params.update(_read_tensorstore_arrays(stored, checkpoint_dir))
  return traverse_util.unflatten_dict(params)


def read_t5x_step(path: str | os.PathLike) -> int | None:
  """The training step recorded in a legacy T5X checkpoint (`state/step`), or None if absent.

  Only the msgpack index is read, so this is cheap even for the largest checkpoints.

  Raises:
    FileNotFoundError: `path` or its `checkpoint` file does not exist.
    ValueError: the index does not parse.
  """
  _, index_file = _locate(path)
  state = _load_optimizer_level(index_file).get("state")
  step = state.get("step") if isinstance(state, dict) else None
  if step is None or _is_tensorstore_spec(step):
    return None
  return int(np.asarray(step))


def write_t5x_checkpoint(params: Mapping[str, Any], path: str | os.PathLike,
                         step: int = 0) -> None:
  """Writes `params` as a checkpoint in the legacy T5X layout, the one T5X itself writes.

  Every parameter becomes a gzip-compressed zarr array in `path/target.<dotted.name>`,
  keeping its dtype, and the msgpack index `path/checkpoint` (format version 3) records
  each array's TensorStore spec with a relative path, plus `step` as an inline int32.
  The index is written last and atomically, so an interrupted write leaves no
  `checkpoint` file. Optimizer state is not written (`param_states` is empty): a reader
  that restores a whole T5X train state must take the optimizer state from elsewhere.

  Args:
    params: nested dict (or FrozenDict) of arrays keyed the T5X way; keys must be strings
      without "." or "/", since they become directory names.
    path: the checkpoint directory; created if needed.
    step: the training step to record.

  Raises:
    FileExistsError: `path` already holds a `checkpoint` file.
    ValueError: a key cannot be used as a name, or a leaf is not a numeric array.
  """
  checkpoint_dir = Path(path)
  index_file = checkpoint_dir / CHECKPOINT_FILENAME
  if index_file.exists():
    raise FileExistsError(f"{index_file} already exists; refusing to overwrite a checkpoint.")
  flat = traverse_util.flatten_dict(dict(params))
  arrays = {keys: _checked_array(keys, value) for keys, value in flat.items()}
  checkpoint_dir.mkdir(parents=True, exist_ok=True)

  specs, writes = {}, []
  for keys, array in arrays.items():
    name = ".".join((_TARGET, *keys))
    spec = {
        "driver": "zarr",
        "dtype": array.dtype.name,
        "kvstore": {"driver": "file", "path": name},
        "metadata": {
            "compressor": {"id": "gzip"},
            "shape": list(array.shape),
            "chunks": _chunk_shape(array.shape, array.dtype.itemsize),
        },
    }
    # The index keeps the relative path; the write needs the absolute one.
    absolute = {**spec, "kvstore": {"driver": "file", "path": str(checkpoint_dir / name)}}
    store = ts.open(absolute, create=True, delete_existing=True).result()
    writes.append(store.write(array))
    specs[keys] = ts.Spec(spec).to_json()
  for write in writes:
    write.result()

  index = {
      "version": _FORMAT_VERSION,
      "optimizer": {
          _TARGET: traverse_util.unflatten_dict(specs),
          "state": {"step": np.asarray(step, np.int32), "param_states": {}},
      },
  }
  write_bytes_atomically(index_file, serialization.msgpack_serialize(index, in_place=True))


def _locate(path: str | os.PathLike) -> tuple[Path, Path]:
  """Returns (checkpoint directory, index file) for a directory or an index-file path."""
  given = Path(path)
  if not given.exists():
    raise FileNotFoundError(f"T5X checkpoint not found: {given} does not exist.")
  index_file = given / CHECKPOINT_FILENAME if given.is_dir() else given
  if not index_file.is_file():
    raise FileNotFoundError(
        f"T5X checkpoint not found: {index_file} does not exist. Pass a checkpoint "
        f"directory (checkpoint_<step>) that holds a '{CHECKPOINT_FILENAME}' file.")
  return index_file.parent, index_file


def _load_optimizer_level(index_file: Path) -> dict:
  """Parses the msgpack index and returns the level holding `target` and `state`."""
  raw = index_file.read_bytes()
  if raw.startswith(b"model_checkpoint_path"):
    raise ValueError(f"{index_file} is a TensorFlow checkpoint index, not a T5X checkpoint.")
  try:
    contents = serialization.msgpack_restore(raw)
  except (ValueError, TypeError, msgpack.exceptions.UnpackException) as error:
    raise ValueError(f"{index_file} is not a valid T5X msgpack checkpoint file: "
                     f"{error}") from error
  match contents:
    case {"version": version, "optimizer": dict() as optimizer} if version:
      return optimizer
    case dict() if not contents.get("version", 0):
      return contents  # Version 0: a bare Flax checkpoint of the optimizer.
  raise ValueError(f"{index_file} is not a valid T5X msgpack checkpoint file: it holds no "
                   f"'optimizer' dict under a format version.")


def _is_tensorstore_spec(node: Any) -> bool:
  """Whether an index leaf is the JSON of a TensorStore spec rather than a subtree."""
  return (isinstance(node, dict) and isinstance(node.get("driver"), str)
          and "kvstore" in node)


def _inline_array(keys: tuple[str, ...], leaf: Any) -> np.ndarray:
  """An array stored inside the msgpack index, as a numpy array."""
  if isinstance(leaf, (np.ndarray, np.generic, int, float)):
    return np.asarray(leaf)
  raise ValueError(f"parameter {'.'.join(keys)}: unexpected {type(leaf).__name__} in the "
                   f"checkpoint index where an array or a TensorStore spec belongs.")


def _array_directory(spec: Mapping[str, Any], checkpoint_dir: Path) -> Path:
  """The local directory of the zarr array a spec from the index refers to.

  T5X writes each array directly next to the index and records its directory name as a
  path relative to the checkpoint directory. A path that is absolute, a URL (`gs://...`,
  `file://...`) or relative to a Cloud Storage bucket rather than to the checkpoint
  refers to where the checkpoint was written; the array is then looked for under the
  same directory name next to the index.
  """
  kvstore = spec["kvstore"]
  # A kvstore may be a URL string; TensorStore < 0.1.14 kept the path outside the kvstore.
  if isinstance(kvstore, str):
    driver, stored = "url", kvstore
  else:
    driver, stored = kvstore.get("driver"), kvstore.get("path") or spec.get("path") or ""
  stored = PurePosixPath(stored.split("://", 1)[-1].rstrip("/"))
  if not stored.name:
    raise ValueError(f"TensorStore spec without a path: {spec}")
  if driver in ("file", "gfile") and not stored.is_absolute():
    return checkpoint_dir / stored
  return checkpoint_dir / stored.name


def _read_tensorstore_arrays(specs: Mapping[tuple[str, ...], Mapping[str, Any]],
                             checkpoint_dir: Path) -> dict[tuple[str, ...], np.ndarray]:
  """Reads the zarr arrays named by `specs`, all in flight at once, keyed like `specs`."""
  context = ts.Context()
  pending = {}
  for keys, spec in specs.items():
    directory = _array_directory(spec, checkpoint_dir)
    if spec["driver"] != "zarr":
      raise ValueError(f"parameter {'.'.join(keys)} ({directory}): unsupported TensorStore "
                       f"driver '{spec['driver']}'; T5X checkpoints use zarr.")
    open_spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(directory)}}
    pending[keys] = (directory, ts.open(open_spec, open=True, read=True, context=context))

  reads = {}
  for keys, (directory, opening) in pending.items():
    with _naming(keys, directory):
      store = opening.result()
    expected = specs[keys].get("metadata", {}).get("shape")
    if expected is not None and tuple(expected) != tuple(store.shape):
      raise ValueError(f"parameter {'.'.join(keys)} ({directory}): the zarr array has shape "
                       f"{tuple(store.shape)} but the checkpoint index says {tuple(expected)}.")
    if store.dtype.numpy_dtype == np.uint16:
      raise ValueError(f"parameter {'.'.join(keys)} ({directory}): stored as uint16, the "
                       f"bfloat16 encoding of T5X format version 2, which is not supported.")
    reads[keys] = (directory, store.read())

  arrays = {}
  for keys, (directory, reading) in reads.items():
    with _naming(keys, directory):
      arrays[keys] = reading.result()
  return arrays


@contextlib.contextmanager
def _naming(keys: tuple[str, ...], directory: Path) -> Iterator[None]:
  """Re-raises a TensorStore error as a ValueError naming the parameter and its directory."""
  try:
    yield
  except ValueError as error:
    raise ValueError(f"parameter {'.'.join(keys)}: cannot read the zarr array at {directory} "
                     f"(missing or corrupt): {error}") from error


def _checked_array(keys: tuple[Any, ...], value: Any) -> np.ndarray:
  """`value` as a numpy array, after checking that `keys` can name a directory."""
  for key in keys:
    if not isinstance(key, str) or not key or "." in key or "/" in key:
      raise ValueError(f"parameter {keys}: key {key!r} cannot be part of a T5X array name "
                       f"(keys must be non-empty strings without '.' or '/').")
  array = np.asarray(value)
  if array.dtype.kind not in "biuf" and array.dtype.name != "bfloat16":
    raise ValueError(f"parameter {'.'.join(keys)}: {array.dtype} is not a numeric dtype.")
  return array


def _chunk_shape(shape: tuple[int, ...], itemsize: int) -> list[int]:
  """A zarr chunk shape that divides `shape` evenly and holds at most 64 MiB.

  Starting from the whole array, the currently largest chunk dimension is repeatedly
  lowered to the next smaller divisor of its array dimension until the chunk fits.
  """
  budget = max(1, _MAX_CHUNK_BYTES // itemsize)
  chunk = [max(1, size) for size in shape]
  while math.prod(chunk) > budget:
    axis = max(range(len(chunk)), key=lambda i: chunk[i])
    chunk[axis] = next(d for d in range(chunk[axis] - 1, 0, -1) if shape[axis] % d == 0)
  return chunk
