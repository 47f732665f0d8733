"""Preference pairs `{prompt, chosen, rejected, language}`: read, checked, and made from
the annotation platform's ratings and votes or from `aya-t5x judge pairwise` verdicts.

Every source ends in the same records and the same checks (`check_record`): a record
with a missing or empty prompt or side, or whose chosen answer equals the rejected one
(after trimming whitespace), or whose language is not one of mT5's, is skipped and
counted under its reason, with the first file:line of each reason kept for the report.
Nothing is dropped silently and nothing written before is touched (files are written
beside their destination and moved into place).

From the annotation platform (`pairs_from_annotations`), the rules, in order:

1. The export's inclusion rules apply first (`aya_t5x.annotation.export`): seed pairs are
   not contributions; a re-annotation counts only with an edit distance of at least
   `min_edit_distance`; a language needs `min_language_contributions` kept
   contributions.
2. Candidates for one prompt are the kept items whose prompt text (trimmed) and language
   are the same: an original and the re-annotations that edited only its completion,
   or several contributors' answers to the same prompt.
3. An item's score is the mean of its 1-5 ratings; an item without ratings is scored by
   its votes, 1 + 4 x (thumbs up / votes), when it has at least `min_votes` votes;
   otherwise it has no score and takes no part.
4. Per prompt, the best and the worst scored items form a pair when their scores differ by
   at least `min_rating_gap`; a smaller gap (a tie included) drops the prompt, counted
   as 'tie' or 'gap below minimum'. Equal scores never make a pair.
5. Per language at most `max_pairs_per_language` pairs (the largest gaps first), and a
   language with fewer than `min_pairs_per_language` pairs is left out (counted).

From judge verdicts (`pairs_from_judgments`): the judgments of `aya-t5x judge pairwise`
joined with the two generation files it judged; the preferred answer is chosen; ties,
unparseable replies and failed requests are counted and dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import statistics
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from aya_t5x.atomic_files import atomic_open
from aya_t5x.data import languages

FIELDS = ("prompt", "chosen", "rejected", "language")


class ReferenceMismatchError(ValueError):
  """A reference that cannot serve this policy or these pairs (defined with the pairs, so
  that reading pair files never imports jax)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pair:
  prompt: str
  chosen: str
  rejected: str
  language: str  # mT5 code

  def record(self) -> dict[str, str]:
    return dataclasses.asdict(self)

  def digest(self) -> str:
    """What precomputed reference log-probs are tied to (the texts, not the language)."""
    return pair_digest(self.prompt, self.chosen, self.rejected)


def pair_digest(prompt: str, chosen: str, rejected: str) -> str:
  return hashlib.blake2b("\x1f".join((prompt, chosen, rejected)).encode("utf-8"),
                         digest_size=10).hexdigest()


@dataclasses.dataclass
class Skipped:
  """Skipped records: reason -> count, and the first place each reason was seen."""

  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  first: dict[str, str] = dataclasses.field(default_factory=dict)

  def add(self, reason: str, where: str) -> None:
    self.counts[reason] += 1
    self.first.setdefault(reason, where)

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def lines(self) -> list[str]:
    """One line per reason: 'skipped N record(s): REASON (first at FILE:LINE)'."""
    return [f"skipped {n} record(s): {reason} (first at {self.first[reason]})"
            for reason, n in self.counts.most_common()]

  def as_dict(self) -> dict[str, Any]:
    return {"total": self.total, "reasons": dict(self.counts), "first": dict(self.first)}


