"""Sampling rates inside a source: size-proportional with boosts, temperature, UniMax.

Every strategy maps task sizes (examples) to rates that sum to 1. The mixture schemes
(`aya_t5x.mixtures`) then scale a source's rates by the source's share of the budget:

- `proportional`: rate ∝ size × boost (uniform when no size is known). RECIPE.md §4:
  "datasets share its weight in proportion to size"; Dolly and ShareGPT-Command get a
  boost.
- `temperature`: rate ∝ size^(1/T) (T=1 is proportional; large T tends to uniform), the
  mT5/XLM-R way of lifting small languages.
- `unimax`: UniMax (Chung et al., 2023): spread a budget of examples uniformly over the
  tasks, but give none more than `max_epochs` passes over its data; what a small task
  cannot take goes to the others.

Strategies are registered by name (`register_strategy` / `get_strategy`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

Rates = dict[str, float]
Strategy = Callable[..., Rates]

# Dolly's translations get tasks of their own inside the translated collection so that
# they can be weighted up; the paper does not publish the factor, so 2 is this project's
# default (set aya_mixture.boosts to change it; `aya-t5x cache` splits by the same).
DEFAULT_BOOSTS = {"aya_translated": {"dolly": 2.0}}


def _normalised(weights: Mapping[str, float]) -> Rates:
  total = float(sum(weights.values()))
  if total <= 0:
    raise ValueError("all rates are zero: nothing to sample")
  return {name: w / total for name, w in weights.items()}


def _check_sizes(sizes: Mapping[str, float | None]) -> None:
  if not sizes:
    raise ValueError("no tasks to weight")
  for name, size in sizes.items():
    if size is not None and size < 0:
      raise ValueError(f"task {name!r} has a negative size {size}")


def proportional(sizes: Mapping[str, float | None], *,
                 boosts: Mapping[str, float] | None = None) -> Rates:
  """Rates ∝ size × boost; uniform × boost when no task has a known positive size."""
  _check_sizes(sizes)
  boosts = boosts or {}
  for name, factor in boosts.items():
    if name not in sizes:
      raise ValueError(f"boost for unknown task {name!r}; tasks: {', '.join(sorted(sizes))}")
    if factor < 0:
      raise ValueError(f"boost for {name!r} must be non-negative, got {factor}")
  known = any(s for s in sizes.values())
  return _normalised({name: (float(size or 0) if known else 1.0) * boosts.get(name, 1.0)
                      for name, size in sizes.items()})


def temperature(sizes: Mapping[str, float | None], *, temperature: float = 1.0,
                boosts: Mapping[str, float] | None = None) -> Rates:
  """Rates ∝ (size × boost)^(1/temperature)."""
  if temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}")
  base = proportional(sizes, boosts=boosts)
  return _normalised({name: rate ** (1.0 / temperature) for name, rate in base.items()})


def unimax(sizes: Mapping[str, float | None], *, budget: float, max_epochs: float = 1.0,
           boosts: Mapping[str, float] | None = None) -> Rates:
  """UniMax: a uniform share of `budget` examples per task, capped at `max_epochs` × size.

  Tasks are visited from the smallest; each takes the lesser of an equal share of what
  is left and its cap, so the budget left by small tasks flows to larger ones. When the
  caps cannot absorb the budget, every task sits at its cap (the rates then follow the
  caps, and the report will show the epochs). `boosts` multiply a task's cap.
  """
  _check_sizes(sizes)
  if budget <= 0 or max_epochs <= 0:
    raise ValueError(f"budget and max_epochs must be positive, got {budget}, {max_epochs}")
  boosts = boosts or {}
  caps = {name: max_epochs * float(size or 0) * boosts.get(name, 1.0)
          for name, size in sizes.items()}
  allocation: Rates = {}
  remaining = float(budget)
  order = sorted(caps, key=lambda n: (caps[n], n))
  for position, name in enumerate(order):
    share = remaining / (len(order) - position)
    allocation[name] = min(share, caps[name])
    remaining -= allocation[name]
  return _normalised(allocation)


# The one registry of within-source strategies.
_STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, strategy: Strategy) -> Strategy:
  if name in _STRATEGIES and _STRATEGIES[name] is not strategy:
    raise ValueError(f"strategy {name!r} is already registered")
  _STRATEGIES[name] = strategy
  return strategy


def get_strategy(name: str) -> Strategy:
  """A strategy by name; the error lists the registered ones."""
  if name not in _STRATEGIES:
    close = difflib.get_close_matches(name, _STRATEGIES, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown mixing strategy {name!r}.{hint} Strategies: "
                   f"{', '.join(sorted(_STRATEGIES))}")
  return _STRATEGIES[name]


register_strategy("proportional", proportional)
register_strategy("temperature", temperature)
register_strategy("unimax", unimax)


def epochs(rates: Mapping[str, float], sizes: Mapping[str, float], examples: float) -> Rates:
  """How many passes over each task's data `examples` draws at these rates."""
  return {name: (rate * examples / sizes[name]) if sizes.get(name) else float("inf")
          for name, rate in rates.items()}


