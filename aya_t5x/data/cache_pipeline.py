"""`aya-t5x cache`: one Apache Beam pipeline from the training sources to SeqIO caches.

For each source (a registered `SourceSpec` and its paths) the pipeline

1. lists the source's files and reads them in parallel, file by file (`readers`), and
   validates each record into an `Example` (`sources.to_example`); a malformed record
   goes to the dead-letter output with its file, line and reason, and never stops the
   pipeline (`strict` fails the build after writing the dead letters instead);
2. runs the source's filters (`spec.filters()`, plus decontamination against evaluation
   files when asked) in their order, reusing their code: a record filter judges each
   example alone; a filter that must see the data first (a cap, template pruning) runs
   one scan per `scan_key` group (a cap's group, a dataset's templates) over the group's
   examples in source order, so its decisions are exactly those of `sources.scan`;
3. removes exact duplicates of (inputs, targets) within each source and split, keeping
   the first in source order;
4. assigns each example its task (`registration.task_name`, the layout the mixture
   registers), tokenizes it, and writes each task's shards in SeqIO's cache layout with
   its info and statistics (`caches`), and the cache's `aya_cache.json`.

Every decision depends only on the data and the seed, never on how the work was split:
groups are sorted by (file, line) before a scan, and shards and their order come from a
hash of (seed, source, file, line). The same seed gives byte-identical files on 1 worker
or 100. Workers share nothing but the pipeline's elements; every file written lies under
the output folder (temporary names there, then renamed into place).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from aya_t5x.data import caches, mixing, readers, registration, sources
from aya_t5x.data import filters as filters_lib
from aya_t5x.data.examples import Example

DEAD_LETTER_DIR = "dead_letter"
HISTOGRAM_BUCKETS = tuple(2 ** i for i in range(15))  # token lengths, upper bounds


@dataclasses.dataclass(frozen=True, kw_only=True)
class CacheConfig:
  """What `aya-t5x cache` builds.

  Attributes:
    sources: {source name: paths} (a file, a folder, or {split: path}); the names are
      registered sources (`aya_t5x.tasks` registers the recipe's six; the command line
      imports it).
    output_dir: where the cache goes (local or a `gs://` path the workers can write).
    vocabulary: the SentencePiece model file the workers tokenize with.
    seed: the seed of the shard layout and order. Caps keep the seeds their filters
      were configured with, so that the cache holds what the on-the-fly tasks give.
    boosts: {source: {dataset pattern: factor}}: the patterns get tasks of their own, as
      in the mixture (default: `aya_t5x.data.mixing.DEFAULT_BOOSTS`).
    decontaminate: {evaluation set name: file} whose word n-grams no kept example may
      share (`filters.Decontaminate`); `decontaminate_n` is n.
    dedup: remove exact duplicates of (inputs, targets) within a source and split.
    strict: fail (after writing the dead letters) if any record is malformed.
    shard_examples, min_shards, max_shards: a task split gets ceil(examples /
      shard_examples) shards, clamped to [min_shards, max_shards]; for each host to read
      only its own files, min_shards must be at least the number of training hosts.
    command: the command line that built the cache, recorded for rebuild messages.
  """

  sources: Mapping[str, sources.PathsArg]
  output_dir: str
  vocabulary: str
  seed: int = 0
  boosts: Mapping[str, Mapping[str, float]] | None = None
  decontaminate: Mapping[str, str] = dataclasses.field(default_factory=dict)
  decontaminate_n: int = 13
  dedup: bool = True
  strict: bool = False
  shard_examples: int = 50_000
  min_shards: int = 1
  max_shards: int = 1024
  command: str = ""

  def __post_init__(self):
    if not self.sources:
      raise ValueError("no sources to cache: give at least one --source NAME=PATH")
    if self.shard_examples < 1 or not 1 <= self.min_shards <= self.max_shards:
      raise ValueError(f"shards: need shard_examples >= 1 and 1 <= min_shards <= max_shards, "
                       f"got {self.shard_examples}, {self.min_shards}, {self.max_shards}")

  def source_boosts(self, source: str) -> Mapping[str, float]:
    if self.boosts is not None:
      return self.boosts.get(source, {})
    return mixing.DEFAULT_BOOSTS.get(source, {})


# ----------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True, kw_only=True)
class _SourcePlan:
  """What the workers need to know about one source (pickled into the pipeline)."""

  name: str
  spec: sources.SourceSpec
  files: tuple[tuple[str, str | None], ...]
  filters: tuple[Any, ...]
  patterns: tuple[str, ...]


def _plans(config: CacheConfig) -> list[_SourcePlan]:
  extra: tuple[Any, ...] = ()
  if config.decontaminate:
    extra = (filters_lib.Decontaminate.from_files(dict(config.decontaminate),
                                                  n=config.decontaminate_n),)
  plans = []
  for name, paths in sorted(config.sources.items()):
    spec = sources.get_source(name)
    files = tuple(f for path, split in sources.paths_by_split(paths)
                  for f in readers.list_files(path, split))
    plans.append(_SourcePlan(name=name, spec=spec, files=files,
                             filters=(*spec.filters(), *extra),
                             patterns=registration.group_patterns(
                                 boosts=config.source_boosts(name))))
  return plans


def _stages(filters: Sequence[Any]) -> list[tuple[bool, tuple[Any, ...]]]:
  """Consecutive record filters as one stage; each scanning filter a stage of its own."""
  stages: list[tuple[bool, tuple[Any, ...]]] = []
  for config in filters:
    scanning = bool(config.start().needs_scan)
    if not scanning and stages and not stages[-1][0]:
      stages[-1] = (False, (*stages[-1][1], config))
    else:
      stages.append((scanning, (config,)))
  return stages


def _hash(*parts: Any) -> int:
  text = "\x1f".join(str(p) for p in parts)
  return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _text_digest(*parts: str) -> str:
  # 128 bits: at xP3x's 168M examples a 64-bit hash would merge two distinct examples
  # with a chance of about 1 in 1,300.
  return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).hexdigest()


# ----------------------------------------------------------------------------- files
# Written through Beam's file systems (local, gs://, s3://, hdfs://), never TensorFlow's:
# a worker that imports TensorFlow spends many seconds on it.


def _masked_crc(data: bytes) -> bytes:
  import google_crc32c

  crc = google_crc32c.value(data)
  return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _write_file(path: str, chunks: Iterable[bytes]) -> None:
  """Writes a file under the output folder atomically: a temporary name unique to this
  writer (a retried or speculative worker never writes into another's), then a rename."""
  tmp = f"{path}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
  with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
    for chunk in chunks:
      f.write(chunk)
  if FileSystems.exists(path):
    FileSystems.delete([path])
  FileSystems.rename([tmp], [path])


def _tfrecord_chunks(records: Iterable[bytes]) -> Iterator[bytes]:
  """TFRecord framing: length, its masked CRC32C, the record, its masked CRC32C."""
  for record in records:
    length = struct.pack("<Q", len(record))
    yield length + _masked_crc(length) + record + _masked_crc(record)


def _write_text(path: str, text: str) -> None:
  _write_file(path, [text.encode("utf-8")])


def _write_json(path: str, value: Any) -> None:
  _write_text(path, json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- transforms

# Elements between the steps: (source, order, Example) where order is (file rank, record
# number), the position the single-process scan would meet the example at.
Keyed = tuple[str, tuple[int, int], Example]


class _ReadFile(beam.DoFn):
  """Reads one file of a source; malformed records go to the 'dead' output."""

  def __init__(self, plans: Mapping[str, _SourcePlan]):
    self._plans = dict(plans)

  def process(self, element: tuple[str, int]) -> Iterator[Any]:
    source, rank = element
    plan = self._plans[source]
    path, split = plan.files[rank]
    read = 0
    for location, record in readers.iter_file(path, split):
      read += 1
      try:
        if isinstance(record, readers.MalformedRecord):
          raise record
        yield source, (rank, location.index), sources.to_example(plan.spec, record, location)
      except readers.MalformedRecord as error:
        yield beam.pvalue.TaggedOutput("dead", (source, (rank, location.index), {
            "source": source, "file": location.path, location.unit: location.index,
            "field": error.field, "reason": error.reason,
            "kind": sources.malformed_kind(error)}))
    yield beam.pvalue.TaggedOutput("count", ((source, "read", ""), read))


class _RecordFilters(beam.DoFn):
  """Filters that judge each example alone, in order; the first reason removes it."""

  def __init__(self, configs: Sequence[Any]):
    self._configs = tuple(configs)
    self._runs: list[Any] = []

  def setup(self):
    self._runs = [config.start() for config in self._configs]

  def process(self, element: Keyed) -> Iterator[Any]:
    source, _, example = element
    for run in self._runs:
      reason = run.reason(example)
      if reason is not None:
        yield beam.pvalue.TaggedOutput("removed", _removed(source, run.name, reason, example))
        return
    yield element


def _removed(source: str, name: str, reason: str, example: Example):
  return (source, f"{name}: {reason}"), str(example.location)


class _GroupScan(beam.DoFn):
  """A scanning filter over one group, in source order: observe all, finalize, judge."""

  def __init__(self, config: Any):
    self._config = config

  def process(self, element: tuple[tuple[str, Any], Any]) -> Iterator[Any]:
    (source, _), items = element
    run = self._config.start()
    ordered = sorted(items, key=lambda item: item[0])
    for _, example in ordered:
      run.observe(example)
    run.finalize()
    for order, example in ordered:
      reason = run.reason(example)
      if reason is None:
        yield source, order, example
      else:
        yield beam.pvalue.TaggedOutput("removed", _removed(source, run.name, reason, example))
    summary = run.summary()
    if summary:
      settings = tuple(sorted(f.name for f in dataclasses.fields(self._config))
                       if dataclasses.is_dataclass(self._config) else ())
      yield beam.pvalue.TaggedOutput("summary", ((source, run.name, settings), summary))


def _first_of_duplicates(element) -> Iterator[Any]:
  (source, _), items = element
  ordered = sorted(items, key=lambda item: item[0])
  yield source, *ordered[0]
  for _, example in ordered[1:]:
    yield beam.pvalue.TaggedOutput(
        "removed", _removed(source, "dedup", "duplicate (inputs, targets)", example))


class _Tokenize(beam.DoFn):
  """The example's task, token ids and serialized record; statistics on the side."""

  def __init__(self, plans: Mapping[str, _SourcePlan], vocabulary: str, seed: int):
    self._plans = {name: (plan.patterns, plan.spec.multilingual)
                   for name, plan in plans.items()}
    self._vocabulary_path = vocabulary
    self._seed = seed
    self._vocabulary = None

  def setup(self):
    # SentencePiece itself, not seqio's vocabulary (which would import TensorFlow): the
    # same ids as seqio's tokenize for a vocabulary without extra ids (the tests compare).
    import sentencepiece

    with FileSystems.open(self._vocabulary_path,
                          compression_type=CompressionTypes.UNCOMPRESSED) as f:
      self._vocabulary = sentencepiece.SentencePieceProcessor(model_proto=f.read())

  def process(self, element: Keyed) -> Iterator[Any]:
    source, order, example = element
    patterns, multilingual = self._plans[source]
    group = registration.group_of(example.dataset, patterns)
    task = registration.task_name(source, group, example.language if multilingual else None)
    inputs = self._vocabulary.encode(example.inputs, out_type=int)
    targets = self._vocabulary.encode(example.targets, out_type=int)
    record = caches.tf_example(inputs, targets, example.inputs, example.targets)
    key = _hash(self._seed, source, example.location.path, example.location.index)
    yield (task, example.split), (key, record, len(inputs), len(targets))
    # Statistics add up within the bundle and leave once at its end: one element per key
    # and bundle instead of seven per example.
    counts = self._counts
    cell = (example.split, example.language, example.dataset)
    counts[(source, "examples", cell)] += 1
    counts[(source, "chars", cell)] += len(example.inputs) + len(example.targets)
    for feature, ids in (("inputs", inputs), ("targets", targets)):
      counts[(source, f"{feature}_tokens", "")] += len(ids)
      counts[(source, f"{feature}_length", _bucket(len(ids)))] += 1
    self._tasks.add((task, source))

  def start_bundle(self):
    self._counts: collections.Counter = collections.Counter()
    self._tasks: set[tuple[str, str]] = set()

  def finish_bundle(self) -> Iterator[Any]:
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    def out(tag: str, value: Any):
      return beam.pvalue.TaggedOutput(tag, WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()]))

    for key, value in sorted(self._counts.items(), key=repr):
      yield out("count", (key, value))
    for pair in sorted(self._tasks):
      yield out("task", pair)