def check_record(record: Mapping[str, Any], *, language: str | None = None,
                 keys: Mapping[str, str] | None = None) -> Pair | str:
  """A `Pair`, or the reason the record cannot be one (a short phrase for the report).

  `keys` renames fields ({'prompt': 'question', ...}); `language` is used when the
  record has none.
  """
  keys = {f: f for f in FIELDS} | dict(keys or {})
  values = {}
  for field in ("prompt", "chosen", "rejected"):
    value = record.get(keys[field])
    if value is None:
      return f"missing field {keys[field]!r}"
    if not isinstance(value, str):
      return f"field {keys[field]!r} is not a string"
    if not value.strip():
      return f"empty {keys[field]!r}"
    values[field] = value
  if values["chosen"].strip() == values["rejected"].strip():
    return "chosen equals rejected"
  name = record.get(keys["language"], language)
  if not isinstance(name, str) or not name.strip():
    return f"missing field {keys['language']!r} (or pass --language)"
  found = languages.find_language(name)
  if found is None:
    return f"unknown language {name!r} (not one of mT5's 101; see aya_t5x/data/languages.csv)"
  return Pair(language=found.code, **values)


def read_pairs(path: str | os.PathLike, *, language: str | None = None,
               keys: Mapping[str, str] | None = None, skipped: Skipped | None = None
               ) -> Iterator[tuple[str, dict[str, Any], Pair]]:
  """(file:line, raw record, pair) of every good record of a JSONL/parquet/arrow file or
  folder; bad ones go to `skipped`."""
  from aya_t5x.data import readers

  skipped = Skipped() if skipped is None else skipped
  for location, record in readers.iter_records(path):
    if isinstance(record, readers.MalformedRecord):
      skipped.add("unreadable record", str(location))
      continue
    checked = check_record(record, language=language, keys=keys)
    if isinstance(checked, str):
      skipped.add(checked, str(location))
    else:
      yield str(location), record, checked


