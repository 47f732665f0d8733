"""SeqIO caches written by `aya-t5x cache`: their files, their info, and checking them.

The layout is SeqIO's own (`seqio/scripts/cache_tasks_main.py`), so that
`seqio.get_dataset(..., use_cached=True)` reads it: under the output folder, one folder
per task with

- `<split>.tfrecord-<i>-of-<n>`: `tf.train.Example`s of the tokenized features
  (`inputs`, `targets` without EOS, which the task appends after the cache, and the
  texts as `inputs_pretokenized`, `targets_pretokenized`);
- `info.<split>.json` (shards, features, seqio version), `stats.<split>.json`
  (examples, tokens), and `COMPLETED` when every split is there.

Beside them, `aya_cache.json` (this module's `INFO_FILE`) describes the whole cache: the
command that built it, the seed, a fingerprint of every source's files and of the
vocabulary, the task layout, and per-source statistics (examples, tokens, length
histograms, what each filter dropped, malformed records per file and reason), which the
mixture plan and report read instead of scanning the sources. `dead_letter/<source>.jsonl`
lists the malformed records with file and line.

Nothing here needs Apache Beam: training reads and checks caches with the base install.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from aya_t5x.data import sources

INFO_FILE = "aya_cache.json"
FORMAT = 1
FEATURES = ("inputs", "targets")
BUILD_COMMAND = ("aya-t5x cache --source NAME=PATH ... --vocabulary SPM --output_dir DIR "
                 "(docs/data.md, 'Caching the sources with Apache Beam')")


class CacheError(ValueError):
  """A cache that is missing, stale or incomplete; the message names the rebuild command."""


def _is_remote(path: str) -> bool:
  return "://" in path


def _gfile():
  import tensorflow as tf

  return tf.io.gfile


def join(*parts: str) -> str:
  return "/".join(p.rstrip("/") for p in parts) if _is_remote(parts[0]) else os.path.join(*parts)


def exists(path: str) -> bool:
  return _gfile().exists(path) if _is_remote(path) else os.path.exists(path)


# ----------------------------------------------------------------------------- fingerprints


def _stat(path: str) -> tuple[int, int]:
  if _is_remote(path):
    stat = _gfile().stat(path)
    return int(stat.length), int(stat.mtime_nsec)
  stat = os.stat(path)
  return int(stat.st_size), int(stat.st_mtime_ns)


def _files_under(path: str) -> list[str]:
  if _is_remote(path):
    gfile = _gfile()
    if not gfile.isdir(path):
      return [path]
    return sorted(join(root, name) for root, _, names in gfile.walk(path) for name in names)
  if not os.path.isdir(path):
    return [path]
  return sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)


def source_paths(paths: sources.PathsArg) -> dict[str, str]:
  """A source's paths as {split or "": path}, the form the cache info records."""
  if isinstance(paths, Mapping):
    return {str(split): os.fspath(path) for split, path in sorted(paths.items())}
  return {"": os.fspath(paths)}


def fingerprint(paths: sources.PathsArg) -> str:
  """A digest of the names, sizes and modification times of every file of a source.

  Cheap (no file is read), and it changes when a file is added, removed, rewritten or
  replaced. A missing path is an error naming it.
  """
  digest = hashlib.sha256()
  for split, path in source_paths(paths).items():
    if not exists(path):
      raise CacheError(f"source path {path!r} does not exist")
    for name in _files_under(path):
      size, mtime = _stat(name)
      digest.update(f"{split}\x1f{name}\x1f{size}\x1f{mtime}\n".encode())
  return digest.hexdigest()


