"""Evaluators the trainer runs every N steps: their contract, and the teacher-forced train-eval.

An evaluator is anything with a `name` and `run(params, context)` that yields
`(metric_name, value)` pairs; the trainer owns the schedule and the logging. The
evaluation suite (rank classification, generation metrics) plugs in through the same
contract, chosen by gin.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import jax
from jax.sharding import Mesh

from aya_t5x import input_pipeline
from aya_t5x.model_config import MT5Config
from aya_t5x.partitioning import Partitioner
from aya_t5x.train_step import LossConfig, eval_metrics, make_eval_step


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalContext:
  """What an evaluator may use besides the parameters."""

  config: MT5Config
  mesh: Mesh
  partitioner: Partitioner
  param_shardings: Any
  loss: LossConfig
  step: int


class Evaluator(Protocol):
  name: str

  def run(self, params: Any, context: EvalContext) -> Iterable[tuple[str, float]]:
    ...


@dataclasses.dataclass(kw_only=True)
class TeacherForcedEvaluator:
  """Loss and token accuracy on a validation split, dropout off (T5X's `train_eval`).

  Attributes:
    dataset: the split to read (usually `num_epochs=1`, no shuffling).
    num_batches: at most this many batches per evaluation (None: the whole split).
    name: prefix of the reported metrics.
  """

  dataset: input_pipeline.DatasetConfig
  num_batches: int | None = None
  name: str = "train_eval"
  _compiled: Any = dataclasses.field(default=None, init=False, repr=False)

  def run(self, params: Any, context: EvalContext) -> Iterable[tuple[str, float]]:
    sharding = context.partitioner.batch_sharding(context.mesh)
    if self._compiled is None:
      step = make_eval_step(context.config, context.loss)
      self._compiled = jax.jit(step, in_shardings=(context.param_shardings, sharding))
    # Every host reads the whole split as one shard and keeps the rows its devices hold:
    # all hosts then see the same number of batches, so none waits in a collective for a
    # host whose shard ran out first.
    batches = input_pipeline.BatchIterator(
        self.dataset, rows=input_pipeline.host_rows(sharding, self.dataset.batch_size),
        num_shards=1)
    totals: dict[str, float] = {}
    with jax.set_mesh(context.mesh), context.partitioner.rules_context():
      for batch in itertools.islice(batches, self.num_batches):
        sums = self._compiled(params, input_pipeline.global_batch(batch, sharding))
        for key, value in jax.device_get(sums).items():
          totals[key] = totals.get(key, 0.0) + float(value)
    if not totals:
      raise ValueError(f"{self.name}: the split {self.dataset.split!r} of "
                       f"{self.dataset.mixture_or_task_name!r} gave no full batch of "
                       f"{self.dataset.batch_size}; lower the eval batch size.")
    yield from eval_metrics(totals).items()


def missing_split(dataset: input_pipeline.DatasetConfig) -> str | None:
  """Why `dataset` has no data (no task of it has its split), or None when some has."""
  import seqio

  input_pipeline.check_dataset_config(dataset)
  provider = seqio.get_mixture_or_task(dataset.mixture_or_task_name)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  if any(dataset.split in task.splits for task in tasks):
    return None
  kind = "mixture" if isinstance(provider, seqio.Mixture) else "task"
  return (f"{kind} {dataset.mixture_or_task_name!r} has no {dataset.split!r} split "
          f"(its splits: {', '.join(sorted({s for t in tasks for s in t.splits}))})")


def with_data(evaluators: Sequence[Evaluator]) -> tuple[list[Evaluator], list[str]]:
  """The evaluators whose data exists, and a note for each one turned off for want of it."""
  kept, notes = [], []
  for evaluator in evaluators:
    dataset = getattr(evaluator, "dataset", None)
    why = missing_split(dataset) if isinstance(dataset, input_pipeline.DatasetConfig) else None
    if why:
      notes.append(f"{evaluator.name} is off for this run: the {why}. Add one (`aya-t5x "
                   "tasks add NAME --validation FILE --replace`) to measure it.")
    else:
      kept.append(evaluator)
  return kept, notes