def _bucket(length: int) -> int:
  """The histogram bucket of a length: the least power of two at least as large."""
  for bound in HISTOGRAM_BUCKETS:
    if length <= bound:
      return bound
  return HISTOGRAM_BUCKETS[-1] * 2


def shard_count(examples: int, config: CacheConfig) -> int:
  return min(config.max_shards,
             max(config.min_shards, math.ceil(examples / config.shard_examples)))


class _WriteShard(beam.DoFn):
  """Writes one shard of a task split: its records in the order of their hash keys."""

  def __init__(self, output_dir: str):
    self._output_dir = output_dir

  def process(self, element) -> Iterator[Any]:
    (task, split, shard, num_shards), items = element
    ordered = sorted(items, key=lambda item: (item[0], item[1]))
    path = caches.shard_path(caches.task_dir(self._output_dir, task), split, shard, num_shards)
    _write_file(path, _tfrecord_chunks(record for _, record, *_ in ordered))
    yield task, split, shard


class _TaskStats(beam.CombineFn):
  """SeqIO's `stats.<split>.json` figures: examples, tokens and longest (EOS excluded)."""

  def create_accumulator(self):
    return [0, 0, 0, 0, 0]

  def add_input(self, acc, value):
    _, _, inputs, targets = value
    return [acc[0] + 1, acc[1] + inputs, acc[2] + targets, max(acc[3], inputs),
            max(acc[4], targets)]

  def merge_accumulators(self, accumulators):
    accs = list(accumulators)
    return [sum(a[0] for a in accs), sum(a[1] for a in accs), sum(a[2] for a in accs),
            max(a[3] for a in accs), max(a[4] for a in accs)]

  def extract_output(self, acc):
    return {"examples": acc[0], "inputs_tokens": acc[1], "targets_tokens": acc[2],
            "inputs_max_tokens": acc[3], "targets_max_tokens": acc[4]}