def write_pairs(pairs: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> int:
  """Writes records as JSONL (beside, then moved into place); returns the count."""
  count = 0
  with atomic_open(path) as f:
    for pair in pairs:
      record = pair.record() if isinstance(pair, Pair) else dict(pair)
      f.write(json.dumps(record, ensure_ascii=False) + "\n")
      count += 1
  return count


# ----------------------------------------------------------------------- from annotation


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairRules:
  """How ratings and votes become pairs (the module docstring lists the rules)."""

  min_rating_gap: float = 1.0
  min_votes: int = 3
  max_pairs_per_language: int | None = None
  min_pairs_per_language: int = 1

  def __post_init__(self):
    if not self.min_rating_gap > 0:
      raise ValueError(f"min_rating_gap must be positive (equal scores never make a pair), "
                       f"got {self.min_rating_gap}.")
    if self.min_votes < 1:
      raise ValueError(f"min_votes must be at least 1, got {self.min_votes}.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairSet:
  pairs: list[Pair]
  report: dict[str, Any]


def item_score(ratings: list[int], votes: list[bool], min_votes: int) -> float | None:
  """Mean 1-5 rating, else 1 + 4 x approval over at least `min_votes` votes, else None."""
  if ratings:
    return statistics.fmean(ratings)
  if len(votes) >= min_votes:
    return 1.0 + 4.0 * sum(votes) / len(votes)
  return None


def pairs_from_annotations(store, rules: PairRules = PairRules(),
                           export_rules=None) -> PairSet:
  """Pairs from an annotation database (`aya_t5x.annotation.store.Store`) by the rules."""
  from aya_t5x.annotation import export

  export_rules = export_rules or export.ExportRules()
  items = [i for i in store.items() if i.kind != "seed"]
  kept = [i for i in items if export._kept(i, export_rules)]
  per_language = collections.Counter(i.language for i in kept)
  included = {lang for lang, n in per_language.items()
              if n >= export_rules.min_language_contributions}
  votes: dict[int, list[bool]] = collections.defaultdict(list)
  for vote in store.votes():
    votes[vote.item_id].append(vote.up)
  ratings: dict[int, list[int]] = collections.defaultdict(list)
  for rating in store.ratings():
    ratings[rating.item_id].append(rating.rating)

  groups: dict[tuple[str, str], list] = collections.defaultdict(list)
  for item in kept:
    if item.language in included:
      groups[(item.language, item.inputs.strip())].append(item)
  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  candidates: dict[str, list[tuple[float, Pair]]] = collections.defaultdict(list)
  for (lang, _), group in sorted(groups.items()):
    scored = [(item_score(ratings[i.id], votes[i.id], rules.min_votes), i.id, i)
              for i in group]
    scored = [(s, item_id, i) for s, item_id, i in scored if s is not None]
    if len(scored) < 2:
      counts[lang]["fewer than two scored answers"] += 1
      continue
    scored.sort(key=lambda t: (-t[0], t[1]))
    (best, _, chosen), (worst, _, rejected) = scored[0], scored[-1]
    gap = best - worst
    if gap == 0:
      counts[lang]["tie"] += 1
      continue
    if gap < rules.min_rating_gap:
      counts[lang]["gap below minimum"] += 1
      continue
    checked = check_record({"prompt": chosen.inputs, "chosen": chosen.targets,
                            "rejected": rejected.targets, "language": lang})
    if isinstance(checked, str):
      counts[lang][checked] += 1
      continue
    candidates[lang].append((gap, checked))

  pairs, rows = [], []
  for lang in sorted(set(candidates) | set(counts)):
    ranked = sorted(candidates.get(lang, []), key=lambda t: -t[0])
    capped = ranked[:rules.max_pairs_per_language] if rules.max_pairs_per_language else ranked
    if len(capped) < rules.min_pairs_per_language:
      counts[lang]["language below min_pairs_per_language"] += len(capped)
      capped = []
    if len(ranked) > len(capped) and capped:
      counts[lang]["over max_pairs_per_language"] += len(ranked) - len(capped)
    pairs.extend(p for _, p in capped)
    rows.append({"language": lang, "pairs": len(capped), "dropped": dict(counts[lang])})
  report = {"rules": dataclasses.asdict(rules),
            "export_rules": dataclasses.asdict(export_rules),
            "prompts": len(groups), "pairs": len(pairs),
            "languages_excluded_by_export": sorted(set(per_language) - included),
            "languages": rows}
  return PairSet(pairs=pairs, report=report)


# --------------------------------------------------------------------------- from judge


def pairs_from_judgments(judgments: str | os.PathLike, generations_a: str | os.PathLike,
                         generations_b: str | os.PathLike, *, language: str | None = None
                         ) -> PairSet:
  """Pairs from `aya-t5x judge pairwise` output (its judgments.jsonl) and the two files
  of generations it judged: the answer the judge preferred is chosen."""
  from aya_t5x.evaluation.judging import generation

  joined = generation.join_generations(
      generation.read_generations(generations_a, language=language),
      generation.read_generations(generations_b, language=language))
  by_id = {a.id: (a, b) for a, b in joined.pairs}
  skipped = Skipped()
  pairs = []
  path = Path(judgments)
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      where = f"{path}:{number}"
      try:
        record = json.loads(line)
      except ValueError:
        skipped.add("unreadable line", where)
        continue
      key = str(record.get("id", record.get("key")))
      if key not in by_id:
        skipped.add("id not in both generation files", where)
        continue
      verdict = record.get("verdict")
      if record.get("error") is not None:
        skipped.add("judge request failed", where)
        continue
      if verdict == "TIE":
        skipped.add("tie", where)
        continue
      if verdict not in ("A", "B"):
        skipped.add("unparseable verdict", where)
        continue
      a, b = by_id[key]
      a_won = verdict == record.get("model_a_shown_as", "A")
      winner, loser = (a, b) if a_won else (b, a)
      checked = check_record({"prompt": a.prompt, "chosen": winner.completion,
                              "rejected": loser.completion, "language": a.language})
      if isinstance(checked, str):
        skipped.add(checked, where)
        continue
      pairs.append(checked)
  per_language = collections.Counter(p.language for p in pairs)
  return PairSet(pairs=pairs, report={"pairs": len(pairs), "languages": dict(per_language),
                                      "skipped": skipped.as_dict(),
                                      "skipped_lines": skipped.lines()})
