"""Prompt/completion templates with named fields, per-language sets, and template pruning.

A template fills `{{field}}` placeholders from a record, Aya Collection style:

    Template(id="tweet_sentiment",
             inputs="Classify the sentiment of the following tweet: {{tweet}}",
             targets="I would classify the given tweet as: {{label}}")

`TemplateSet` holds the templates of each language and picks one per record with a
seeded hash (the same record always gets the same template). Pruning follows the
recipe (RECIPE.md §3, xP3x): drop templates whose targets are empty or very short
(one or two words) and near-duplicate templates, preferring the longer instruction; the
third rule of the paper (grammatical or structural errors) was a human judgement and
stays one. `prune_templates` works on `Template` objects; `TemplatePruning` is the same
rule as a filter over records that name their template (xP3x's `template` field), and
reports the share of templates and instances removed for English and for the other
languages, as the paper reports them.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aya_t5x.data.examples import Example

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")


class TemplateError(ValueError):
  """A template that cannot be used, or a record that lacks one of its fields."""


def placeholders(text: str) -> tuple[str, ...]:
  """The field names of `{{field}}` placeholders in `text`, in order, without repeats."""
  names = []
  for match in _PLACEHOLDER.finditer(text):
    name = match.group(1)
    if not _NAME.match(name):
      raise TemplateError(f"bad placeholder {match.group(0)!r} in {text[:60]!r}: use "
                          "{{field}} with a field name of letters, digits and _")
    if name not in names:
      names.append(name)
  return tuple(names)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Template:
  """A prompt (`inputs`) and completion (`targets`) with `{{field}}` placeholders."""

  inputs: str
  targets: str
  id: str = ""
  language: str = "en"

  def __post_init__(self):
    placeholders(self.inputs), placeholders(self.targets)  # fail early on bad syntax

  @property
  def fields(self) -> tuple[str, ...]:
    return tuple(dict.fromkeys(placeholders(self.inputs) + placeholders(self.targets)))

  def render(self, record: Mapping[str, Any]) -> tuple[str, str]:
    """(inputs, targets) with every placeholder filled; names the missing field."""
    missing = [f for f in self.fields if record.get(f) is None]
    if missing:
      raise TemplateError(f"template {self.id or self.inputs[:40]!r} needs field(s) "
                          f"{', '.join(missing)}; the record has {', '.join(sorted(record))}")

    def fill(text: str) -> str:
      return _PLACEHOLDER.sub(lambda m: str(record[m.group(1)]), text)

    return fill(self.inputs), fill(self.targets)

  def instruction(self) -> str:
    """The fixed text of the template (placeholders removed), for comparing templates."""
    return " ".join(_PLACEHOLDER.sub(" ", f"{self.inputs} {self.targets}").split())


def _choice(key: str, seed: int, count: int) -> int:
  digest = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
  return int.from_bytes(digest, "big") % count


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemplateSet:
  """Templates per language; `fallback` (English by default) serves languages without."""

  templates: Mapping[str, tuple[Template, ...]]
  fallback: str | None = "en"
  seed: int = 0

  @classmethod
  def from_templates(cls, templates: Sequence[Template], **kwargs: Any) -> TemplateSet:
    by_language: dict[str, list[Template]] = collections.defaultdict(list)
    for template in templates:
      by_language[template.language].append(template)
    return cls(templates={k: tuple(v) for k, v in by_language.items()}, **kwargs)

  def for_language(self, language: str) -> tuple[Template, ...]:
    found = self.templates.get(language) or (
        self.templates.get(self.fallback) if self.fallback else None)
    if not found:
      raise TemplateError(f"no templates for language {language!r} and no fallback; "
                          f"languages with templates: {', '.join(sorted(self.templates))}")
    return found

  def render(self, record: Mapping[str, Any], language: str, key: str) -> tuple[str, str, str]:
    """(inputs, targets, template id) for a record; `key` identifies the record."""
    options = self.for_language(language)
    template = options[_choice(key, self.seed, len(options))]
    inputs, targets = template.render(record)
    return inputs, targets, template.id


# ----------------------------------------------------------------------------- pruning


def word_count(text: str) -> int:
  """Words of a text; unsegmented scripts (Chinese, Japanese, Thai) count 2 characters a word."""
  words = text.split()
  if len(words) <= 2 and len(text.strip()) > 12 and not text.isascii():
    return len(text.strip()) // 2
  return len(words)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PruningRules:
  """The recipe's automatic pruning rules."""

  min_target_words: int = 3      # targets of 0-2 words are "empty or very short"
  short_share: float = 0.5       # a template goes when at least this share is short
  near_duplicate: float = 0.9    # difflib ratio of the instructions


