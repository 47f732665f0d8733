"""Weighting schemes: per-source shares of the sampling budget, and the mixtures they plan.

A scheme (RECIPE.md §4) gives each of the six training sources a percent of the budget;
inside a source the share is spread over its tasks by a `mixing` strategy. This module is
the machinery: the scheme registry, planning a mixture over the sources' files (or an
`aya-t5x cache` output), and registering the planned tasks and mixture with SeqIO. The
recipe's three schemes are registered by `aya_t5x.mixtures` (the folder `mixtures/`), with
the gin entry point `aya_mixture`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aya_t5x import registry
from aya_t5x.data import mixing, registration


@dataclasses.dataclass(frozen=True, kw_only=True)
class WeightingScheme:
  """Percent of the sampling budget per source (keys are source names)."""

  name: str
  title: str
  weights: Mapping[str, float]

  def __post_init__(self):
    total = sum(self.weights.values())
    if abs(total - 100.0) > 1e-9:
      raise ValueError(f"scheme {self.name}: weights add up to {total}, not 100")


SOURCES = ("aya_dataset", "aya_templated", "xp3x", "data_provenance", "aya_translated",
           "sharegpt_command")

# RECIPE.md §3: examples per source as published (the report's default sizes).
PUBLISHED_SIZES = {"aya_dataset": 199_500, "aya_templated": 18_900_000,
                   "xp3x": 168_000_000, "data_provenance": 1_650_000,
                   "aya_translated": 7_530_000, "sharegpt_command": 6_800_000}


_SCHEMES: dict[str, WeightingScheme] = {}


def register_scheme(scheme: WeightingScheme) -> WeightingScheme:
  if scheme.name in _SCHEMES and _SCHEMES[scheme.name] != scheme:
    raise ValueError(f"scheme {scheme.name!r} is already registered")
  _SCHEMES[scheme.name] = scheme
  return scheme


def get_scheme(name: str) -> WeightingScheme:
  """A scheme by name (`aya_` prefix optional); the error lists the schemes."""
  return registry.lookup(_SCHEMES, name.removeprefix("aya_"), what="weighting scheme")


def scheme_names() -> tuple[str, ...]:
  return tuple(sorted(_SCHEMES))


def scheme_over_sources(name: str, title: str, *percent: float) -> WeightingScheme:
  """Registers a scheme given as percents in the order of `SOURCES`."""
  return register_scheme(WeightingScheme(name=name, title=title,
                                         weights=dict(zip(SOURCES, percent, strict=True))))


def _weights(scheme: WeightingScheme, present: set[str], extra: Mapping[str, float],
             allow_missing_sources: bool) -> dict[str, float]:
  missing = [s for s in scheme.weights if s not in present]
  if missing and not allow_missing_sources:
    raise ValueError(
        f"scheme {scheme.name} needs data for {', '.join(missing)}: add them to AYA_SOURCES "
        "({'source': '/path', ...}), or set allow_missing_sources=True to share their weight "
        "among the others")
  weights = {s: w for s, w in scheme.weights.items() if s in present}
  if sum(extra.values()) >= 100:
    raise ValueError(f"extra tasks take {sum(extra.values())}% of the budget; at most 100")
  # The scheme's sources keep their proportions within what the extra tasks leave.
  scale = (100.0 - sum(extra.values())) / sum(weights.values())
  return {**{s: w * scale for s, w in weights.items()}, **extra}


def plan_aya_mixture(scheme: str, sources: Mapping[str, Any], *, name: str | None = None,
                     strategy: str = "proportional",
                     strategy_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
                     boosts: Mapping[str, Mapping[str, float]] | None = None,
                     tolerant: bool = False, allow_missing_sources: bool = False,
                     extra: Mapping[str, float] | None = None,
                     cache_dir: str | None = None) -> mixing.MixturePlan:
  """Scans the sources and works out a scheme's mixture, without registering anything.

  `sources` maps source names to paths (a file, folder or {split: path}); `extra` maps
  already registered task or mixture names to a percent of the budget (the safety
  distillation task at 3%, RECIPE.md §6); `boosts` maps a source to {dataset pattern:
  factor}; `strategy_kwargs` maps a source to its strategy's arguments. With
  `cache_dir` (an `aya-t5x cache` output built from these sources) nothing is scanned:
  the sizes come from the cache, which must be fresh (`caches.CacheError` otherwise).
  """
  chosen = get_scheme(scheme)
  boosts = mixing.DEFAULT_BOOSTS if boosts is None else boosts
  extra = dict(extra or {})
  unknown = set(sources) - set(SOURCES)
  if unknown:
    raise ValueError(f"unknown source(s) {', '.join(sorted(unknown))} in AYA_SOURCES; "
                     f"sources: {', '.join(SOURCES)}")
  unweighted = set(sources) - set(chosen.weights)
  if unweighted:
    raise ValueError(
        f"AYA_SOURCES has {', '.join(sorted(unweighted))}, which scheme {chosen.name} gives "
        f"no weight (it weights {', '.join(chosen.weights)}); remove them from AYA_SOURCES "
        "or give them a weight in the scheme")
  if cache_dir is not None:
    planned = {source: _plan_cached_source(cache_dir, source, paths, boosts=boosts.get(source),
                                           strategy=strategy,
                                           strategy_kwargs=(strategy_kwargs or {}).get(source))
               for source, paths in sources.items()}
  else:
    planned = {
        source: registration.plan_source_tasks(
            source, paths, tolerant=tolerant, boosts=boosts.get(source),
            strategy=strategy, strategy_kwargs=(strategy_kwargs or {}).get(source))
        for source, paths in sources.items()}
  weights = _weights(chosen, set(planned), extra, allow_missing_sources)
  source_rates = {s: p.rates for s, p in planned.items()}
  source_rates.update({task: {task: 1.0} for task in extra})
  return mixing.MixturePlan(name=name or f"aya_{chosen.name}", scheme=chosen.name,
                            source_weights=weights,
                            task_rates=mixing.compose(weights, source_rates),
                            source_tasks=planned, strategy=strategy)


def _plan_cached_source(cache_dir: str, source: str, paths: Any, *,
                        boosts: Mapping[str, float] | None, strategy: str,
                        strategy_kwargs: Mapping[str, Any] | None
                        ) -> registration.SourceTasks:
  from aya_t5x.data import caches

  info = caches.read_info(cache_dir)
  caches.check_source(info, cache_dir, source, paths)
  patterns = list(registration.group_patterns(boosts=boosts))
  if info["sources"][source]["patterns"] != patterns:
    raise caches.CacheError(
        f"cache {cache_dir}: source {source} was split into tasks by the dataset patterns "
        f"{info['sources'][source]['patterns']}, the mixture asks for {patterns} (its "
        f"boosts); rebuild it with: {info.get('command') or caches.BUILD_COMMAND}")
  return registration.plan_from_index(caches.source_index(info, cache_dir, source),
                                      boosts=boosts, strategy=strategy,
                                      strategy_kwargs=strategy_kwargs, where=cache_dir)


def published_plan(scheme: str) -> mixing.MixturePlan:
  """A scheme over the published source sizes (RECIPE.md §3): per source, no data needed."""
  chosen = get_scheme(scheme)
  return mixing.MixturePlan(name=f"aya_{chosen.name}", scheme=chosen.name,
                            source_weights=dict(chosen.weights), source_sizes=PUBLISHED_SIZES)


# Plans registered in this process, by mixture name (the report looks them up), and the
# arguments each was registered with.
_PLANS: dict[str, mixing.MixturePlan] = {}
_KEYS: dict[str, Any] = {}


def registered_plan(name: str) -> mixing.MixturePlan | None:
  return _PLANS.get(name)


def register_plan(plan: mixing.MixturePlan, vocabulary) -> str:
  """Registers the SeqIO tasks of every source and the mixture of a plan; returns its name."""
  import seqio

  for planned in plan.source_tasks.values():
    registration.register_planned(planned, vocabulary)
  if plan.name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(plan.name)
  seqio.MixtureRegistry.add(plan.name, list(plan.task_rates.items()))
  _PLANS[plan.name] = plan
  return plan.name


def register_aya_mixture(scheme: str, sources: Mapping[str, Any], vocabulary,
                         **kwargs: Any) -> str:
  """Registers a scheme's mixture over the sources and returns its name (`aya_<scheme>`).

  Keyword arguments as `plan_aya_mixture`. Calling it again with the same arguments
  returns the registered name without scanning again (gin may evaluate it more than
  once).
  """
  name = kwargs.get("name") or f"aya_{get_scheme(scheme).name}"
  key = (scheme, repr(sources), id(vocabulary), repr(sorted(kwargs.items())))
  if _PLANS.get(name) is not None and _KEYS.get(name) == key:
    return name
  plan = plan_aya_mixture(scheme, sources, **kwargs)
  if kwargs.get("cache_dir"):
    from aya_t5x.data import caches

    caches.check_vocabulary(caches.read_info(kwargs["cache_dir"]), kwargs["cache_dir"],
                            vocabulary)
  register_plan(plan, vocabulary)
  _KEYS[name] = key
  return name

