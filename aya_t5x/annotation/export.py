"""Annotations to the Aya Dataset schema, under the recipe's inclusion rules and quality signals.

RECIPE.md §7, as applied here:

- Every original annotation is kept. A re-annotation is kept when the character
  Levenshtein distances of its prompt and of its completion from the pair it edits add
  up to at least `min_edit_distance` (5); the distances are the ones the server
  computed and stored when it was saved. Imported seed pairs are the material for
  re-annotation, not contributions, and are not exported.
- A language enters the dataset only with at least `min_language_contributions` (50)
  kept contributions (originals plus kept re-annotations); the others are reported as
  dropped with their counts.
- Approval ratio: the share of thumbs up among the votes. Per language it is reported
  only for languages with at least `min_votes` (20) votes, as the recipe reports it for
  datasets with at least 20 votes. Per contributor it is the share over every vote on
  their kept contributions (0 when nobody voted on them yet), as the score needs one.
- Contributor score: `max(0, mean_rating - 3) * edited_count + approval_ratio *
  original_count`, with `mean_rating` the mean 1-5 rating their kept re-annotations
  received (no ratings: that term is 0), `edited_count` their kept re-annotations and
  `original_count` their originals.
- Length: mean prompt and completion characters per language, and the mean length of
  contributions voted mostly up against those voted mostly down.

Records carry exactly the published fields `inputs, targets, language, language_code,
annotation_type, user_id` (`language` the English name, `language_code` ISO 639-3,
`annotation_type` 'original-annotations' or 're-annotations'), so that the Aya Dataset
source and `aya-t5x tasks add --language_key language_code` read the file as is.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import statistics
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.annotation.store import Item, Store
from aya_t5x.atomic_files import write_text_atomically
from aya_t5x.data import languages

ANNOTATION_TYPES = {"original": "original-annotations", "reannotation": "re-annotations"}
FIELDS = ("inputs", "targets", "language", "language_code", "annotation_type", "user_id")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportRules:
  """The inclusion thresholds (the recipe's values by default)."""

  min_edit_distance: int = 5
  min_language_contributions: int = 50
  min_votes: int = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class Export:
  """The exported records and the report of what was kept, dropped and how it scored."""

  records: list[dict[str, str]]
  report: dict[str, Any]


def _ratio(ups: int, votes: int) -> float | None:
  return ups / votes if votes else None


def _mean(values: list[float]) -> float | None:
  return statistics.fmean(values) if values else None


def _record(item: Item) -> dict[str, str]:
  language = languages.get_language(item.language)
  return {"inputs": item.inputs, "targets": item.targets, "language": language.name,
          "language_code": language.iso639_3, "annotation_type": ANNOTATION_TYPES[item.kind],
          "user_id": item.user_id or ""}


def _kept(item: Item, rules: ExportRules) -> bool:
  if item.kind == "original":
    return True
  return item.kind == "reannotation" and (item.distance or 0) >= rules.min_edit_distance


def build_export(store: Store, rules: ExportRules = ExportRules()) -> Export:
  """Applies the inclusion rules to a database and computes the quality signals."""
  items = [i for i in store.items() if i.kind != "seed"]
  votes_on: dict[int, list[bool]] = collections.defaultdict(list)
  for vote in store.votes():
    votes_on[vote.item_id].append(vote.up)
  ratings_on: dict[int, list[int]] = collections.defaultdict(list)
  for rating in store.ratings():
    ratings_on[rating.item_id].append(rating.rating)

  kept = [i for i in items if _kept(i, rules)]
  too_small = [i for i in items if i.kind == "reannotation" and not _kept(i, rules)]
  by_language: dict[str, list[Item]] = collections.defaultdict(list)
  for item in kept:
    by_language[item.language].append(item)
  included = {lang for lang, group in by_language.items()
              if len(group) >= rules.min_language_contributions}
  records = [_record(i) for i in sorted(kept, key=lambda i: (i.language, i.id))
             if i.language in included]

  language_rows = []
  for lang in sorted({i.language for i in items}):
    group = by_language.get(lang, [])
    votes = [up for i in group for up in votes_on[i.id]]
    ratio = _ratio(sum(votes), len(votes))
    language_rows.append({
        "language": lang, "name": languages.get_language(lang).name,
        "originals": sum(i.kind == "original" for i in group),
        "reannotations_kept": sum(i.kind == "reannotation" for i in group),
        "reannotations_dropped": sum(i.language == lang for i in too_small),
        "contributions": len(group), "included": lang in included, "votes": len(votes),
        "approval_ratio": ratio if len(votes) >= rules.min_votes else None,
        "mean_inputs_chars": _mean([len(i.inputs) for i in group]),
        "mean_targets_chars": _mean([len(i.targets) for i in group])})

  return Export(records=records, report={
      "rules": dataclasses.asdict(rules),
      "totals": {"originals": sum(i.kind == "original" for i in items),
                 "reannotations": sum(i.kind == "reannotation" for i in items),
                 "reannotations_dropped": len(too_small),
                 "languages_dropped": len({i.language for i in kept} - included),
                 "records_written": len(records)},
      "languages": language_rows,
      "dropped_reannotations": [
          {"id": i.id, "language": i.language, "user_id": i.user_id, "parent_id": i.parent_id,
           "prompt_distance": i.prompt_distance, "completion_distance": i.completion_distance}
          for i in too_small],
      "dropped_languages": [{"language": r["language"], "name": r["name"],
                             "contributions": r["contributions"]}
                            for r in language_rows if not r["included"]],
      "contributors": contributor_scores(kept, votes_on, ratings_on),
      "length_vs_approval": _length_vs_approval(kept, votes_on),
  })


def contributor_score(*, mean_rating: float | None, edited_count: int,
                      approval_ratio: float | None, original_count: int) -> float:
  """RECIPE.md §7: max(0, mean_rating - 3) * edited_count + approval_ratio * original_count."""
  rating_term = max(0.0, mean_rating - 3) * edited_count if mean_rating is not None else 0.0
  return rating_term + (approval_ratio or 0.0) * original_count


def contributor_scores(kept: list[Item], votes_on: dict[int, list[bool]],
                       ratings_on: dict[int, list[int]]) -> list[dict[str, Any]]:
  """One row per contributor of kept items, highest score first."""
  by_user: dict[str, list[Item]] = collections.defaultdict(list)
  for item in kept:
    by_user[item.user_id or ""].append(item)
  rows = []
  for user_id, group in by_user.items():
    votes = [up for i in group for up in votes_on[i.id]]
    ratings = [r for i in group if i.kind == "reannotation" for r in ratings_on[i.id]]
    originals = sum(i.kind == "original" for i in group)
    edited = sum(i.kind == "reannotation" for i in group)
    approval = _ratio(sum(votes), len(votes))
    mean_rating = _mean(ratings)
    rows.append({
        "user_id": user_id, "languages": sorted({i.language for i in group}),
        "original_count": originals, "edited_count": edited, "votes_received": len(votes),
        "approval_ratio": approval, "ratings_received": len(ratings), "mean_rating": mean_rating,
        "score": contributor_score(mean_rating=mean_rating, edited_count=edited,
                                   approval_ratio=approval, original_count=originals)})
  return sorted(rows, key=lambda r: (-r["score"], r["user_id"]))


def _length_vs_approval(kept: list[Item], votes_on: dict[int, list[bool]]) -> dict[str, Any]:
  sides: dict[str, list[int]] = {"approved": [], "disapproved": []}
  for item in kept:
    votes = votes_on[item.id]
    balance = sum(votes) * 2 - len(votes)  # ups minus downs
    if balance:
      sides["approved" if balance > 0 else "disapproved"].append(
          len(item.inputs) + len(item.targets))
  return {side: {"count": len(lengths), "mean_chars": _mean(lengths)}
          for side, lengths in sides.items()}


# ----------------------------------------------------------------------------- writing


def _fmt(value: Any) -> str:
  """A cell of the export's tables: 2 decimals, '–' for none, text escaped for markdown
  (a user id or a language name may hold a `|`)."""
  if value is None:
    return "–"
  if isinstance(value, float):
    return f"{value:.2f}"
  return reporting.cell(value)


def format_markdown(report: dict[str, Any]) -> str:
  """The report as markdown tables."""
  rules, totals = report["rules"], report["totals"]
  table = lambda headers, rows: reporting.markdown_table(headers, rows, format_cell=_fmt)
  lines = [
      "# Aya annotation export", "",
      f"Rules: re-annotations need an edit distance of at least {rules['min_edit_distance']}; "
      f"languages need at least {rules['min_language_contributions']} contributions; "
      f"approval ratios are shown for languages with at least {rules['min_votes']} votes.", "",
      f"Written: {totals['records_written']} records. Originals {totals['originals']}, "
      f"re-annotations {totals['reannotations']} (dropped for too small an edit: "
      f"{totals['reannotations_dropped']}); languages dropped: {totals['languages_dropped']}.",
      "", "## Languages", "",
      table(["language", "originals", "re-annotations kept", "dropped (edit < min)",
             "contributions", "included", "votes", "approval", "mean prompt chars",
             "mean completion chars"],
            [[f"{r['name']} ({r['language']})", r["originals"], r["reannotations_kept"],
              r["reannotations_dropped"], r["contributions"], "yes" if r["included"] else "no",
              r["votes"], r["approval_ratio"], r["mean_inputs_chars"], r["mean_targets_chars"]]
             for r in report["languages"]]),
      "", "## Contributors", "",
      table(["user", "languages", "originals", "re-annotations", "votes", "approval",
             "ratings", "mean rating", "score"],
            [[r["user_id"], ", ".join(r["languages"]), r["original_count"], r["edited_count"],
              r["votes_received"], r["approval_ratio"], r["ratings_received"],
              r["mean_rating"], r["score"]] for r in report["contributors"]])]
  length = report["length_vs_approval"]
  lines += ["", "## Length and approval", "",
            f"Voted mostly up: {length['approved']['count']} contributions, mean "
            f"{_fmt(length['approved']['mean_chars'])} characters. Voted mostly down: "
            f"{length['disapproved']['count']}, mean "
            f"{_fmt(length['disapproved']['mean_chars'])} characters.", ""]
  if report["dropped_reannotations"]:
    lines += ["## Re-annotations dropped (edit too small)", "",
              table(["id", "language", "user", "edits item", "prompt distance",
                     "completion distance"],
                    [[d["id"], d["language"], d["user_id"], d["parent_id"],
                      d["prompt_distance"], d["completion_distance"]]
                     for d in report["dropped_reannotations"]]), ""]
  return "\n".join(lines)


def report_paths(output: str | os.PathLike) -> dict[str, Path]:
  """Where the report of an export goes: beside it, `NAME.report.json` and `.md`."""
  output = Path(output)
  stem = output.name.removesuffix(".jsonl").removesuffix(".json")
  return {"json": output.with_name(f"{stem}.report.json"),
          "markdown": output.with_name(f"{stem}.report.md")}


def jsonl(records: list[dict[str, str]]) -> str:
  """Records as JSON lines (UTF-8 text kept as is), the export file's format."""
  return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_export(export: Export, output: str | os.PathLike) -> dict[str, Path]:
  """Writes the JSONL records and the report (JSON and markdown); returns the paths."""
  output = Path(output)
  # Each file whole or not at all: an interrupted export leaves the last one whole.
  write_text_atomically(output, jsonl(export.records))
  paths = report_paths(output)
  reporting.write_json_and_markdown(paths["json"], paths["markdown"], export.report,
                                    format_markdown(export.report))
  return {"data": output, **paths}