class _FinishSplit(beam.DoFn):
  """Empty files for shards no example fell in, then the split's info and stats."""

  def __init__(self, config: CacheConfig):
    self._config = config

  def process(self, element, written) -> Iterator[Any]:
    (task, split), stats = element
    num_shards = shard_count(stats["examples"], self._config)
    folder = caches.task_dir(self._config.output_dir, task)
    present = {shard for t, s, shard in written if (t, s) == (task, split)}
    for shard in range(num_shards):
      if shard not in present:
        _write_file(caches.shard_path(folder, split, shard, num_shards), ())
    _write_json(caches.join(folder, f"info.{split}.json"), caches.split_info(num_shards))
    _write_json(caches.join(folder, f"stats.{split}.json"), stats)
    yield task, split


def _complete_task(element, output_dir: str) -> str:
  task, _ = element
  _write_text(caches.join(caches.task_dir(output_dir, task), "COMPLETED"), "")
  return task


def _write_dead_letters(element, output_dir: str) -> tuple[str, int]:
  source, items = element
  lines = [json.dumps(record, sort_keys=True, ensure_ascii=False)
           for _, record in sorted(items, key=lambda item: item[0])]
  _write_text(caches.join(output_dir, DEAD_LETTER_DIR, f"{source}.jsonl"),
              "".join(f"{line}\n" for line in lines))
  return source, len(lines)


