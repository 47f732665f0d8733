"""Training sources: record schemas, the source registry, and the scan/iterate pipeline.

A `SourceSpec` says how one published source looks (its fields and their types) and how
a record becomes an `Example` (inputs, targets, mT5 language, dataset, split). The six
sources of the recipe register their specs in `aya_t5x.tasks`; users add their own with
`register_source`.

Reading a source is two steps:

1. `scan(spec, paths)` reads every record once per stage, validates it, runs the
   filters (group filters such as caps and template pruning see the data first), and
   returns a `SourceIndex`: example counts per (split, language, dataset), which files
   hold which languages, and a `DataReport` of what was skipped or removed and why.
2. `iterate(index, split=..., language=...)` streams the kept examples again, applying
   the decisions the scan made, so a language's SeqIO task reads only its files.

Malformed records (broken JSON, invalid UTF-8, missing, wrong-typed or empty fields,
unknown language codes, over-long texts) raise `MalformedRecord` with file, line and
field, or with `tolerant=True` are skipped and counted in the report. Nothing is dropped
silently.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from aya_t5x import registry
from aya_t5x.data import languages, readers, templates
from aya_t5x.data.examples import Example
from aya_t5x.data.filters import FilterRun, SourceFilter
from aya_t5x.data.readers import Location, MalformedRecord

__all__ = ["Example", "Field", "SourceSpec", "register_source", "get_source", "scan", "iterate"]

SPLITS = ("train", "validation", "test")
# Split names sources use, mapped to SeqIO's.
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation",
                  "valid": "validation", "dev": "validation", "val": "validation",
                  "test": "test", "devtest": "test"}
DEFAULT_MAX_CHARS = 100_000
KEEP_EXAMPLES = 5  # locations kept per reason in a report


@dataclasses.dataclass(frozen=True, kw_only=True)
class Field:
  """One field of a published record schema."""

  name: str
  type: type | tuple[type, ...] = str
  required: bool = True
  nonempty: bool = True  # for strings: reject "" and whitespace


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceSpec:
  """How a source's records look and become examples; see the six in `aya_t5x.tasks`.

  `*_field` name record fields; None means the source has no such field and the
  `default_*` value applies. `filters` builds the source's filters afresh for each
  scan (filters keep state while scanning). `weight_key` is the key of the source's
  weight in the mixture schemes (RECIPE.md §4).
  """

  name: str
  title: str
  schema: tuple[Field, ...]
  inputs_field: str = "inputs"
  targets_field: str = "targets"
  language_field: str | None = "language"
  default_language: str = "en"
  dataset_field: str | None = None
  default_dataset: str = ""
  split_field: str | None = None
  template_field: str | None = None
  task_type_field: str | None = None
  id_field: str | None = None
  multilingual: bool = True
  max_chars: int = DEFAULT_MAX_CHARS
  filters: Callable[[], Sequence[SourceFilter]] = lambda: ()
  # Makes inputs/targets from the record's fields; None reads inputs_field/targets_field.
  template: templates.Template | templates.TemplateSet | None = None
  description: str = ""

  def field_names(self) -> tuple[str, ...]:
    return tuple(f.name for f in self.schema)


# The one registry of sources (name -> spec); seqio keeps the tasks built from them.
_SOURCES: dict[str, SourceSpec] = {}


def register_source(spec: SourceSpec, *, overwrite: bool = False) -> SourceSpec:
  if spec.name in _SOURCES and not overwrite and _SOURCES[spec.name] != spec:
    raise ValueError(f"source {spec.name!r} is already registered; pass overwrite=True "
                     "or choose another name")
  _SOURCES[spec.name] = spec
  return spec


def get_source(name: str) -> SourceSpec:
  """The registered source `name`; the error lists the sources that exist."""
  return registry.lookup(_SOURCES, name, what="source",
                         empty="(none; import aya_t5x.tasks)")


def source_names() -> tuple[str, ...]:
  return tuple(sorted(_SOURCES))


# ----------------------------------------------------------------------------- reports


def malformed_kind(error: MalformedRecord) -> str:
  """What a report counts a malformed record under: its field and reason, without the
  columns and byte offsets that make every message unique."""
  reason = f"{error.field}: {error.reason}" if error.field else error.reason
  return reason.split(" (")[0].split(" at byte")[0]


@dataclasses.dataclass
class DataReport:
  """What a scan skipped (malformed) and removed (filters), with counts and locations."""

  source: str
  read: int = 0
  kept: int = 0
  malformed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  malformed_at: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  removed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  removed_at: dict[str, list[str]] = dataclasses.field(default_factory=dict)
  details: dict[str, Any] = dataclasses.field(default_factory=dict)  # per-filter summaries

  def add_malformed(self, error: MalformedRecord) -> None:
    kind = malformed_kind(error)
    self.malformed[kind] += 1
    self.malformed_at.setdefault(kind, [])
    if len(self.malformed_at[kind]) < KEEP_EXAMPLES:
      self.malformed_at[kind].append(str(error))

  def add_removed(self, filter_name: str, reason: str, example: Example) -> None:
    key = f"{filter_name}: {reason}"
    self.removed[key] += 1
    self.removed_at.setdefault(key, [])
    if len(self.removed_at[key]) < KEEP_EXAMPLES and example.location is not None:
      self.removed_at[key].append(str(example.location))

  @property
  def skipped(self) -> int:
    return sum(self.malformed.values())

  def removed_by_filter(self) -> dict[str, int]:
    totals: collections.Counter = collections.Counter()
    for key, count in self.removed.items():
      totals[key.split(":")[0]] += count
    return dict(totals)

  def to_dict(self) -> dict[str, Any]:
    return {"source": self.source, "read": self.read, "kept": self.kept,
            "skipped_malformed": self.skipped, "malformed": dict(self.malformed),
            "malformed_at": self.malformed_at, "removed": dict(self.removed),
            "removed_at": self.removed_at, "details": self.details}

  def format(self) -> str:
    """Plain lines for a terminal or a log."""
    lines = [f"{self.source}: read {self.read}, kept {self.kept}, "
             f"skipped {self.skipped} malformed, removed {sum(self.removed.values())}"]
    for reason, count in self.malformed.most_common():
      lines.append(f"  malformed  {count:>8}  {reason}  (e.g. {self.malformed_at[reason][0]})")
    for reason, count in self.removed.most_common():
      where = self.removed_at.get(reason)
      lines.append(f"  removed    {count:>8}  {reason}" + (f"  (e.g. {where[0]})" if where else ""))
    for name, detail in self.details.items():
      lines.append(f"  {name}: {detail}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- validation


def _check_field(record: Mapping[str, Any], field: Field, location: Location) -> None:
  if field.name not in record or record[field.name] is None:
    if field.required:
      present = ", ".join(sorted(record)) or "none"
      raise MalformedRecord(location, field.name, f"missing (fields present: {present})")
    return
  value = record[field.name]
  if not isinstance(value, field.type) or (field.type is int and isinstance(value, bool)):
    types = field.type if isinstance(field.type, tuple) else (field.type,)
    wanted = " or ".join(t.__name__ for t in types)
    raise MalformedRecord(location, field.name, f"expected {wanted}, got "
                          f"{type(value).__name__} {repr(value)[:40]}")
  if field.nonempty and isinstance(value, str) and not value.strip():
    raise MalformedRecord(location, field.name, "empty string")


def normalise_split(value: str, location: Location | None = None) -> str:
  split = _SPLIT_ALIASES.get(str(value).strip().lower())
  if split is None:
    if location is None:
      raise ValueError(f"unknown split {value!r}; splits are {', '.join(SPLITS)}")
    raise MalformedRecord(location, "split", f"unknown split {value!r}; use one of "
                          f"{', '.join(sorted(_SPLIT_ALIASES))}")
  return split


def _render(spec: SourceSpec, record: Mapping[str, Any], language: str, location: Location
            ) -> tuple[dict[str, str], str]:
  try:
    if isinstance(spec.template, templates.TemplateSet):
      key = str(record.get(spec.id_field) or "") if spec.id_field else ""
      inputs, targets, template_id = spec.template.render(record, language, key or str(location))
    else:
      (inputs, targets), template_id = spec.template.render(record), spec.template.id
  except templates.TemplateError as e:
    missing = [f for f in getattr(spec.template, "fields", ()) if record.get(f) is None]
    raise MalformedRecord(location, missing[0] if missing else None, str(e)) from None
  return {"inputs": inputs, "targets": targets}, template_id


def to_example(spec: SourceSpec, record: Mapping[str, Any], location: Location,
               default_split: str = "train") -> Example:
  """Validates a record against the spec's schema and turns it into an `Example`."""
  for field in spec.schema:
    _check_field(record, field, location)
  code = str(record[spec.language_field]) if spec.language_field and \
      record.get(spec.language_field) is not None else spec.default_language
  language = languages.find_language(code)
  if language is None and not languages.is_iso639(code):
    raise MalformedRecord(location, spec.language_field or "language",
                          f"unknown language code {code!r}")
  texts = {spec.inputs_field: record.get(spec.inputs_field),
           spec.targets_field: record.get(spec.targets_field)}
  template_id = ""
  if spec.template is not None:
    texts, template_id = _render(spec, record, language.code if language else code, location)
  for name, text in texts.items():
    if not isinstance(text, str) or not text.strip():
      raise MalformedRecord(location, name, "missing or empty text")
    if len(text) > spec.max_chars:
      raise MalformedRecord(location, name, f"over the length limit ({len(text)} > "
                            f"{spec.max_chars} characters)")
  split = location.split or default_split
  if spec.split_field and record.get(spec.split_field) is not None:
    split = normalise_split(record[spec.split_field], location)

  def text_of(name: str | None, default: str = "") -> str:
    return str(record[name]) if name and record.get(name) is not None else default

  inputs, targets = texts.values()
  return Example(
      inputs=inputs, targets=targets,
      # Languages outside mT5 keep their own code; the mT5 filter removes and counts them.
      language=language.code if language else code, language_code=code,
      dataset=text_of(spec.dataset_field, spec.default_dataset or spec.name),
      split=split, template=template_id or text_of(spec.template_field),
      task_type=text_of(spec.task_type_field), record_id=text_of(spec.id_field),
      location=location, fields=dict(record))