@dataclasses.dataclass
class PruningReport:
  """Templates and instances removed, split as the paper reports them (English / other)."""

  templates: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  templates_removed: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  instances: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  instances_removed: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  removed: dict[str, str] = dataclasses.field(default_factory=dict)  # template -> why

  def to_dict(self) -> dict[str, Any]:
    def share(part, whole):
      return round(100.0 * part / whole, 2) if whole else 0.0

    out: dict[str, Any] = {}
    for group in ("english", "multilingual"):
      out[group] = {
          "templates": self.templates[group],
          "templates_removed": self.templates_removed[group],
          "templates_removed_pct": share(self.templates_removed[group], self.templates[group]),
          "instances": self.instances[group],
          "instances_removed": self.instances_removed[group],
          "instances_removed_pct": share(self.instances_removed[group], self.instances[group]),
      }
    out["removed"] = dict(self.removed)
    return out


def _near_duplicates(instructions: Mapping[str, str], threshold: float) -> dict[str, str]:
  """Templates to drop as near-duplicates of a longer one: {dropped: kept}."""
  dropped: dict[str, str] = {}
  kept: list[str] = []
  # Longest first, so that of two near-duplicates the longer instruction stays.
  for name in sorted(instructions, key=lambda n: (-len(instructions[n]), n)):
    text = instructions[name]
    for other in kept:
      matcher = difflib.SequenceMatcher(None, text, instructions[other], autojunk=False)
      if matcher.real_quick_ratio() >= threshold and matcher.ratio() >= threshold:
        dropped[name] = other
        break
    else:
      kept.append(name)
  return dropped


def _short_target(template: Template, samples: Sequence[Mapping[str, Any]],
                  rules: PruningRules) -> bool:
  """Whether the template's targets are empty or very short.

  Measured on the rendered targets of `samples` (records the template fits) when
  there are any; otherwise only a target without placeholders can be judged.
  """
  rendered = []
  for record in samples:
    try:
      rendered.append(template.render(record)[1])
    except TemplateError:
      continue
  if rendered:
    short = sum(word_count(t) < rules.min_target_words for t in rendered)
    return short / len(rendered) >= rules.short_share
  return not placeholders(template.targets) and \
      word_count(template.targets) < rules.min_target_words


def prune_templates(templates: Sequence[Template], rules: PruningRules = PruningRules(),
                    samples: Sequence[Mapping[str, Any]] = ()
                    ) -> tuple[list[Template], PruningReport]:
  """Applies the pruning rules to `Template` objects (per language); returns the kept ones.

  `samples` are records of the data the templates serve: a target is judged short from
  what the template makes of them (a bare `{{label}}` is short for yes/no labels and
  fine for long answers).
  """
  report = PruningReport()
  kept: list[Template] = []
  by_language: dict[str, list[Template]] = collections.defaultdict(list)
  for template in templates:
    by_language[template.language].append(template)
  for language, group_templates in by_language.items():
    group = "english" if language == "en" else "multilingual"
    report.templates[group] += len(group_templates)
    survivors = {}
    for index, template in enumerate(group_templates):
      key = template.id or f"{language}#{index}"
      if _short_target(template, samples, rules):
        report.removed[key] = "empty or very short target"
        continue
      survivors[key] = template
    duplicates = _near_duplicates({k: t.instruction() for k, t in survivors.items()},
                                  rules.near_duplicate)
    for key, other in duplicates.items():
      report.removed[key] = f"near-duplicate of {other}"
    report.templates_removed[group] += len(group_templates) - len(survivors) + len(duplicates)
    kept += [t for k, t in survivors.items() if k not in duplicates]
  return kept, report