def file_digest(path: str) -> str:
  """sha256 of a file's bytes (the vocabulary's, which is small)."""
  digest = hashlib.sha256()
  opener = _gfile().GFile if _is_remote(path) else open
  with opener(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


# ----------------------------------------------------------------------------- layout


def shard_path(task_dir: str, split: str, shard: int, num_shards: int) -> str:
  """SeqIO's shard name: `<split>.tfrecord-00000-of-00004`."""
  return join(task_dir, f"{split}.tfrecord-{shard:05d}-of-{num_shards:05d}")


def task_dir(output_dir: str, task: str) -> str:
  """A task's folder; SeqIO turns `:` in a task name into sub-folders."""
  return join(output_dir, *task.split(":"))


def split_info(num_shards: int) -> dict[str, Any]:
  """`info.<split>.json`: what SeqIO's cached reader needs to parse the shards."""
  from importlib import metadata

  return {"num_shards": num_shards, "seqio_version": metadata.version("seqio"), "features": {
      "inputs": {"shape": [None], "dtype": "int32"},
      "targets": {"shape": [None], "dtype": "int32"},
      "inputs_pretokenized": {"shape": [], "dtype": "string"},
      "targets_pretokenized": {"shape": [], "dtype": "string"}}}


@functools.lru_cache(maxsize=1 << 18)  # token ids repeat: a lookup instead of the loop
def _varint(value: int) -> bytes:
  out = bytearray()
  while True:
    low, value = value & 0x7F, value >> 7
    if value:
      out.append(low | 0x80)
    else:
      out.append(low)
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def tf_example(inputs: Sequence[int], targets: Sequence[int], inputs_text: str,
               targets_text: str) -> bytes:
  """One cached example as a serialized `tf.train.Example`, encoded here without
  TensorFlow (whose import would cost every pipeline worker many seconds).

  Example{features: Features{feature: map<string, Feature>}}, map entries in key order
  (as TensorFlow's deterministic serialization); Feature.bytes_list is field 1,
  int64_list field 3, each list's values field 1 (int64s packed). Token ids are never
  negative, so plain varints encode them.
  """
  def ints(values: Sequence[int]) -> bytes:
    return _field(3, _field(1, b"".join(_varint(v) for v in values)))

  def text(value: str) -> bytes:
    return _field(1, _field(1, value.encode("utf-8")))

  features = {"inputs": ints(inputs), "inputs_pretokenized": text(inputs_text),
              "targets": ints(targets), "targets_pretokenized": text(targets_text)}
  entries = b"".join(_field(1, _field(1, key.encode()) + _field(2, value))
                     for key, value in sorted(features.items()))
  return _field(1, entries)


# ----------------------------------------------------------------------------- reading


def read_info(cache_dir: str) -> dict[str, Any]:
  """The cache's `aya_cache.json`; a missing or unfinished cache is a `CacheError`."""
  path = join(cache_dir, INFO_FILE)
  if not exists(path):
    raise CacheError(
        f"no finished cache at {cache_dir!r} ({INFO_FILE} is missing; a build that failed "
        f"or is still running leaves none). Build it with: {BUILD_COMMAND}")
  opener = _gfile().GFile if _is_remote(path) else open
  with opener(path, "r") as f:
    info = json.load(f)
  if info.get("format") != FORMAT:
    raise CacheError(f"{path}: cache format {info.get('format')!r}, this aya_t5x reads "
                     f"{FORMAT}; rebuild it with: {info.get('command') or BUILD_COMMAND}")
  return info


def split_stats(cache_dir: str, task: str, split: str) -> dict[str, Any]:
  """A cached task split's `stats.<split>.json` (examples, tokens without EOS, longest)."""
  path = join(task_dir(cache_dir, task), f"stats.{split}.json")
  if not exists(path):
    raise CacheError(f"{path} is missing: the cache at {cache_dir} is incomplete; rebuild it "
                     f"with: {BUILD_COMMAND}")
  opener = _gfile().GFile if _is_remote(path) else open
  with opener(path, "r") as f:
    return json.load(f)


def check_source(info: Mapping[str, Any], cache_dir: str, source: str,
                 paths: sources.PathsArg) -> None:
  """Raises unless the cache holds `source` built from exactly these files, unchanged."""
  rebuild = f"rebuild it with: {info.get('command') or BUILD_COMMAND}"
  cached = info["sources"].get(source)
  if cached is None:
    raise CacheError(f"cache {cache_dir} has no source {source!r} (it holds "
                     f"{', '.join(sorted(info['sources']))}); {rebuild}")
  if cached["paths"] != source_paths(paths):
    raise CacheError(f"cache {cache_dir}: source {source} was built from {cached['paths']}, "
                     f"not {source_paths(paths)}; {rebuild}")
  if cached["fingerprint"] != fingerprint(paths):
    raise CacheError(f"cache {cache_dir} is stale: the files of source {source} "
                     f"({', '.join(source_paths(paths).values())}) changed since it was "
                     f"built; {rebuild}")


def check_vocabulary(info: Mapping[str, Any], cache_dir: str, vocabulary) -> None:
  """Raises if `vocabulary` (a SentencePiece file) is not the one the cache was built with."""
  path = getattr(vocabulary, "sentencepiece_model_file", None)
  if path is None or not exists(path):
    return
  if file_digest(path) != info["vocabulary"]["sha256"]:
    raise CacheError(f"cache {cache_dir} was tokenized with {info['vocabulary']['path']}, "
                     f"not with {path} (their contents differ); rebuild it with: "
                     f"{info.get('command') or BUILD_COMMAND}")


def source_index(info: Mapping[str, Any], cache_dir: str, source: str) -> sources.SourceIndex:
  """What the cache holds of a source, as the `SourceIndex` a scan would have returned."""
  cached = info["sources"][source]
  counts: collections.Counter = collections.Counter()
  chars: collections.Counter = collections.Counter()
  for split, language, dataset, examples, characters in cached["counts"]:
    counts[(split, language, dataset)] = examples
    chars[(split, language, dataset)] = characters
  stats = cached["stats"]
  report = sources.DataReport(
      source=source, read=stats["read"], kept=stats["kept"],
      malformed=collections.Counter(stats["malformed"]), malformed_at=stats["malformed_at"],
      removed=collections.Counter(stats["removed"]), removed_at=stats["removed_at"],
      details=stats["details"])
  return sources.SourceIndex(
      spec=sources.get_source(source), files=[], counts=counts, chars=chars,
      files_by_language={}, report=report, filter_runs=[], tolerant=True,
      cache_dir=cache_dir)


def format_summary(info: Mapping[str, Any]) -> str:
  """Plain lines per source: read, kept, malformed and removed, for a terminal or log."""
  lines = []
  for name, cached in info["sources"].items():
    stats = cached["stats"]
    lines.append(f"{name}: read {stats['read']}, kept {stats['kept']} "
                 f"({stats['inputs_tokens'] + stats['targets_tokens']} tokens), skipped "
                 f"{sum(stats['malformed'].values())} malformed, removed "
                 f"{sum(stats['removed'].values())}")
    for reason, count in sorted(stats["malformed"].items(), key=lambda kv: -kv[1]):
      lines.append(f"  malformed  {count:>8}  {reason}")
    for reason, count in sorted(stats["removed"].items(), key=lambda kv: -kv[1]):
      lines.append(f"  removed    {count:>8}  {reason}")
  return "\n".join(lines)


def use_cache_dir(cache_dir: str) -> None:
  """Makes SeqIO look for cached tasks in `cache_dir` (T5X's global cache folders)."""
  import seqio

  seqio.add_global_cache_dirs([cache_dir])