# ----------------------------------------------------------------------------- pipeline


PathsArg = str | os.PathLike | Mapping[str, str | os.PathLike]


def paths_by_split(paths: PathsArg) -> list[tuple[str, str | None]]:
  """A source's paths as [(path, split or None)], in the order a scan reads them."""
  if isinstance(paths, Mapping):
    return [(os.fspath(p), normalise_split(s)) for s, p in paths.items()]
  return [(os.fspath(paths), None)]


@dataclasses.dataclass
class SourceIndex:
  """What a scan found: kept counts, where each language is, the report, filter decisions."""

  spec: SourceSpec
  files: list[tuple[str, str | None]]
  counts: collections.Counter  # (split, language, dataset) -> kept examples
  chars: collections.Counter   # (split, language, dataset) -> characters of inputs+targets
  files_by_language: dict[str, set[str]]
  report: DataReport
  filter_runs: list[FilterRun]
  tolerant: bool = False
  # Set when the counts come from an `aya-t5x cache` output rather than a scan: the
  # examples then exist only there (`aya_t5x.data.caches`).
  cache_dir: str | None = None

  def languages(self, split: str = "train") -> list[str]:
    return sorted({lang for s, lang, _ in self.counts if s == split})

  def datasets(self, split: str = "train") -> list[str]:
    return sorted({d for s, _, d in self.counts if s == split})

  def splits(self) -> list[str]:
    return sorted({s for s, _, _ in self.counts}, key=SPLITS.index)

  def count(self, *, split: str = "train", language: str | None = None,
            dataset: str | None = None) -> int:
    return sum(n for (s, lang, d), n in self.counts.items()
               if s == split and language in (None, lang) and dataset in (None, d))