def _merge_summaries(summaries: Sequence[Mapping[str, Any]],
                     settings: frozenset[str] = frozenset()) -> dict[str, Any]:
  """One filter's summaries from its groups as one: counts add up, dictionaries merge key
  by key, a share `<x>_removed_pct` is recomputed from its parts; the filter's `settings`
  (its config fields, such as a cap's size) and anything else keep their first value."""
  merged: dict[str, Any] = {}
  for summary in summaries:
    for key, value in summary.items():
      if key not in merged or key in settings:
        merged.setdefault(key, value)
      elif isinstance(value, dict):
        merged[key] = _merge_summaries([merged[key], value])
      elif isinstance(value, int) and not isinstance(value, bool):
        merged[key] = merged[key] + value
  for key in [k for k in merged if k.endswith("_removed_pct")]:
    part, whole = key.removesuffix("_pct"), key.removesuffix("_removed_pct")
    if isinstance(merged.get(part), int) and isinstance(merged.get(whole), int):
      merged[key] = round(100.0 * merged[part] / merged[whole], 2) if merged[whole] else 0.0
  return merged


class _WriteInfo(beam.DoFn):
  """The cache's `aya_cache.json`, last: its presence says the cache is complete."""

  def __init__(self, config: CacheConfig, plans: Mapping[str, _SourcePlan]):
    self._config = config
    self._names = sorted(plans)
    self._patterns = {name: list(plan.patterns) for name, plan in plans.items()}
    # Taken on the machine that starts the pipeline, before any file is read: a source
    # changed while the pipeline runs makes the cache stale, as it should.
    self._fingerprints = {name: caches.fingerprint(config.sources[name]) for name in plans}
    self._vocabulary_digest = caches.file_digest(config.vocabulary)

  def process(self, _, counts, removed_at, summaries, tasks, completed, dead_letters):
    config = self._config
    del completed  # a side input only so that this runs after every task is written
    per_source: dict[str, Any] = {name: {
        "stats": {"read": 0, "kept": 0, "malformed": {}, "malformed_at": {},
                  "malformed_by_file": {}, "removed": {}, "removed_at": {}, "details": {},
                  "inputs_tokens": 0, "targets_tokens": 0,
                  "inputs_length_histogram": {}, "targets_length_histogram": {}},
        "counts": collections.defaultdict(lambda: [0, 0])} for name in self._names}
    for (source, kind, key), value in counts:
      stats = per_source[source]["stats"]
      if kind in ("examples", "chars"):
        per_source[source]["counts"][tuple(key)][kind == "chars"] += value
        stats["kept"] += value if kind == "examples" else 0
      elif kind == "read":
        stats["read"] += value
      elif kind == "malformed":
        file, reason = key
        stats["malformed"][reason] = stats["malformed"].get(reason, 0) + value
        stats["malformed_by_file"].setdefault(file, {})[reason] = value
      elif kind == "removed":
        stats["removed"][key] = value
      elif kind.endswith("_length"):
        stats[f"{kind}_histogram"][str(key)] = value
      else:
        stats[kind] += value
    for (source, reason), locations in removed_at:
      per_source[source]["stats"]["removed_at"][reason] = sorted(locations)
    for source, kind, locations in dead_letters:
      per_source[source]["stats"]["malformed_at"][kind] = sorted(locations)
    by_filter: dict[tuple[str, str], list] = collections.defaultdict(list)
    for (source, name, settings), summary in summaries:
      by_filter[(source, name, settings)].append(summary)
    for (source, name, settings), found in sorted(by_filter.items()):
      per_source[source]["stats"]["details"][name] = _merge_summaries(
          sorted(found, key=lambda s: json.dumps(s, sort_keys=True)), frozenset(settings))
    malformed = {s: sum(v["stats"]["malformed"].values()) for s, v in per_source.items()}
    if config.strict and any(malformed.values()):
      where = caches.join(config.output_dir, DEAD_LETTER_DIR)
      found = ", ".join(f"{s} ({n})" for s, n in malformed.items() if n)
      raise caches.CacheError(
          f"--strict: malformed records in {found}; they are listed with file and line in "
          f"{where}. The cache is left unfinished ({caches.INFO_FILE} is not written); fix "
          "the records, or build without --strict to skip and count them.")
    info = {
        "format": caches.FORMAT, "command": config.command, "seed": config.seed,
        "dedup": config.dedup, "strict": config.strict,
        "decontaminate": dict(config.decontaminate), "decontaminate_n": config.decontaminate_n,
        "vocabulary": {"path": config.vocabulary,
                       "sha256": self._vocabulary_digest},
        "sources": {name: {
            "paths": caches.source_paths(config.sources[name]),
            "fingerprint": self._fingerprints[name],
            "patterns": self._patterns[name],
            "stats": per_source[name]["stats"],
            "counts": sorted([*key, *value] for key, value in
                             per_source[name]["counts"].items())} for name in self._names},
        "tasks": dict(sorted(tasks)),
    }
    _write_json(caches.join(config.output_dir, caches.INFO_FILE), info)
    yield info


