"""The recipe's filters and caps (RECIPE.md §3), each saying why it removed an example.

A filter is a frozen config; `start()` gives the object a scan uses, with:

- `name`, `needs_scan`: a filter that must see the data before deciding (caps) has
  `needs_scan=True` and is fed every example once through `observe`, then `finalize`;
- `reason(example)`: None to keep the example, else why it goes (counted by reason in
  the source's `DataReport`);
- `summary()`: figures for the report (or None).

A scanning filter's config may also say which examples its decisions depend on together,
`scan_key(example)`: a cap decides within its group, template pruning within a
(language group, dataset). The Beam cache pipeline (`aya_t5x.data.cache_pipeline`) then
runs one scan per key in parallel; without `scan_key` it runs one scan over the source.

Stateless filters are their own run (`RecordFilter`). Filters are registered by name
(`register_filter` / `get_filter`) so that gin and the CLI can name them.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import difflib
import hashlib
import heapq
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from aya_t5x.data import languages
from aya_t5x.data.examples import Example
from aya_t5x.data.templates import TemplatePruning


class FilterRun(Protocol):
  """What a scan drives: `observe`/`finalize` only when `needs_scan`, then `reason`."""

  name: str
  needs_scan: bool

  def reason(self, example: Example) -> str | None: ...

  def summary(self) -> dict[str, Any] | None: ...


class SourceFilter(Protocol):
  """A filter's frozen configuration; `start()` gives a fresh run for one scan."""

  def start(self) -> FilterRun: ...


class RecordFilter(abc.ABC):
  """A filter that decides from one example alone; it is its own run."""

  name: ClassVar[str] = "filter"
  needs_scan: ClassVar[bool] = False

  def start(self) -> RecordFilter:
    return self

  def observe(self, example: Example) -> None:
    raise AssertionError(f"{self.name} does not scan")

  def finalize(self) -> None:  # noqa: B027 (optional hook: most filters need no scan)
    """Called once after the scan, for filters that compute something from it."""

  def summary(self) -> dict[str, Any] | None:
    return None

  @abc.abstractmethod
  def reason(self, example: Example) -> str | None:
    """Why `example` is dropped, or None to keep it."""


# The one registry of filters (name -> filter class or factory).
_FILTERS: dict[str, Callable[..., Any]] = {}