def _validated(spec: SourceSpec, files: list[tuple[str, str | None]], report: DataReport | None,
               tolerant: bool) -> Iterator[Example]:
  for name, split in files:
    for location, record in readers.iter_file(name, split):
      if report is not None:
        report.read += 1
      try:
        if isinstance(record, MalformedRecord):
          raise record
        yield to_example(spec, record, location)
      except MalformedRecord as error:
        if not tolerant:
          raise MalformedRecord(error.location, error.field,
                                f"{error.reason}. Fix the record, or read the source with "
                                "tolerant=True (--tolerant) to skip and count such records."
                                ) from None
        if report is not None:
          report.add_malformed(error)


def scan(spec: SourceSpec, paths: PathsArg, *, tolerant: bool = False,
         filters: Sequence[SourceFilter] | None = None) -> SourceIndex:
  """Reads a source once per filter stage and returns what it holds after filtering.

  `filters` replaces the spec's own (`spec.filters()`); pass `()` to keep everything.
  A filter that needs to see the data first (caps, template pruning) is scanned in its
  own pass over the examples that the filters before it keep, so its decisions are
  exact whatever the order.
  """
  files = [f for path, split in paths_by_split(paths) for f in readers.list_files(path, split)]
  runs = [f.start() for f in (spec.filters() if filters is None else filters)]
  stages = [i for i, run in enumerate(runs) if run.needs_scan]
  report = DataReport(source=spec.name)
  counts: collections.Counter = collections.Counter()
  chars: collections.Counter = collections.Counter()
  files_by_language: dict[str, set[str]] = collections.defaultdict(set)
  for stage in range(len(stages) + 1):
    final = stage == len(stages)
    observing = None if final else stages[stage]
    for example in _validated(spec, files, report if stage == 0 else None, tolerant):
      for i, run in enumerate(runs):
        if i == observing:
          run.observe(example)
          break
        reason = run.reason(example)
        if reason is not None:
          if final:
            report.add_removed(run.name, reason, example)
          break
      else:
        if final:
          key = (example.split, example.language, example.dataset)
          counts[key] += 1
          chars[key] += len(example.inputs) + len(example.targets)
          files_by_language[example.language].add(example.location.path)
    if observing is not None:
      runs[observing].finalize()
  report.kept = sum(counts.values())
  for run in runs:
    summary = run.summary()
    if summary:
      report.details[run.name] = summary
  return SourceIndex(spec=spec, files=files, counts=counts, chars=chars,
                     files_by_language=dict(files_by_language), report=report,
                     filter_runs=runs, tolerant=tolerant)


def iterate(index: SourceIndex, *, split: str = "train", language: str | None = None,
            datasets: Sequence[str] | None = None, exclude_datasets: Sequence[str] = ()
            ) -> Iterator[Example]:
  """The examples a scan kept, for one split and optionally one language or datasets."""
  files = index.files
  if language is not None:
    holding = index.files_by_language.get(language, set())
    files = [f for f in files if f[0] in holding]
  for example in _validated(index.spec, files, None, tolerant=True):
    if example.split != split or language not in (None, example.language):
      continue
    if datasets is not None and example.dataset not in datasets:
      continue
    if example.dataset in exclude_datasets:
      continue
    if all(run.reason(example) is None for run in index.filter_runs):
      yield example
