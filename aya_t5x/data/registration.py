"""SeqIO tasks from sources and single files, and the task manifest `aya-t5x tasks add` keeps.

`register_source_tasks(source, paths, vocabulary=...)` scans a source (validation,
filters, counts; see `sources.scan`) and registers one SeqIO task per language
(`aya_dataset.sw`) plus the source mixture (`aya_dataset`) whose rates follow a
`mixing` strategy inside the source. A dataset named in `split_out` (Dolly, for a boost)
gets tasks of its own (`aya_translated.dolly.sw`).

`register_jsonl_task(name, path, language=..., inputs_key=..., targets_key=...)` is the
one-step way to add a task from one file or folder, with an optional template. The task
manifest that keeps such tasks between runs is `aya_t5x.data.manifest`.

Every task registered here has a `TaskInfo` (source, language, datasets, sizes per
split) that the mixture report reads; `task_info(name)` finds it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from aya_t5x import registry
from aya_t5x.data import filters as filters_lib
from aya_t5x.data import generator_datasets, languages, mixing, sources
from aya_t5x.data.templates import Template

TASK_NAME = re.compile(r"^[\w.:]+$")  # what seqio accepts


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskInfo:
  """What the mixture tools need to know about a registered task."""

  name: str
  source: str
  language: str                 # mT5 code; "" when the task mixes languages
  datasets: tuple[str, ...]
  sizes: Mapping[str, int]      # split -> examples after filtering
  chars: Mapping[str, int]      # split -> characters of inputs + targets
  group: str = ""               # the split-out dataset group ("dolly"), "" for the rest
  exclude: tuple[str, ...] = ()  # datasets of the language that other tasks hold
  # The `aya-t5x cache` output the task was registered from: it is readable only cached.
  cache_dir: str | None = None

  @property
  def resource_group(self) -> str:
    language = languages.find_language(self.language) if self.language else None
    return language.group if language else ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SourceTasks:
  """The tasks (and source mixture) registered for one source."""

  source: str
  prefix: str
  tasks: tuple[TaskInfo, ...]
  rates: Mapping[str, float]    # task -> rate inside the source (sums to 1)
  mixture: str | None
  index: sources.SourceIndex

  @property
  def report(self) -> sources.DataReport:
    return self.index.report

  @property
  def train_size(self) -> int:
    return sum(t.sizes.get("train", 0) for t in self.tasks)


# Registries: task name -> TaskInfo, and source prefix -> (arguments, SourceTasks) so that
# gin, which may evaluate a registration more than once, does not scan twice.
_TASKS: dict[str, TaskInfo] = {}
_SOURCE_TASKS: dict[str, tuple[Any, SourceTasks]] = {}
# The plan each registered task came from (task -> SourceTasks), for reports on mixtures.
_HOLDERS: dict[str, SourceTasks] = {}


def task_info(name: str) -> TaskInfo:
  return registry.lookup(_TASKS, name, what="aya_t5x task")


def planned_task(name: str) -> SourceTasks | None:
  """The plan of one registered task alone (its data and sizes), or None when the task
  was not registered here (a task of the user's own module)."""
  holder = _HOLDERS.get(name)
  if holder is None:
    return None
  return dataclasses.replace(holder, tasks=tuple(t for t in holder.tasks if t.name == name),
                             rates={name: 1.0}, mixture=None)


def cache_of(name: str) -> str | None:
  """The cache folder a task was registered from (only readable cached), or None."""
  info = _TASKS.get(name)
  return info.cache_dir if info else None


def task_infos() -> tuple[TaskInfo, ...]:
  return tuple(_TASKS[n] for n in sorted(_TASKS))


def _slug(text: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "data"


def _output_features(vocabulary) -> dict[str, Any]:
  import seqio

  return {"inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True, required=True),
          "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True, required=True)}


def _dataset_fn(info: TaskInfo, index: sources.SourceIndex):
  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None):
    import tensorflow as tf

    del shuffle_files, seed  # examples stream in file order; seqio shuffles after
    if index.cache_dir is not None:
      raise ValueError(
          f"task {info.name} was registered from the cache at {index.cache_dir}, which "
          "holds its examples only in cached form: read it with DatasetConfig.cache_dir "
          f"set to that folder (--gin.CACHE_DIR=\"'{index.cache_dir}'\"), or register it "
          "from its source files (CACHE_DIR=None) to preprocess it on the fly.")

    def generate():
      for example in examples_of(info, index, split):
        yield {"inputs": example.inputs, "targets": example.targets}

    spec = tf.TensorSpec(shape=(), dtype=tf.string)
    return generator_datasets.from_generator(
        generate, output_signature={"inputs": spec, "targets": spec})

  return dataset_fn


def examples_of(info: TaskInfo, index: sources.SourceIndex, split: str = "train"
                ) -> Iterator[sources.Example]:
  """The examples of one task (what its SeqIO source yields, before tokenization)."""
  return sources.iterate(index, split=split, language=info.language or None,
                         datasets=info.datasets if info.group else None,
                         exclude_datasets=info.exclude)


def _add_task(info: TaskInfo, index: sources.SourceIndex, vocabulary) -> None:
  import seqio

  splits = [s for s in sources.SPLITS if info.sizes.get(s)]
  if info.name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(info.name)
  seqio.TaskRegistry.add(
      info.name,
      source=seqio.FunctionDataSource(
          _dataset_fn(info, index), splits=splits,
          num_input_examples=dict(info.sizes), caching_permitted=True),
      # Tokenized examples are what `aya-t5x cache` writes; EOS is added after the cache,
      # as in T5X's tasks, so that trimming to a length keeps it.
      preprocessors=[seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                     seqio.preprocessors.append_eos_after_trim],
      output_features=_output_features(vocabulary),
      metric_fns=[])
  _TASKS[info.name] = dataclasses.replace(info, cache_dir=index.cache_dir)


def _matching(datasets: Sequence[str], pattern: str) -> list[str]:
  needle = _slug(pattern)
  return [d for d in datasets if needle in _slug(d)]


def plan_source_tasks(source: str | sources.SourceSpec, paths: sources.PathsArg, *,
                      prefix: str | None = None, tolerant: bool = False,
                      filters: Sequence[Any] | None = None, split_out: Sequence[str] = (),
                      boosts: Mapping[str, float] | None = None,
                      strategy: str = "proportional",
                      strategy_kwargs: Mapping[str, Any] | None = None) -> SourceTasks:
  """Scans a source and works out its tasks and rates, without registering anything.

  Arguments as `register_source_tasks`; the mixture report uses this directly, so that
  it needs no vocabulary.
  """
  spec = sources.get_source(source) if isinstance(source, str) else source
  index = sources.scan(spec, paths, tolerant=tolerant, filters=filters)
  return plan_from_index(index, prefix=prefix, split_out=split_out, boosts=boosts,
                         strategy=strategy, strategy_kwargs=strategy_kwargs, where=str(paths))


def group_patterns(split_out: Sequence[str] = (), boosts: Mapping[str, float] | None = None
                   ) -> tuple[str, ...]:
  """The dataset patterns that get tasks of their own, in the order they are matched."""
  return tuple(dict.fromkeys([*split_out, *(boosts or {})]))


def group_of(dataset: str, patterns: Sequence[str]) -> str:
  """The split-out group a dataset belongs to: the first pattern it matches, else ""."""
  for pattern in patterns:
    if _matching([dataset], pattern):
      return _slug(pattern)
  return ""


def task_name(prefix: str, group: str, language: str | None) -> str:
  """`prefix[.group][.language]`: the name of the task holding a group and language."""
  return ".".join(part for part in (prefix, group, language) if part)


def plan_from_index(index: sources.SourceIndex, *, prefix: str | None = None,
                    split_out: Sequence[str] = (), boosts: Mapping[str, float] | None = None,
                    strategy: str = "proportional",
                    strategy_kwargs: Mapping[str, Any] | None = None,
                    where: str = "") -> SourceTasks:
  """The tasks and rates of a source from what it holds (a scan's, or a cache's, counts)."""
  spec = index.spec
  prefix = prefix or spec.name
  if not TASK_NAME.match(prefix):
    raise ValueError(f"task name {prefix!r}: use letters, digits, '_', '.' and ':' only")
  boosts = dict(boosts or {})
  all_datasets = sorted({d for _, _, d in index.counts})
  patterns = group_patterns(split_out, boosts)
  groups: dict[str, list[str]] = {}
  for dataset in all_datasets:
    group = group_of(dataset, patterns)
    if group:
      groups.setdefault(group, []).append(dataset)
  groups = {_slug(p): groups[_slug(p)] for p in patterns if _slug(p) in groups}
  grouped = tuple(d for g in groups.values() for d in g)

  def sizes_of(language: str | None, datasets: Sequence[str]):
    sizes: dict[str, int] = {}
    chars: dict[str, int] = {}
    for (split, lang, dataset), n in index.counts.items():
      if dataset in datasets and language in (None, lang):
        sizes[split] = sizes.get(split, 0) + n
        chars[split] = chars.get(split, 0) + index.chars[(split, lang, dataset)]
    return sizes, chars

  langs = sorted({lang for _, lang, _ in index.counts}) if spec.multilingual else [None]
  infos: list[TaskInfo] = []
  for language in langs:
    rest = [d for d in all_datasets if d not in grouped]
    for group, datasets in [("", rest), *groups.items()]:
      sizes, chars = sizes_of(language, datasets)
      if not sizes:
        continue
      infos.append(TaskInfo(
          name=task_name(prefix, group, language),
          source=spec.name, language=language or _only_language(index),
          datasets=tuple(d for d in datasets if sizes_of(language, [d])[0]),
          sizes=sizes, chars=chars, group=group, exclude=() if group else grouped))
  if not infos:
    raise ValueError(f"source {spec.name} at {where}: no examples left after filtering.\n"
                     f"{index.report.format()}")
  trained = {i.name: i.sizes["train"] for i in infos if i.sizes.get("train")}
  task_boosts = {i.name: boosts.get(i.group, 1.0) for i in infos if i.name in trained and i.group}
  rates = (mixing.get_strategy(strategy)(trained, boosts=task_boosts, **(strategy_kwargs or {}))
           if trained else {})
  return SourceTasks(source=spec.name, prefix=prefix, tasks=tuple(infos), rates=rates,
                     mixture=prefix if len(infos) > 1 and rates else None, index=index)


def register_source_tasks(source: str | sources.SourceSpec, paths: sources.PathsArg, *,
                          vocabulary, prefix: str | None = None, tolerant: bool = False,
                          filters: Sequence[Any] | None = None,
                          split_out: Sequence[str] = (),
                          boosts: Mapping[str, float] | None = None,
                          strategy: str = "proportional",
                          strategy_kwargs: Mapping[str, Any] | None = None) -> SourceTasks:
  """Scans a source and registers its SeqIO tasks and source mixture.

  Args:
    source: a registered source name (see `aya_t5x.tasks`) or a `SourceSpec`.
    paths: a file or folder, or {split: path}.
    vocabulary: the `seqio.Vocabulary` of inputs and targets.
    prefix: task name prefix (the source name by default).
    tolerant: skip and count malformed records instead of raising.
    filters: replaces the source's filters (`()` keeps everything).
    split_out: dataset name patterns (case-insensitive substrings) that get tasks of
      their own, so that a boost or a report can single them out.
    boosts: {pattern: factor} multiplying the rate of split-out groups (patterns not
      in `split_out` are split out too).
    strategy, strategy_kwargs: the `mixing` strategy inside the source.
  """
  spec = sources.get_source(source) if isinstance(source, str) else source
  key = (spec, repr(paths), id(vocabulary), tolerant, repr(filters), tuple(split_out),
         repr(boosts), strategy, repr(strategy_kwargs))
  prefix = prefix or spec.name
  if prefix in _SOURCE_TASKS and _SOURCE_TASKS[prefix][0] == key:
    return _SOURCE_TASKS[prefix][1]
  planned = plan_source_tasks(spec, paths, prefix=prefix, tolerant=tolerant, filters=filters,
                              split_out=split_out, boosts=boosts, strategy=strategy,
                              strategy_kwargs=strategy_kwargs)
  register_planned(planned, vocabulary)
  _SOURCE_TASKS[prefix] = (key, planned)
  return planned


def register_planned(planned: SourceTasks, vocabulary) -> None:
  """Registers the SeqIO tasks (and source mixture) of a plan."""
  for info in planned.tasks:
    _add_task(info, planned.index, vocabulary)
    _HOLDERS[info.name] = planned
  if planned.mixture:
    import seqio

    if planned.mixture in seqio.MixtureRegistry.names():
      seqio.MixtureRegistry.remove(planned.mixture)
    seqio.MixtureRegistry.add(planned.mixture, list(planned.rates.items()))


def _only_language(index: sources.SourceIndex) -> str:
  found = {lang for _, lang, _ in index.counts}
  return found.pop() if len(found) == 1 else ""


# ----------------------------------------------------------------------------- one step


def jsonl_spec(name: str, *, language: str | None = None, inputs_key: str = "inputs",
               targets_key: str = "targets", language_key: str | None = None,
               dataset: str | None = None, template: Template | None = None,
               max_chars: int = sources.DEFAULT_MAX_CHARS) -> sources.SourceSpec:
  """The `SourceSpec` of a user's file: fields by name, or a template over its fields."""
  if language is None and language_key is None:
    raise ValueError(f"task {name}: give the language (--language) or the field that holds "
                     "it (--language_key)")
  if language is not None:
    language = languages.get_language(language).code
  if template is not None:
    fields = [sources.Field(name=f, type=(str, int, float, bool)) for f in template.fields]
  else:
    fields = [sources.Field(name=inputs_key), sources.Field(name=targets_key)]
  if language_key:
    fields.append(sources.Field(name=language_key))
  return sources.SourceSpec(
      name=name, title=name, schema=tuple(fields), inputs_field=inputs_key,
      targets_field=targets_key, language_field=language_key,
      default_language=language or "en", default_dataset=dataset or name,
      multilingual=language_key is not None, template=template, max_chars=max_chars,
      filters=lambda: (filters_lib.KeepMT5Languages(),))


def register_jsonl_task(name: str, path: str | os.PathLike | Mapping[str, str], *, vocabulary,
                        language: str | None = None, inputs_key: str = "inputs",
                        targets_key: str = "targets", language_key: str | None = None,
                        template: Template | None = None, tolerant: bool = False,
                        dataset: str | None = None) -> SourceTasks:
  """Registers a SeqIO task from one file or folder in one step.

  Args:
    name: the task name (with `language_key`, the prefix of one task per language).
    path: a JSONL/parquet/arrow file or folder, or {split: path}.
    vocabulary: the `seqio.Vocabulary` of inputs and targets.
    language: the language of every record (any code or name; see `languages`).
    inputs_key, targets_key: the record fields that hold prompt and completion.
    language_key: the field that holds each record's language, for multilingual files.
    template: a `Template` that builds inputs and targets from the record's fields
      (then `inputs_key`/`targets_key` are not read).
    tolerant: skip and count malformed records instead of raising.
    dataset: the dataset name reports show (the task name by default).
  """
  spec = jsonl_spec(name, language=language, inputs_key=inputs_key, targets_key=targets_key,
                    language_key=language_key, dataset=dataset, template=template)
  sources.register_source(spec, overwrite=True)
  return register_source_tasks(spec, path, vocabulary=vocabulary, tolerant=tolerant)