def _common_affixes(texts: Sequence[str]) -> str:
  """The text every instance of a template shares at its start and end (its instruction)."""
  if not texts:
    return ""
  prefix = texts[0]
  suffix = texts[0]
  for text in texts[1:]:
    while not text.startswith(prefix):
      prefix = prefix[:-1]
    while not text.endswith(suffix):
      suffix = suffix[1:]
  if len(texts) == 1:
    return texts[0]
  return f"{prefix} {suffix}".strip()


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemplatePruning:
  """The pruning rules as a filter over records that name their template (xP3x).

  A template is (dataset, template name) per language group. Its targets are short
  when at least `short_share` of its instances have fewer than `min_target_words`
  words; its instruction is the text its instances share (common prefix and suffix of
  their inputs, from up to `sample` instances), compared between the templates of a
  dataset to find near-duplicates.
  """

  rules: PruningRules = PruningRules()
  sample: int = 8
  name: str = "template_pruning"

  def scan_key(self, example: Example) -> tuple[str, str]:
    """Decisions depend on the templates of one (language group, dataset) only."""
    return _TemplatePruningRun.key(example)[:2]

  def start(self) -> _TemplatePruningRun:
    return _TemplatePruningRun(self)


class _TemplatePruningRun:
  needs_scan = True

  def __init__(self, config: TemplatePruning):
    self.config = config
    self.name = config.name
    self._count: collections.Counter = collections.Counter()
    self._short: collections.Counter = collections.Counter()
    self._samples: dict[tuple[str, str, str], list[str]] = collections.defaultdict(list)
    self.pruned: dict[tuple[str, str, str], str] = {}
    self.report = PruningReport()

  @staticmethod
  def key(example: Example) -> tuple[str, str, str]:
    group = "english" if example.language == "en" else "multilingual"
    return group, example.dataset, example.template

  def observe(self, example: Example) -> None:
    if not example.template:
      return
    key = self.key(example)
    self._count[key] += 1
    if word_count(example.targets) < self.config.rules.min_target_words:
      self._short[key] += 1
    if len(self._samples[key]) < self.config.sample:
      self._samples[key].append(example.inputs)

  def finalize(self) -> None:
    rules = self.config.rules
    for key, count in self._count.items():
      if self._short[key] / count >= rules.short_share:
        self.pruned[key] = "empty or very short targets"
    by_dataset: dict[tuple[str, str], dict[str, str]] = collections.defaultdict(dict)
    for key in self._count:
      if key not in self.pruned:
        by_dataset[key[:2]][key[2]] = _common_affixes(self._samples[key])
    for (group, dataset), instructions in by_dataset.items():
      for name, other in _near_duplicates(instructions, rules.near_duplicate).items():
        self.pruned[(group, dataset, name)] = f"near-duplicate of {other}"
    for key, count in self._count.items():
      group = key[0]
      self.report.templates[group] += 1
      self.report.instances[group] += count
      if key in self.pruned:
        self.report.templates_removed[group] += 1
        self.report.instances_removed[group] += count
        self.report.removed[f"{key[1]}/{key[2]} ({group})"] = self.pruned[key]
    self._samples.clear()

  def reason(self, example: Example) -> str | None:
    if not example.template:
      return None
    why = self.pruned.get(self.key(example))
    return f"template pruned: {why}" if why else None

  def summary(self) -> dict[str, Any]:
    return self.report.to_dict()

