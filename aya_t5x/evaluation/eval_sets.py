"""What a benchmark is, and how its SeqIO tasks are registered from a folder the user gives.

A `Benchmark` (one per evaluation set, in `aya_t5x/tasks/eval_*.py`) knows where each
language's files lie under its data folder, how its records become prompt rows, and
its metrics. Rank-classification benchmarks give one row per (example, template,
option) with the features `idx`, `template`, `option` and `is_correct`, SeqIO's
rank-classification layout; generative ones give one row per example.

`register_benchmark('xcopa', vocabulary=..., data_dir=...)` registers one SeqIO task
per language, `aya_eval.xcopa.et` ..., and the mixture `aya_eval.xcopa`. It reads no
data: tasks register without their files, a task whose files are missing fails when
read with the path and the expected format, and `missing_files` lists them upfront.
The data folder of a benchmark is, in order: `data_paths[folder]`, `data_dir/folder`,
or `$AYA_EVAL_DATA/folder` (`folder` is the benchmark's, e.g. `xcopa`, `flores200`).
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x import registry
from aya_t5x.data import languages
from aya_t5x.evaluation import metrics

TASK_PREFIX = "aya_eval"
DATA_ENV = "AYA_EVAL_DATA"
# The modules that define the benchmarks (imported on first lookup).
KINDS = ("rank", "generate")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Benchmark(abc.ABC):
  """An evaluation set: its languages, files, prompts and metrics.

  Attributes:
    name: short name; tasks are `aya_eval.<name>.<language>`.
    title: for reports and messages.
    kind: 'rank' (rank classification over answer options) or 'generate'.
    split: the SeqIO split name of the evaluated split ('validation', 'test', 'devtest').
    folder: the benchmark's folder under the evaluation data root.
    data_format: the published format, for error messages.
    languages: the task suffixes: mT5 codes, with `_variant` for a second script or
      form of one language (`zh_hant`).
    primary_metric: the metric averaged in reports.
    max_input_length, max_target_length: token limits (rank: the longest option;
      generation: the most new tokens).
    truncate: which end of a too-long input is cut: 'right', or 'left' to keep the end
      (few-shot prompts, whose question comes last).
  """

  name: str
  title: str
  kind: str
  split: str
  folder: str
  data_format: str
  languages: tuple[str, ...]
  primary_metric: str = "accuracy"
  max_input_length: int = 512
  max_target_length: int = 64
  truncate: str = "right"

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"benchmark {self.name}: kind {self.kind!r} is not one of {KINDS}")

  def language_code(self, key: str) -> str:
    """The mT5 language code of a task suffix (`zh_hant` -> `zh`)."""
    return key.split("_")[0]

  @abc.abstractmethod
  def files(self, root: Path, key: str) -> dict[str, Path]:
    """The files one language needs, by role (they may not exist)."""

  @abc.abstractmethod
  def rows(self, files: Mapping[str, Path], key: str) -> list[dict[str, Any]]:
    """The prompt rows of one language (read from `files`, which exist)."""

  def metric_fns(self, key: str, *, spbleu_model: str | None = None) -> list[Callable]:
    del key, spbleu_model
    return [metrics.rank_classification] if self.kind == "rank" else []

  def postprocess_fn(self) -> Callable | None:
    return metrics.rank_target if self.kind == "rank" else None


def first_existing(*candidates: Path) -> Path:
  """The first candidate that exists, else the first (which error messages then name)."""
  return next((c for c in candidates if c.is_file()), candidates[0])


def rank_rows(records: Sequence[Any], templates: Sequence[Callable]) -> list[dict[str, Any]]:
  """Rank-classification rows: one per record, template and answer option.

  A template maps a record to (prompt, options, index of the correct option). Rows come
  in record order (`idx`), so the first N examples are the first rows.
  """
  rows = []
  for idx, record in enumerate(records):
    for number, template in enumerate(templates):
      prompt, options, correct = template(record)
      rows += [{"inputs": prompt, "targets": option, "idx": idx, "template": number,
                "option": i, "is_correct": i == correct} for i, option in enumerate(options)]
  return rows


# ----------------------------------------------------------------------------- registries


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalTaskInfo:
  """A registered benchmark task: what the suite needs before reading it."""

  name: str
  benchmark: Benchmark
  key: str
  data_dir: Path | None

  @property
  def language(self) -> str:
    return self.benchmark.language_code(self.key)

  def files(self) -> dict[str, Path]:
    if self.data_dir is None:
      return {}
    return self.benchmark.files(self.data_dir, self.key)

  def missing_files(self) -> list[Path] | None:
    """The files this task needs that do not exist; None when it has no data folder."""
    if self.data_dir is None:
      return None
    return [path for path in self.files().values() if not path.is_file()]

  def missing(self) -> str:
    """Why this task cannot be read ('' when it can): the path and the expected format."""
    missing = self.missing_files()
    if missing is None:
      return f"{self.benchmark.title}: {no_folder_message(self.benchmark)}"
    if missing:
      return (f"{self.name}: {', '.join(map(str, missing))} not found; expected "
              f"{self.benchmark.data_format}.")
    return ""

  @functools.cached_property
  def rows(self) -> list[dict[str, Any]]:
    """The prompt rows (files that exist), read once: the suite's plan checks that there
    are some, its dataset and every later evaluation in the process use them."""
    return self.benchmark.rows(self.files(), self.key)


def no_folder_message(benchmark: Benchmark) -> str:
  return (f"no data folder; pass --data_dir ROOT (with {benchmark.folder}/ inside), --data "
          f"{benchmark.folder}=PATH, or set {DATA_ENV}. Expected {benchmark.data_format}.")


_BENCHMARKS: dict[str, Benchmark] = {}
_TASKS: dict[str, EvalTaskInfo] = {}


def add_benchmark(benchmark: Benchmark) -> Benchmark:
  """Registers a benchmark definition (what `aya_t5x/tasks/eval_*.py` do at import)."""
  _BENCHMARKS[benchmark.name] = benchmark
  return benchmark


def get_benchmark(name: str) -> Benchmark:
  """The registered benchmark `name` (the eval gin files import `aya_t5x.tasks.evaluation`,
  which registers the recipe's)."""
  return registry.lookup(_BENCHMARKS, name, what="benchmark",
                         empty="(none; import aya_t5x.tasks.evaluation, as the eval gin "
                               "files do)")


def benchmark_names() -> list[str]:
  return sorted(_BENCHMARKS)


def task_info(name: str) -> EvalTaskInfo | None:
  """The benchmark task registered under `name`, or None for any other SeqIO task."""
  return _TASKS.get(name)


def data_folder(benchmark: Benchmark, data_dir: str | os.PathLike | None = None,
                data_paths: Mapping[str, str] | None = None) -> Path | None:
  """Where a benchmark's files are: data_paths[folder], data_dir/folder, $AYA_EVAL_DATA/folder."""
  if data_paths and benchmark.folder in data_paths:
    return Path(data_paths[benchmark.folder])
  root = data_dir or os.environ.get(DATA_ENV)
  return Path(root) / benchmark.folder if root else None


def _dataset_fn(info: EvalTaskInfo) -> Callable:
  def dataset_fn(split: str, shuffle_files: bool = False, seed: int | None = None):
    import tensorflow as tf

    del split, shuffle_files, seed  # one split; rows stay in file order
    missing = info.missing()
    if missing:
      raise FileNotFoundError(missing)
    rows = info.rows
    if not rows:
      raise ValueError(f"{info.name}: no examples in {list(info.files().values())}.")
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    if "answers" in columns:  # a list per row
      columns["answers"] = tf.ragged.constant(columns["answers"])
    return tf.data.Dataset.from_tensor_slices(columns)

  return dataset_fn


def register_benchmark(benchmark: str | Benchmark, *, vocabulary: Any,
                       data_dir: str | os.PathLike | None = None,
                       data_paths: Mapping[str, str] | None = None,
                       spbleu_model: str | None = None) -> str:
  """Registers a benchmark's SeqIO tasks and mixture; returns the mixture's name.

  Registering again (another vocabulary or folder) replaces the earlier tasks.
  """
  import seqio

  if isinstance(benchmark, str):
    benchmark = get_benchmark(benchmark)
  folder = data_folder(benchmark, data_dir, data_paths)
  features = {"inputs": seqio.Feature(vocabulary, add_eos=True, required=True),
              "targets": seqio.Feature(vocabulary, add_eos=True, required=True)}
  names = []
  for key in benchmark.languages:
    info = EvalTaskInfo(name=f"{TASK_PREFIX}.{benchmark.name}.{key}", benchmark=benchmark,
                        key=key, data_dir=folder)
    if info.name in seqio.TaskRegistry.names():
      seqio.TaskRegistry.remove(info.name)
    seqio.TaskRegistry.add(
        info.name,
        source=seqio.FunctionDataSource(_dataset_fn(info), splits=[benchmark.split],
                                        caching_permitted=False),
        preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
        output_features=features, postprocess_fn=benchmark.postprocess_fn(),
        metric_fns=benchmark.metric_fns(key, spbleu_model=spbleu_model),
        shuffle_buffer_size=None)
    _TASKS[info.name] = info
    names.append(info.name)
  mixture = f"{TASK_PREFIX}.{benchmark.name}"
  if mixture in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(mixture)
  seqio.MixtureRegistry.add(mixture, names, default_rate=1.0)
  return mixture


def language_name(key: str) -> str:
  """A language's English name for prompts (`zh_hant` -> 'Chinese (Traditional)')."""
  base, _, variant = key.partition("_")
  language = languages.find_language(base)
  name = language.name if language else base
  return f"{name} ({VARIANT_NAMES.get(variant, variant)})" if variant else name


VARIANT_NAMES = {"hant": "Traditional", "latn": "Latin script"}