def _top_locations(pcoll, label: str):
  return (pcoll | f"{label}_top" >> beam.combiners.Top.PerKey(sources.KEEP_EXAMPLES,
                                                               reverse=True))


# The elements between the steps: a `Keyed` example (source, order, example); a dead
# letter (source, order, record of the malformed input); a removal ((source, "filter:
# reason"), location); a count ((source, kind, detail), n). The functions below name what
# each step takes from them.


def _malformed_count(dead) -> tuple[tuple[str, str, tuple[str, str]], int]:
  source, _, record = dead
  return (source, "malformed", (record["file"], record["kind"])), 1


def _source_index(element: Keyed, count: int, names: Sequence[str]) -> int:
  return names.index(element[0])


def _scan_grouping(key_of: Callable[[Example], Iterable[Any]] | None):
  """The key a scanning filter groups by: the source and the filter's own key (if any)."""

  def group(element: Keyed):
    source, order, example = element
    return (source, tuple(key_of(example)) if key_of else ()), (order, example)

  return group


def _dedup_key(element: Keyed):
  source, order, example = element
  text = _text_digest(example.inputs, example.targets)
  return (source, f"{example.split}\x1f{text}"), (order, example)


def _removal_count(removal) -> tuple[tuple[str, str, str], int]:
  (source, reason), _ = removal
  return (source, "removed", reason), 1


