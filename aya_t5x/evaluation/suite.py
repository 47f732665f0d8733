"""Evaluation suites: what to evaluate (chosen by gin), checked upfront, and running it.

A suite is a list of `EvalTask`s. Each names one of the recipe's benchmarks
(`benchmark='xcopa'`: the suite registers its SeqIO tasks from the suite's data folder
with the suite's vocabulary) or any registered SeqIO task or mixture (`task=...`, with
`module` to import it), and says how to score it:

- rank classification (`kind='rank'`): each answer option is scored as the target by
  the model's log-likelihood of it, the sum of the log-probabilities of its tokens and
  of EOS (`decoding.score`), and the highest-scoring option is the answer. Benchmark
  tasks come as one row per option (features `idx`, `template`, `is_correct`) and are
  scored by their metric (accuracy per template, median over templates). A plain
  (inputs, targets) task gives `options`; an example is right when its best option
  equals its target.
- generation (`kind='generate'`): greedy decoding (or `decoding`), then the task's
  metric functions and `metric_fns`.

A mixture is evaluated task by task (one row per language in the report). `plan`
registers and checks everything before a model is loaded: an unknown task, a missing
vocabulary or a missing data file fails there, every missing file listed with its
expected format, unless `allow_missing` skips those tasks (they are reported).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from aya_t5x import decoding, registry
from aya_t5x.data import languages
from aya_t5x.evaluation import eval_sets, metrics, predict
from aya_t5x.model_config import MT5Config

DEFAULT_MAX_INPUT_LENGTH = 1024
DEFAULT_MAX_TARGET_LENGTH = 128
MAX_LISTED_MISSING = 5


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalTask:
  """One entry of a suite: what to evaluate and how to score it.

  Attributes:
    task: a registered SeqIO task or mixture (a mixture is evaluated task by task).
    benchmark: or one of the recipe's benchmarks by name ('xcopa', 'flores_x_en', ...).
    module: modules to import first, which register `task`.
    kind: 'rank' or 'generate'; by default the benchmark's, else 'rank' when `options`
      are given or the task has score metrics, else 'generate'.
    options: answer options for rank-classifying a plain (inputs, targets) task.
    metric_fns: more `(targets, predictions)` metric functions for generation.
    split: the split to read (default: the benchmark's, else 'validation').
    max_examples: evaluate only the first N examples of each task.
    max_input_length, max_target_length, truncate: token limits (default: the
      benchmark's); for generation max_target_length is the most new tokens.
    decoding: for generation (default: greedy up to max_target_length).
    primary_metric: the metric reports average (default: the benchmark's, or the
      first one the task returns).
  """

  task: str | None = None
  benchmark: str | None = None
  module: str | Sequence[str] | None = None
  kind: str | None = None
  options: Sequence[str] | None = None
  metric_fns: Sequence[Callable] = ()
  split: str | None = None
  max_examples: int | None = None
  max_input_length: int | None = None
  max_target_length: int | None = None
  truncate: str | None = None
  decoding: decoding.DecodingOptions | None = None
  primary_metric: str | None = None

  def __post_init__(self):
    if (self.task is None) == (self.benchmark is None):
      raise ValueError(f"EvalTask needs exactly one of task= (a SeqIO task or mixture) and "
                       f"benchmark= (one of the recipe's); got task={self.task!r}, "
                       f"benchmark={self.benchmark!r}.")
    if self.kind is not None and self.kind not in eval_sets.KINDS:
      raise ValueError(f"EvalTask({self.task or self.benchmark}): kind={self.kind!r}; choose "
                       f"from {eval_sets.KINDS}.")
    if self.options is not None and len(self.options) < 2:
      raise ValueError(f"EvalTask({self.task}): rank classification needs two or more "
                       f"options, got {self.options!r}.")

  @property
  def label(self) -> str:
    return self.benchmark or self.task


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalSuite:
  """A named list of `EvalTask`s and the settings they share.

  Attributes:
    name: the suite's name (reports, metric prefixes).
    tasks: `EvalTask`s, or lists of them (so that a suite can combine the lists of
      others in gin: `[%AYA_HELDOUT_TASKS, %AYA_GENERATIVE_TASKS]`).
    vocabulary: the model's vocabulary, for benchmark tasks.
    data_dir: the evaluation data root (one folder per benchmark inside).
    data_paths: folder overrides per benchmark folder name, e.g. {'flores200': path}.
    spbleu_model: the FLORES-200 SentencePiece model for spBLEU (a local file).
    batch_size: rows per batch.
    length_bucket: padded widths are multiples of this: fewer compiled shapes when larger.
    max_examples: caps every task (a smoke run); an entry's own cap wins if lower.
    allow_missing: skip (and report) tasks whose data files are missing.
    seed: for sampled decoding.
  """

  name: str
  tasks: Sequence[EvalTask | Sequence[EvalTask]]
  vocabulary: Any = None
  data_dir: str | None = None
  data_paths: Mapping[str, str] = dataclasses.field(default_factory=dict)
  spbleu_model: str | None = None
  batch_size: int = 32
  length_bucket: int = 64
  max_examples: int | None = None
  allow_missing: bool = False
  seed: int = 0

  def entries(self) -> list[EvalTask]:
    out = []
    for item in self.tasks:
      items = [item] if isinstance(item, EvalTask) else list(item)
      for entry in items:
        if not isinstance(entry, EvalTask):
          raise ValueError(f"suite {self.name}: {entry!r} is not an EvalTask.")
        out.append(entry)
    if not out:
      raise ValueError(f"suite {self.name} has no tasks.")
    return out


# ----------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True, kw_only=True)
class PlannedTask:
  """One SeqIO task of a suite, with everything resolved."""

  name: str
  benchmark: str       # the report's row group: a benchmark, mixture or task name
  language: str        # mT5 code, or "" when the task name carries none
  kind: str
  split: str
  max_examples: int | None
  batching: predict.Batching
  max_target_length: int
  decoding: decoding.DecodingOptions
  options: tuple[str, ...] | None
  metric_fns: tuple[Callable, ...]
  primary_metric: str | None
  rows_in_order: bool  # rank rows sorted by idx, so reading can stop at max_examples


@dataclasses.dataclass(frozen=True)
class Plan:
  suite: str
  tasks: tuple[PlannedTask, ...]
  skipped: tuple[tuple[str, str], ...]  # (task, why)
  seed: int = 0


def _language_of(task_name: str) -> str:
  """The language code a task name ends with (`demo_numbers.sw` -> 'sw'), or ''."""
  last = task_name.rsplit(".", 1)[-1]
  language = languages.find_language(last) if "." in task_name else None
  return language.code if language else ""


def _task_language(name: str, info) -> str:
  """A task's language: its benchmark's, the one it was registered with, or its name's."""
  if info is not None:
    return info.language
  from aya_t5x.data import registration

  try:
    registered = registration.task_info(name).language
  except KeyError:
    registered = ""
  return registered or _language_of(name)


def _lookup(name: str):
  import seqio

  names = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  try:
    registry.lookup({n: n for n in names}, name, what="SeqIO task or mixture",
                    empty="(none; give EvalTask.module)")
  except KeyError as e:
    raise ValueError(f"{e.args[0]} Register it in a module and name it in "
                     "EvalTask.module.") from None
  return seqio.get_mixture_or_task(name)


def _entry_tasks(suite: EvalSuite, entry: EvalTask) -> tuple[str, list[str], Any]:
  """(report group, SeqIO task names, benchmark or None) of one entry."""
  import seqio

  from aya_t5x import input_pipeline

  if entry.benchmark:
    if suite.vocabulary is None:
      raise ValueError(
          f"suite {suite.name} evaluates benchmark {entry.benchmark!r}, whose tasks need the "
          "model's vocabulary: add --gin_file mixtures/vocabulary.gin and "
          "--gin.VOCABULARY_PATH=\"'/path/sentencepiece.model'\" (the suite gin files of "
          "gin/eval/ include it).")
    try:
      bench = eval_sets.get_benchmark(entry.benchmark)
    except KeyError as e:
      raise ValueError(e.args[0]) from None
    mixture = eval_sets.register_benchmark(
        bench, vocabulary=suite.vocabulary, data_dir=suite.data_dir,
        data_paths=suite.data_paths, spbleu_model=suite.spbleu_model)
    return bench.name, [t.name for t in seqio.get_mixture_or_task(mixture).tasks], bench
  input_pipeline.import_task_modules(entry.module)
  found = _lookup(entry.task)
  if isinstance(found, seqio.Mixture):
    return entry.task, [t.name for t in found.tasks], None
  language = _language_of(entry.task)
  group = entry.task.rsplit(".", 1)[0] if language else entry.task
  return group, [entry.task], None


def _plan_task(suite: EvalSuite, entry: EvalTask, name: str, group: str,
               bench: eval_sets.Benchmark | None) -> PlannedTask:
  import seqio

  task = seqio.get_mixture_or_task(name)
  info = eval_sets.task_info(name)
  bench = bench or (info.benchmark if info else None)  # a benchmark task named directly
  kind = entry.kind or (bench.kind if bench else None) or (
      "rank" if entry.options or task.score_metric_fns else "generate")
  if kind == "generate" and not (task.predict_metric_fns or entry.metric_fns):
    raise ValueError(
        f"task {name} has no metric functions for generation: give EvalTask.metric_fns, "
        "e.g. [@exact_match, @chrf] in gin, or kind='rank' with options.")
  if kind == "rank" and bench is None and not entry.options and not task.score_metric_fns:
    raise ValueError(f"task {name}: rank classification needs EvalTask.options (the answer "
                     "options) or a task with rank rows and score metrics.")
  max_target = entry.max_target_length or (bench.max_target_length if bench else
                                           DEFAULT_MAX_TARGET_LENGTH)
  caps = [c for c in (entry.max_examples, suite.max_examples) if c is not None]
  return PlannedTask(
      name=name, benchmark=group, language=_task_language(name, info), kind=kind,
      split=entry.split or (bench.split if bench else "validation"),
      max_examples=min(caps) if caps else None,
      batching=predict.Batching(
          batch_size=suite.batch_size, length_bucket=suite.length_bucket,
          max_input_length=entry.max_input_length or (
              bench.max_input_length if bench else DEFAULT_MAX_INPUT_LENGTH),
          truncate=entry.truncate or (bench.truncate if bench else "right")),
      max_target_length=max_target,
      decoding=entry.decoding or decoding.DecodingOptions(method="greedy",
                                                          max_decode_length=max_target),
      options=tuple(entry.options) if entry.options else None,
      metric_fns=tuple(entry.metric_fns),
      primary_metric=entry.primary_metric or (bench.primary_metric if bench else None),
      rows_in_order=bench is not None)


def plan(suite: EvalSuite) -> Plan:
  """Registers and checks every task of `suite`; raises before any model work.

  Missing data files raise FileNotFoundError listing each with its expected format,
  unless `suite.allow_missing`, which skips those tasks and records why.
  """
  planned, skipped, empty = [], [], []
  missing: dict[str, tuple[eval_sets.Benchmark, list]] = {}  # title -> (benchmark, paths)
  for entry in suite.entries():
    group, names, bench = _entry_tasks(suite, entry)
    for name in names:
      info = eval_sets.task_info(name)
      why = info.missing() if info else ""
      # A file that holds several languages may lack this one.
      no_rows = info is not None and not why and not info.rows
      if no_rows:
        why = f"no examples in {', '.join(map(str, info.files().values()))}"
      if why and suite.allow_missing:
        skipped.append((name, why))
      elif no_rows:
        empty.append(f"{name}: {why}")
      elif why:
        paths = missing.setdefault(info.benchmark.title, (info.benchmark, []))[1]
        paths.extend(p for p in info.missing_files() or [None] if p not in paths)
      else:
        planned.append(_plan_task(suite, entry, name, group, bench))
  if missing:
    lines = []
    for title, (bench, paths) in missing.items():
      if paths == [None]:
        lines.append(f"{title}: {eval_sets.no_folder_message(bench)}")
        continue
      shown = ", ".join(map(str, paths[:MAX_LISTED_MISSING]))
      more = f" and {len(paths) - MAX_LISTED_MISSING} more" if len(paths) > \
          MAX_LISTED_MISSING else ""
      lines.append(f"{title}: {len(paths)} file(s) not found: {shown}{more}.\n    Expected "
                   f"{bench.data_format}.")
    raise FileNotFoundError(
        f"suite {suite.name}: evaluation data missing:\n  " + "\n  ".join(lines) +
        "\nPut the files there (docs/evaluation.md), or pass --allow_missing to skip those "
        "tasks.")
  if empty:
    raise ValueError(
        f"suite {suite.name}: evaluation data without examples for a task:\n  "
        + "\n  ".join(empty) + "\nAdd that language's rows, or pass --allow_missing to skip "
        "those tasks.")
  if not planned:
    raise ValueError(f"suite {suite.name}: nothing to evaluate (all {len(skipped)} tasks "
                     "skipped for missing data).")
  return Plan(suite=suite.name, tasks=tuple(planned), skipped=tuple(skipped), seed=suite.seed)


# ----------------------------------------------------------------------------- run


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskResult:
  """One task's scores and what went into them."""

  task: str
  benchmark: str
  language: str
  kind: str
  split: str
  examples: int
  metrics: dict[str, float]
  info: dict[str, str]
  primary_metric: str
  empty_predictions: int
  truncated_inputs: int
  truncated_targets: int
  seconds: float
  records: tuple[dict[str, Any], ...] = ()  # per example: predictions or option scores

  @property
  def score(self) -> float | None:
    return self.metrics.get(self.primary_metric)


@dataclasses.dataclass(frozen=True)
class SuiteResult:
  suite: str
  tasks: tuple[TaskResult, ...]
  skipped: tuple[tuple[str, str], ...]


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _original(example: Mapping[str, Any], feature: str, vocabulary) -> str:
  """A feature's text before tokenization, or its tokens decoded (pre-tokenized tasks)."""
  if f"{feature}_pretokenized" in example:
    return _text(example[f"{feature}_pretokenized"])
  return _text(vocabulary.decode([int(t) for t in example[feature] if t > predict.EOS_ID]))


def _read(task, planned: PlannedTask) -> list[dict[str, Any]]:
  dataset = task.get_dataset(sequence_length=None, split=planned.split, shuffle=False,
                             num_epochs=1)
  limit, examples = planned.max_examples, []
  for example in dataset.as_numpy_iterator():
    if limit is not None:
      if "idx" in example and int(example["idx"]) >= limit:
        if planned.rows_in_order:
          break
        continue
      if "idx" not in example and len(examples) >= limit:
        break
    examples.append(example)
  if not examples:
    raise ValueError(f"task {planned.name}: split {planned.split!r} gave no examples.")
  return examples


def _merge(results: Iterable[Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, str]]:
  """Numbers go to metrics; seqio.metrics.Text and other values to info."""
  import seqio

  values, info = {}, {}
  for result in results:
    for name, value in result.items():
      if isinstance(value, seqio.metrics.Scalar):
        value = value.value
      if isinstance(value, seqio.metrics.Text):
        info[name] = value.textdata
      elif isinstance(value, int | float | np.number):
        values[name] = float(value)
      else:
        info[name] = str(value)
  return values, info


def _rank(task, planned: PlannedTask, examples: list[dict], params: Any, config: MT5Config,
          placement: predict.Placement):
  vocabulary = task.output_features["targets"].vocabulary
  if "is_correct" in examples[0]:
    post = task.postprocess_fn or metrics.rank_target
    targets = [post(_original(ex, "targets", vocabulary), example=ex, is_target=True)
               for ex in examples]
    inputs, options = [ex["inputs"] for ex in examples], [ex["targets"] for ex in examples]
    metric_fns = task.score_metric_fns or [metrics.rank_classification]
    examples_count = len({int(ex["idx"]) for ex in examples})
    unmatched = 0
  else:
    encoded = [np.asarray(list(vocabulary.encode(o)) + [predict.EOS_ID], np.int32)
               for o in planned.options]
    inputs, options, targets = [], [], []
    golds = [_original(ex, "targets", vocabulary).strip() for ex in examples]
    for i, (ex, gold) in enumerate(zip(examples, golds)):
      for option, ids in zip(planned.options, encoded):
        inputs.append(ex["inputs"])
        options.append(ids)
        targets.append(metrics.RankTarget(i, 0, option.strip() == gold))
    metric_fns, examples_count = [metrics.rank_classification], len(examples)
    unmatched = sum(gold not in {o.strip() for o in planned.options} for gold in golds)
  scores, cuts = predict.score(params, config, inputs, options, planned.batching,
                               planned.max_target_length, placement)
  values, info = _merge(fn(targets, scores.tolist()) for fn in metric_fns)
  if unmatched:
    info["targets_not_in_options"] = f"{unmatched} example(s) whose target is no option " \
        "(scored wrong)"
  records = _rank_records(targets, scores)
  return values, info, examples_count, 0, cuts, records


def _rank_records(targets: Sequence[Any], scores: np.ndarray) -> tuple[dict, ...]:
  if not targets or not isinstance(targets[0], metrics.RankTarget):
    return ()
  groups: dict[tuple[int, int], list[int]] = {}
  for row, target in enumerate(targets):
    groups.setdefault((target.example, target.template), []).append(row)
  choices = metrics.rank_choices(targets, scores.tolist())
  return tuple({"example": example, "template": template,
                "scores": [round(float(scores[r]), 5) for r in rows],
                "choice": rows.index(choices[(example, template)][0]),
                "correct": choices[(example, template)][1]}
               for (example, template), rows in groups.items())


def _generate(task, planned: PlannedTask, examples: list[dict], params: Any, config: MT5Config,
              placement: predict.Placement, seed: int):
  vocabulary = task.output_features["targets"].vocabulary
  ids, cuts = predict.generate(params, config, [ex["inputs"] for ex in examples],
                               planned.batching, planned.decoding, placement, seed=seed)
  texts = [_text(vocabulary.decode([int(t) for t in row if t > predict.EOS_ID])) for row in ids]
  post = task.postprocess_fn
  predictions = [post(t, example=ex, is_target=False) if post else t
                 for t, ex in zip(texts, examples)]
  originals = [_original(ex, "targets", vocabulary) for ex in examples]
  targets = [post(t, example=ex, is_target=True) if post else t
             for t, ex in zip(originals, examples)]
  values, info = _merge(fn(targets, predictions) for fn in
                        (*task.predict_metric_fns, *planned.metric_fns))
  empty = sum(not text.strip() for text in texts)
  inputs_vocabulary = task.output_features["inputs"].vocabulary
  records = tuple({"inputs": _original(ex, "inputs", inputs_vocabulary), "target": target,
                   "prediction": text} for ex, target, text in zip(examples, targets, texts))
  return values, info, len(examples), empty, cuts, records


def run_task(planned: PlannedTask, params: Any, config: MT5Config,
             placement: predict.Placement = predict.Placement(), seed: int = 0) -> TaskResult:
  """Reads, runs and scores one task."""
  import seqio

  start = time.perf_counter()
  task = seqio.get_mixture_or_task(planned.name)
  examples = _read(task, planned)
  if planned.kind == "rank":
    values, info, count, empty, cuts, records = _rank(task, planned, examples, params, config,
                                                      placement)
  else:
    values, info, count, empty, cuts, records = _generate(task, planned, examples, params,
                                                          config, placement, seed)
  primary = planned.primary_metric or next(iter(values), "")
  if primary not in values:
    raise ValueError(f"task {planned.name}: primary metric {primary!r} is not among its "
                     f"metrics {sorted(values)}; set EvalTask.primary_metric.")
  return TaskResult(task=planned.name, benchmark=planned.benchmark, language=planned.language,
                    kind=planned.kind, split=planned.split, examples=count, metrics=values,
                    info=info, primary_metric=primary, empty_predictions=empty,
                    truncated_inputs=cuts.inputs, truncated_targets=cuts.targets,
                    seconds=time.perf_counter() - start, records=records)


def run(plan_: Plan, params: Any, config: MT5Config,
        placement: predict.Placement = predict.Placement(),
        progress: Callable[[str], None] | None = None) -> SuiteResult:
  """Runs every planned task in order; `progress` gets one line per task."""
  results = []
  for number, planned in enumerate(plan_.tasks, start=1):
    result = run_task(planned, params, config, placement, seed=plan_.seed)
    results.append(result)
    if progress:
      extra = f", {result.empty_predictions} empty" if result.empty_predictions else ""
      progress(f"[{number}/{len(plan_.tasks)}] {result.task}: {result.primary_metric}="
               f"{result.score:.2f} ({result.examples} examples{extra}, "
               f"{result.seconds:.1f} s)")
  return SuiteResult(suite=plan_.suite, tasks=tuple(results), skipped=plan_.skipped)