def register_filter(name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
  if name in _FILTERS and _FILTERS[name] is not factory:
    raise ValueError(f"filter {name!r} is already registered")
  _FILTERS[name] = factory
  return factory


def get_filter(name: str, **kwargs: Any) -> Any:
  """A filter by its registered name, built with `kwargs`; the error lists the names."""
  if name not in _FILTERS:
    close = difflib.get_close_matches(name, _FILTERS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown filter {name!r}.{hint} Filters: {', '.join(sorted(_FILTERS))}")
  return _FILTERS[name](**kwargs)


def _registered(cls):
  return register_filter(cls.name, cls)


# ----------------------------------------------------------------------------- languages


@_registered
@dataclasses.dataclass(frozen=True, kw_only=True)
class KeepMT5Languages(RecordFilter):
  """Keeps mT5's 101 languages (RECIPE.md §3) and those added (`aya-t5x languages add`);
  the reason names the language dropped and how to add it."""

  name: ClassVar[str] = "mt5_languages"

  def reason(self, example: Example) -> str | None:
    if languages.find_language(example.language) is None:
      return f"not an mT5 language ({example.language_code or example.language})"
    return None


# ----------------------------------------------------------------------------- content


@_registered
@dataclasses.dataclass(frozen=True, kw_only=True)
class DropUnk(RecordFilter):
  """Drops machine translations whose output contains `<unk>` (the translated collection)."""

  name: ClassVar[str] = "drop_unk"
  marker: str = "<unk>"
  fields: tuple[str, ...] = ("inputs", "targets")

  def reason(self, example: Example) -> str | None:
    for field in self.fields:
      if self.marker in getattr(example, field):
        return f"{self.marker} in {field}"
    return None


_URL = re.compile(r"(https?://|www\.)\S+|\b[\w-]+\.(com|org|net|io|edu|gov)(/\S*)?\b", re.I)
# Frequent English function words: a prompt of five or more words without any of them
# is very unlikely to be English.
_ENGLISH_WORDS = frozenset(
    "the a an of to and in is are was were be for on with that this it as at by from "
    "or not what how why who which can you your i my me we do does did please write "
    "give explain make if have has".split())


def looks_english(text: str) -> bool:
  """A cheap check that a prompt is English: Latin letters and English function words."""
  letters = [c for c in text if c.isalpha()]
  if not letters:
    return False
  if sum(c.isascii() for c in letters) / len(letters) < 0.9:
    return False
  words = re.findall(r"[a-z']+", text.lower())
  return len(words) < 5 or any(w in _ENGLISH_WORDS for w in words[:200])


@_registered
@dataclasses.dataclass(frozen=True, kw_only=True)
class ShareGPTPrompts(RecordFilter):
  """ShareGPT prompt rules: no URLs, at most 10,000 characters, English originals only.

  The rules apply to the English prompt a record was made from: the record's
  `original_field` when present (translations carry it), else its inputs when the
  record is English. `is_english` may be replaced by a real language identifier.
  """

  name: ClassVar[str] = "sharegpt_prompts"
  max_chars: int = 10_000
  original_field: str = "original_inputs"
  is_english: Callable[[str], bool] = looks_english

  def reason(self, example: Example) -> str | None:
    prompt = example.fields.get(self.original_field)
    if not isinstance(prompt, str) or not prompt:
      prompt = example.inputs if example.language == "en" else None
    if prompt is None:
      return None
    if _URL.search(prompt):
      return "prompt has a URL"
    if len(prompt) > self.max_chars:
      return f"prompt over {self.max_chars} characters"
    if not self.is_english(prompt):
      return "prompt not English"
    return None


# ----------------------------------------------------------------------------- safety distillation


def longest_repeated_substring(text: str) -> int:
  """The length of the longest substring that occurs at least twice (occurrences may overlap).

  Suffix array by sorting, then Kasai's longest-common-prefix pass: O(n log n) compares.
  """
  n = len(text)
  suffixes = sorted(range(n), key=lambda i: text[i:])
  rank = [0] * n
  for position, i in enumerate(suffixes):
    rank[i] = position
  longest = common = 0
  for i in range(n):
    if rank[i] == 0:
      common = 0
      continue
    j = suffixes[rank[i] - 1]
    while i + common < n and j + common < n and text[i + common] == text[j + common]:
      common += 1
    longest = max(longest, common)
    common = max(common - 1, 0)
  return longest


@_registered
@dataclasses.dataclass(frozen=True, kw_only=True)
class SafetyDistillationFilter(RecordFilter):
  """RECIPE.md §6 item 3: drops teacher answers (`targets`) that are too short, too long or
  repetitive (longest repeated substring longer than length / repetition_divisor)."""

  name: ClassVar[str] = "safety_distillation"
  min_chars: int = 20
  max_chars: int = 1000
  repetition_divisor: float = 2.1

  def answer_reason(self, answer: str) -> str | None:
    if len(answer) < self.min_chars:
      return f"answer shorter than {self.min_chars} characters"
    if len(answer) > self.max_chars:
      return f"answer longer than {self.max_chars} characters"
    if longest_repeated_substring(answer) > len(answer) / self.repetition_divisor:
      return f"repetitive answer (repeated substring over length / {self.repetition_divisor})"
    return None

  def reason(self, example: Example) -> str | None:
    return self.answer_reason(example.targets)


def _normalise(name: str) -> str:
  return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


@_registered
@dataclasses.dataclass(frozen=True, kw_only=True)
class ExcludeTaskTypes(RecordFilter):
  """Drops held-out task types and code (Data Provenance): matched on words, any case."""

  name: ClassVar[str] = "exclude_task_types"
  task_types: tuple[str, ...] = ("textual entailment", "coreference", "sentence comparison",
                                 "code")

  def reason(self, example: Example) -> str | None:
    task = f" {_normalise(example.task_type)} "
    for excluded in self.task_types:
      if f" {_normalise(excluded)} " in task:
        return f"held-out task type ({excluded})"
    return None


@_registered
@dataclasses.dataclass(frozen=True, kw_only=True)
class ExcludeDatasets(RecordFilter):
  """Drops named datasets (those derived from evaluation sets, code datasets, ...)."""

  name: ClassVar[str] = "exclude_datasets"
  datasets: tuple[str, ...] = ()

  def reason(self, example: Example) -> str | None:
    dataset = _normalise(example.dataset)
    for excluded in self.datasets:
      if _normalise(excluded) == dataset:
        return f"excluded dataset ({excluded})"
    return None


# ----------------------------------------------------------------------------- caps


def _matches(dataset: str, names: Iterable[str]) -> bool:
  dataset = _normalise(dataset)
  return any(_normalise(n) and _normalise(n) in dataset for n in names)


def sample_key(example: Example, group: tuple[str, ...], seed: int) -> int:
  """A stable pseudo-random rank for an example within its group.

  The group is part of the hash, so each language draws a different sample of the same
  dataset, as the recipe asks; the location makes duplicates distinct.
  """
  text = "\x1f".join((str(seed), *group, example.record_id, example.inputs, example.targets,
                      str(example.location)))
  return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def _group(example: Example, by: Sequence[str]) -> tuple[str, ...]:
  return tuple(str(getattr(example, a)) for a in by)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cap:
  """At most `cap` examples per group, a seeded uniform sample; `uncapped` datasets stay whole.

  `by` names the Example attributes that form a group: ("dataset",) for the Data
  Provenance cap of 20,000 per dataset, ("language", "dataset") for the translated
  collection's 3,000 per language per dataset. Uncapped datasets match by name,
  case-insensitively, as a substring ("dolly" matches "Dolly-v2 (T)").
  """

  cap: int
  by: tuple[str, ...] = ("dataset",)
  seed: int = 0
  uncapped: tuple[str, ...] = ()
  name: str = "cap"

  def scan_key(self, example: Example) -> tuple[str, ...]:
    """The group a decision depends on: the cap is per group alone."""
    return _group(example, self.by)

  def start(self) -> _CapRun:
    if self.cap < 1:
      raise ValueError(f"{self.name}: cap must be at least 1, got {self.cap}")
    return _CapRun(self)


class _CapRun:
  needs_scan = True

  def __init__(self, config: Cap):
    self.config = config
    self.name = config.name
    self._heaps: dict[tuple[str, ...], list[int]] = collections.defaultdict(list)
    self._seen: collections.Counter = collections.Counter()
    self.thresholds: dict[tuple[str, ...], int] = {}

  def _group(self, example: Example) -> tuple[str, ...]:
    return _group(example, self.config.by)

  def observe(self, example: Example) -> None:
    if _matches(example.dataset, self.config.uncapped):
      return
    group = self._group(example)
    self._seen[group] += 1
    heap = self._heaps[group]  # a max-heap (negated) of the `cap` smallest ranks
    rank = -sample_key(example, group, self.config.seed)
    if len(heap) < self.config.cap:
      heapq.heappush(heap, rank)
    elif rank > heap[0]:
      heapq.heapreplace(heap, rank)

  def finalize(self) -> None:
    self.thresholds = {g: -h[0] for g, h in self._heaps.items()
                       if self._seen[g] > self.config.cap}
    self._heaps.clear()

  def reason(self, example: Example) -> str | None:
    group = self._group(example)
    threshold = self.thresholds.get(group)
    if threshold is None or _matches(example.dataset, self.config.uncapped):
      return None
    if sample_key(example, group, self.config.seed) > threshold:
      return f"over the cap of {self.config.cap} per {'/'.join(self.config.by)}"
    return None

  def summary(self) -> dict[str, Any]:
    capped = {"/".join(g): self._seen[g] for g in self.thresholds}
    return {"cap": self.config.cap, "by": list(self.config.by),
            "groups_capped": len(capped), "largest_before_cap": dict(
                sorted(capped.items(), key=lambda kv: -kv[1])[:10])}


register_filter("cap", Cap)


# ----------------------------------------------------------------------------- decontamination


def _ngrams(text: str, n: int) -> Iterable[tuple[str, ...]]:
  words = re.findall(r"\w+", text.lower())
  return (tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _hash(gram: tuple[str, ...]) -> int:
  return int.from_bytes(hashlib.blake2b(" ".join(gram).encode("utf-8"),
                                        digest_size=8).digest(), "big")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Decontaminate:
  """Drops examples sharing a word n-gram (n words, lowercased) with an evaluation set.

  `eval_texts` maps an evaluation set's name to its texts (prompts, references). Texts
  shorter than `n` words cannot match; choose `n` for the sets' lengths (13 is the
  usual choice for long texts, 8 suits short prompts). The report counts removals per
  evaluation set.
  """

  eval_texts: Mapping[str, Sequence[str]]
  n: int = 13
  fields: tuple[str, ...] = ("inputs", "targets")
  name: str = "decontaminate"

  @classmethod
  def from_files(cls, paths: Mapping[str, str], *, n: int = 13,
                 text_fields: Sequence[str] | None = None, **kwargs: Any) -> Decontaminate:
    """Evaluation sets from files (any format `readers` reads): every string field, or
    `text_fields` only."""
    from aya_t5x.data import readers

    texts: dict[str, list[str]] = {}
    for name, path in paths.items():
      texts[name] = []
      for _, record in readers.iter_records(path):
        if isinstance(record, readers.MalformedRecord):
          raise record
        for key, value in record.items():
          if isinstance(value, str) and (text_fields is None or key in text_fields):
            texts[name].append(value)
    return cls(eval_texts=texts, n=n, **kwargs)

  def start(self) -> _DecontaminateRun:
    if self.n < 1:
      raise ValueError(f"{self.name}: n must be at least 1, got {self.n}")
    return _DecontaminateRun(self)


class _DecontaminateRun(RecordFilter):
  def __init__(self, config: Decontaminate):
    self.config = config
    self.name = config.name
    self._owner: dict[int, str] = {}
    for set_name, texts in config.eval_texts.items():
      for text in texts:
        for gram in _ngrams(text, config.n):
          self._owner.setdefault(_hash(gram), set_name)
    self._removed: collections.Counter = collections.Counter()

  def reason(self, example: Example) -> str | None:
    for field in self.config.fields:
      for gram in _ngrams(getattr(example, field), self.config.n):
        owner = self._owner.get(_hash(gram))
        if owner is not None:
          return f"{self.config.n}-gram overlap with {owner}"
    return None

  def summary(self) -> dict[str, Any]:
    return {"n": self.config.n, "eval_sets": sorted(self.config.eval_texts),
            "eval_ngrams": len(self._owner)}


register_filter("decontaminate", Decontaminate)

register_filter("template_pruning", TemplatePruning)


def filter_distillation_answers(records: Sequence[Mapping[str, Any]], *,
                                prompt_key: str = "inputs", answer_key: str = "completion",
                                preamble: str | None = None,
                                answer_filter: SafetyDistillationFilter = SafetyDistillationFilter()
                                ) -> tuple[list[dict[str, Any]], collections.Counter]:
  """Teacher outputs to distillation pairs: {"inputs": prompt without preamble, "targets"}.

  Records whose answer a filter rejects, or whose prompt does not start with `preamble`
  (when given), are dropped and counted by reason; other fields are kept.
  """
  kept, dropped = [], collections.Counter()
  for record in records:
    prompt, answer = record.get(prompt_key), record.get(answer_key)
    if not isinstance(prompt, str) or not isinstance(answer, str):
      dropped[f"no string {prompt_key!r} and {answer_key!r}"] += 1
      continue
    if preamble is not None:
      if not prompt.startswith(preamble):
        dropped["prompt does not start with the preamble"] += 1
        continue
      prompt = prompt[len(preamble):].strip()
    why = answer_filter.answer_reason(answer)
    if why:
      dropped[why] += 1
      continue
    extra = {k: v for k, v in record.items() if k not in (prompt_key, answer_key)}
    kept.append({**extra, "inputs": prompt, "targets": answer})
  return kept, dropped