def _dead_by_source(dead):
  source, order, record = dead
  return source, (order, record)


def _dead_where(dead):
  source, _, record = dead
  return (source, record["kind"]), _where(record)


def _with_written_dead_letters(kind_and_where, _written) -> tuple[Any, ...]:
  """(source, kind, locations), once the dead-letter files are written (the side input)."""
  (source, kind), where = kind_and_where
  return source, kind, where


def _split_size(split_stats) -> tuple[tuple[str, str], int]:
  task_split, stats = split_stats
  return task_split, stats["examples"]


class _FilterSource(beam.PTransform):
  """One source's filter stages in order (scanning ones per group), then deduplication.

  Returns three PCollections: the kept examples, the removals and the scan summaries.
  """

  def __init__(self, name: str, plan: _SourcePlan, dedup: bool):
    super().__init__()
    self._name, self._plan, self._dedup = name, plan, dedup

  def expand(self, examples):
    removed, summaries = [], []
    for number, (scanning, configs) in enumerate(_stages(self._plan.filters)):
      label = f"{self._name}_stage{number}"
      if scanning:
        grouping = _scan_grouping(getattr(configs[0], "scan_key", None))
        result = (examples
                  | f"{label}_key" >> beam.Map(grouping)
                  | f"{label}_group" >> beam.GroupByKey()
                  | f"{label}_scan" >> beam.ParDo(_GroupScan(configs[0])).with_outputs(
                      "removed", "summary", main="kept"))
        summaries.append(result.summary)
      else:
        result = examples | f"{label}_filter" >> beam.ParDo(
            _RecordFilters(configs)).with_outputs("removed", main="kept")
      removed.append(result.removed)
      examples = result.kept
    if self._dedup:
      result = (examples
                | f"{self._name}_dedup_key" >> beam.Map(_dedup_key)
                | f"{self._name}_dedup_group" >> beam.GroupByKey()
                | f"{self._name}_dedup" >> beam.FlatMap(_first_of_duplicates).with_outputs(
                    "removed", main="kept"))
      removed.append(result.removed)
      examples = result.kept
    # Flatten with the pipeline named: a source may have no filter of a kind.
    flatten = lambda: beam.Flatten(pipeline=examples.pipeline)
    return (examples, removed | f"{self._name}_removed" >> flatten(),
            summaries | f"{self._name}_summaries" >> flatten())


class _WriteShards(beam.PTransform):
  """Tokenized records into their tasks' shards; returns each task's finished marker."""

  def __init__(self, config: CacheConfig):
    super().__init__()
    self._config = config

  def expand(self, records):
    config = self._config
    split_stats = records | "split_stats" >> beam.CombinePerKey(_TaskStats())
    sizes = beam.pvalue.AsDict(split_stats | "split_sizes" >> beam.Map(_split_size))

    def with_shard(element, sizes):
      (task, split), value = element
      num_shards = shard_count(sizes[(task, split)], config)
      return (task, split, value[0] % num_shards, num_shards), value

    written = (records
               | "assign_shards" >> beam.Map(with_shard, sizes)
               | "shard_group" >> beam.GroupByKey()
               | "write_shards" >> beam.ParDo(_WriteShard(config.output_dir)))
    return (split_stats
            | "finish_splits" >> beam.ParDo(_FinishSplit(config), beam.pvalue.AsList(written))
            | "task_splits" >> beam.GroupByKey()
            | "complete_tasks" >> beam.Map(_complete_task, config.output_dir))