# ----------------------------------------------------------------------------- plans


@dataclasses.dataclass(frozen=True, kw_only=True)
class MixturePlan:
  """A weighted mixture worked out: what each source and task gets of the budget.

  `source_weights` are the scheme's percentages; `task_rates` the resulting share of
  each task (summing to 1). `source_tasks` holds what the scan of each source found
  (`registration.SourceTasks`); without data (`source_sizes` only, for example the
  published sizes of RECIPE.md §3) a plan is per source only.
  """

  name: str
  scheme: str
  source_weights: Mapping[str, float]
  task_rates: Mapping[str, float] = dataclasses.field(default_factory=dict)
  source_tasks: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  source_sizes: Mapping[str, float] = dataclasses.field(default_factory=dict)
  strategy: str = "proportional"

  def size_of(self, source: str) -> float:
    if source in self.source_tasks:
      return float(self.source_tasks[source].train_size)
    return float(self.source_sizes.get(source, 0))


def registered_plan(name: str) -> MixturePlan:
  """The plan of any registered SeqIO mixture, from its rates: a source per task.

  Tasks registered by aya_t5x (sources, manifests) bring their data and sizes; others
  their `num_input_examples` of the train split where SeqIO knows it.
  """
  import seqio

  from aya_t5x.data import registration

  mixture = seqio.get_mixture_or_task(name)
  if not isinstance(mixture, seqio.Mixture):
    raise ValueError(f"{name} is a SeqIO task, not a mixture; a report is per mixture")
  rates = {task.name: float(mixture.get_rate(task)) for task in mixture.tasks}
  total = sum(rates.values())
  planned, sizes = {}, {}
  for task in mixture.tasks:
    found = registration.planned_task(task.name)
    if found is not None:
      planned[task.name] = found
    else:
      sizes[task.name] = float(task.num_input_examples("train") or 0)
  return MixturePlan(name=name, scheme="registered SeqIO mixture",
                     source_weights={t: 100.0 * r / total for t, r in rates.items()},
                     task_rates={t: r / total for t, r in rates.items()},
                     source_tasks=planned, source_sizes=sizes, strategy="its own rates")


def compose(source_weights: Mapping[str, float], source_rates: Mapping[str, Mapping[str, float]]
            ) -> Rates:
  """Task rates of a mixture: each source's weight spread by its rates inside the source."""
  missing = set(source_weights) ^ set(source_rates)
  if missing:
    raise ValueError(f"sources without both a weight and rates: {', '.join(sorted(missing))}")
  total = float(sum(source_weights.values()))
  rates: Rates = {}
  for source, weight in source_weights.items():
    for task, rate in source_rates[source].items():
      if task in rates:
        raise ValueError(f"task {task!r} appears in two sources")
      rates[task] = weight / total * rate
  return rates