class _DeadLetters(beam.PTransform):
  """Writes each source's malformed records; returns where the first ones were, per kind."""

  def __init__(self, output_dir: str):
    super().__init__()
    self._output_dir = output_dir

  def expand(self, dead):
    written = (dead
               | "dead_by_source" >> beam.Map(_dead_by_source)
               | "dead_group" >> beam.GroupByKey()
               | "write_dead" >> beam.Map(_write_dead_letters, self._output_dir))
    return (dead
            | "dead_at_key" >> beam.Map(_dead_where)
            | "dead_at_top" >> beam.combiners.Top.PerKey(sources.KEEP_EXAMPLES, reverse=True)
            | "dead_at" >> beam.Map(_with_written_dead_letters, beam.pvalue.AsList(written)))


def build(pipeline: beam.Pipeline, config: CacheConfig) -> beam.PCollection:
  """Adds the cache's steps to `pipeline`; returns the PCollection of the written info.

  Read every file (malformed records to dead letters), filter and deduplicate each source,
  tokenize, write the shards, then the info file from the counts, removals and summaries.
  """
  plans = {plan.name: plan for plan in _plans(config)}
  names = sorted(plans)
  for name in names:
    if not plans[name].files:
      raise ValueError(f"source {name}: no data files under {config.sources[name]}")
  files = [(name, rank) for name in names for rank in range(len(plans[name].files))]
  read = (pipeline
          | "files" >> beam.Create(files)
          # Spreads the files over the workers (Create alone may keep them on one).
          | "spread_files" >> beam.Reshuffle()
          | "read" >> beam.ParDo(_ReadFile(plans)).with_outputs("dead", "count", main="ok"))
  counts = [read.count, read.dead | "malformed_counts" >> beam.Map(_malformed_count)]
  by_source = read.ok | "by_source" >> beam.Partition(_source_index, len(names), names)
  kept, removed, summaries = [], [], []
  for index, name in enumerate(names):
    examples, source_removed, source_summaries = by_source[index] | f"{name}_filters" >> (
        _FilterSource(name, plans[name], config.dedup))
    kept.append(examples)
    removed.append(source_removed)
    summaries.append(source_summaries)

  tokenized = ((kept | "kept" >> beam.Flatten())
               | "tokenize" >> beam.ParDo(_Tokenize(plans, config.vocabulary, config.seed))
               .with_outputs("count", "task", main="records"))
  counts.append(tokenized.count)
  finished = tokenized.records | "shards" >> _WriteShards(config)

  removed_all = removed | "removed" >> beam.Flatten()
  counts.append(removed_all | "removed_counts" >> beam.Map(_removal_count))
  removed_at = _top_locations(removed_all, "removed_at")
  dead_at = read.dead | "dead_letters" >> _DeadLetters(config.output_dir)
  count_totals = (counts | "counts" >> beam.Flatten()
                  | "count_sums" >> beam.CombinePerKey(sum))
  task_sources = (tokenized.task | "task_sources" >> beam.Distinct())
  return (pipeline
          | "info_trigger" >> beam.Create([None])
          | "write_info" >> beam.ParDo(
              _WriteInfo(config, plans),
              beam.pvalue.AsList(count_totals), beam.pvalue.AsList(removed_at),
              beam.pvalue.AsList(summaries | "summaries" >> beam.Flatten()),
              beam.pvalue.AsList(task_sources), beam.pvalue.AsList(finished),
              beam.pvalue.AsList(dead_at)))


def _where(record: Mapping[str, Any]) -> str:
  unit = "line" if "line" in record else "row"
  return (f"{record['file']}:{record[unit]}" if unit == "line" else
          f"{record['file']} row {record[unit]}") + f": {record['reason']}"


def run(config: CacheConfig, pipeline_args: Sequence[str] = ()) -> dict[str, Any]:
  """Builds the cache with the runner `pipeline_args` choose (Beam's own flags, e.g.
  `--runner=DataflowRunner --project=... --region=... --temp_location=gs://...`);
  DirectRunner on this machine by default. Returns the cache's info."""
  options = PipelineOptions(list(pipeline_args))
  try:
    with beam.Pipeline(options=options) as pipeline:
      build(pipeline, config)
  except Exception as error:
    # Runners wrap a worker's exception in their own; --strict's verdict is not a crash.
    found = re.search(r"--strict: malformed records[^\n]*", str(error))
    if found is None:
      raise
    raise caches.CacheError(found.group(0).rstrip("'\"")) from None
  return caches.read_info(config.output_dir)
