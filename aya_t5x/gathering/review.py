"""Filtering II: assessors review original, translation and retranslation; votes weighed by skill.

The Swahili use case (RECIPE.md section 7) shows each translated example to the
qualified assessors with its original and its retranslation; they drop bad examples.
The round-trip score only orders the work (`roundtrip.ranked`): a title that should
have stayed English comes back perfectly, and a wrong word sense can come back close.

    items = build_review_task(scored_records, fields)        # worst round trip first
    verdicts = aggregate(answers, skills, method="dawid_skene")
    kept, dropped = apply_verdicts(scored_records, verdicts, unreviewed="drop")

Votes are aggregated with crowd-kit, each assessor weighed by the skill measured in
qualification (`qualification.AssessorScore`):

- `dawid_skene` (default): Dawid-Skene EM with each assessor's qualification confusion
  counts (plus one) added to the error matrices it estimates (crowd-kit's
  `initial_error_strategy="addition"`), so measured skill and review agreement both count;
- `glad`: GLAD with each assessor's prior ability the log-odds of their measured accuracy
  (a one-coin model: it cannot tell a lenient assessor from a careless one);
- `weighted_majority`: majority vote weighted by the log-odds of measured accuracy;
- `mmsr`: M-MSR, which learns skills from agreement in the votes alone (large reviews);
- `majority`: the unweighted vote, for comparison (the report counts where it differs).

An example is kept when its aggregated probability of being good reaches `threshold`.
The reason for a drop is the skill-weighted most common reason the "bad" voters gave.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from aya_t5x import reporting
from aya_t5x.gathering.crowd_files import BAD, GOOD, Answer, AnswerCounts
from aya_t5x.gathering.qualification import AssessorScore

METHODS = ("dawid_skene", "glad", "weighted_majority", "mmsr", "majority")
UNREVIEWED = ("drop", "keep")
NO_REASON = "judged bad (no reason given)"


def task_columns(fields: Sequence[str]) -> list[str]:
  """The columns of a review item: id, language, then original/translation/retranslation."""
  columns = ["item_id", "language"]
  for field in fields:
    columns += [f"original_{field}", f"translation_{field}", f"retranslation_{field}"]
  return columns


def build_review_task(records: Sequence[Mapping[str, Any]], *, limit: int | None = None
                      ) -> tuple[list[dict[str, Any]], list[str]]:
  """Review items for the records `retranslate` wrote, in the order given, and the columns.

  Scores are not shown to assessors (they would anchor the judgment). Pass records in
  `roundtrip.ranked` order to review the worst round trips first; `limit` keeps the first.
  """
  records = list(records)[:limit] if limit is not None else list(records)
  if not records:
    raise ValueError("no records to review")
  fields = list(records[0]["original"])
  items = []
  for record in records:
    if list(record["original"]) != fields:
      raise ValueError(f"record {record['id']}: fields {list(record['original'])} differ from "
                       f"{fields}; review one kind of data at a time")
    item = {"item_id": record["id"], "language": record["language"]}
    for field in fields:
      item.update({f"original_{field}": record["original"][field],
                   f"translation_{field}": record[field],
                   f"retranslation_{field}": record["retranslation"][field]})
    items.append(item)
  return items, task_columns(fields)


def skill_weight(score: AssessorScore) -> float:
  """Log-odds of the measured accuracy, with one pseudo-count each way (never infinite)."""
  return max(0.0, math.log((score.correct + 1) / (score.answers - score.correct + 1)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
  """The aggregated judgment of one reviewed item."""

  item: str
  keep: bool
  p_good: float | None          # None for M-MSR, which gives no probability
  votes: Mapping[str, str]      # assessor -> label
  reason: str                   # why it was dropped ('' when kept)

  def to_json(self) -> dict[str, Any]:
    return {"item_id": self.item, "keep": self.keep, "p_good": self.p_good,
            "votes": dict(self.votes), "reason": self.reason}


def _frame(answers: Sequence[Answer]):
  import pandas as pd

  return pd.DataFrame({"worker": [a.assessor for a in answers],
                       "task": [a.item for a in answers],
                       "label": [a.label for a in answers]})


def _p_good(answers: Sequence[Answer], skills: Mapping[str, AssessorScore], method: str
            ) -> dict[str, float | None]:
  """P(good) per item from crowd-kit (M-MSR gives a label only: 1.0 or 0.0)."""
  import pandas as pd
  from crowdkit.aggregation import GLAD, MMSR, DawidSkene, MajorityVote

  data = _frame(answers)
  if data["label"].nunique() == 1:  # nothing to weigh: every vote agrees
    value = 1.0 if data["label"].iloc[0] == GOOD else 0.0
    return {item: value for item in data["task"].unique()}
  workers = sorted(data["worker"].unique())
  if method == "mmsr":
    labels = MMSR(random_state=0).fit_predict(data)
    return {item: float(label == GOOD) for item, label in labels.items()}
  if method == "dawid_skene":
    index = pd.MultiIndex.from_tuples([(w, observed) for w in workers for observed in (GOOD, BAD)],
                                      names=["worker", "label"])
    counts = [[skills[w].confusion[truth][observed] + 1 for truth in (GOOD, BAD)]
              for w in workers for observed in (GOOD, BAD)]
    initial = pd.DataFrame(counts, index=index, columns=[GOOD, BAD], dtype=float)
    probas = DawidSkene(n_iter=100, initial_error_strategy="addition").fit_predict_proba(
        data, initial_error=initial)
  elif method == "glad":
    # GLAD: P(right) = sigmoid(alpha * exp(beta)); each ability's prior mean is the
    # log-odds of the measured accuracy (smoothed), the task easiness keeps its prior.
    alphas = pd.Series({w: _logit((skills[w].correct + 1) / (skills[w].answers + 2))
                        for w in workers}, dtype=float)
    alphas.index.name = "worker"
    probas = GLAD(n_iter=100, alphas_priors_mean=alphas).fit_predict_proba(data)
  elif method == "weighted_majority":
    weights = pd.Series({w: skill_weight(skills[w]) for w in workers}, dtype=float)
    weights.index.name = "worker"
    probas = MajorityVote().fit_predict_proba(data, skills=weights)
  elif method == "majority":
    probas = MajorityVote().fit_predict_proba(data)
  else:
    raise ValueError(f"aggregation method {method!r}; choose from {', '.join(METHODS)}")
  good = probas[GOOD] if GOOD in probas.columns else pd.Series(0.0, index=probas.index)
  return {item: float(p) for item, p in good.items()}


def _logit(p: float) -> float:
  return math.log(p / (1 - p))


def aggregate(answers: Sequence[Answer], skills: Mapping[str, AssessorScore], *,
              method: str = "dawid_skene", threshold: float = 0.5) -> dict[str, Verdict]:
  """Verdicts per reviewed item (see the module docstring for the methods).

  Every assessor in `answers` must have a score in `skills` (their qualification).
  """
  if method not in METHODS:
    raise ValueError(f"aggregation method {method!r}; choose from {', '.join(METHODS)}")
  if not 0.0 < threshold <= 1.0:
    raise ValueError(f"threshold={threshold}: a probability in (0, 1]")
  if not answers:
    raise ValueError("no review votes to aggregate")
  unknown = sorted({a.assessor for a in answers} - set(skills))
  if unknown:
    raise ValueError(f"assessors without a qualification score: {', '.join(unknown)}")
  p_good = _p_good(answers, skills, method)
  by_item: dict[str, list[Answer]] = defaultdict(list)
  for answer in answers:
    by_item[answer.item].append(answer)
  verdicts = {}
  for item, votes in by_item.items():
    keep = p_good[item] >= threshold
    reasons: Counter = Counter()
    for vote in votes:
      if vote.label == BAD:
        reasons[vote.reason or NO_REASON] += skill_weight(skills[vote.assessor]) + 1e-6
    reason = "" if keep else (max(sorted(reasons), key=reasons.__getitem__) if reasons
                              else "outvoted: skilled assessors judged it bad")
    verdicts[item] = Verdict(item=item, keep=keep, reason=reason,
                             p_good=None if method == "mmsr" else p_good[item],
                             votes={v.assessor: v.label for v in votes})
  return verdicts


def apply_verdicts(records: Sequence[Mapping[str, Any]], verdicts: Mapping[str, Verdict], *,
                   unreviewed: str = "drop") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """(kept, dropped) records; each carries its `review` (verdict, or 'unreviewed')."""
  if unreviewed not in UNREVIEWED:
    raise ValueError(f"unreviewed={unreviewed!r}; choose from {', '.join(UNREVIEWED)}")
  kept, dropped = [], []
  for record in records:
    verdict = verdicts.get(str(record["id"]))
    if verdict is None:
      review = {"status": "unreviewed"}
      keep = unreviewed == "keep"
      if not keep:
        review["reason"] = "not reviewed"
    else:
      review = {"status": "reviewed", **verdict.to_json()}
      review.pop("item_id")
      keep = verdict.keep
    (kept if keep else dropped).append({**record, "review": review})
  return kept, dropped


def review_report(records: Sequence[Mapping[str, Any]], kept: Sequence[Mapping[str, Any]],
                  dropped: Sequence[Mapping[str, Any]], verdicts: Mapping[str, Verdict],
                  skills: Mapping[str, AssessorScore], counts: AnswerCounts, *,
                  baseline: Mapping[str, Verdict], settings: Mapping[str, Any]
                  ) -> tuple[dict[str, Any], str]:
  """What was kept and dropped and why: JSON facts and markdown.

  `baseline` is the unweighted majority's verdicts; the report lists where skill changed
  the outcome. Each dropped example shows its rank in the round-trip pre-screen
  (1 = worst round trip), which says how much the automatic score alone would have missed.
  """
  from aya_t5x.gathering.roundtrip import ranked

  order = {r["id"]: i + 1 for i, r in enumerate(ranked(records))} if records and \
      "roundtrip" in records[0] else {}
  languages: dict[str, Counter] = defaultdict(Counter)
  for status, group in (("kept", kept), ("dropped", dropped)):
    for record in group:
      languages[record["language"]][status] += 1
      languages[record["language"]][record["review"]["status"]] += 1
  changed = sorted(i for i, v in verdicts.items() if i in baseline and baseline[i].keep != v.keep)
  votes_by = Counter(a for v in verdicts.values() for a in v.votes)
  fields = list(records[0]["original"]) if records else []

  def show(record: Mapping[str, Any]) -> dict[str, Any]:
    review = record["review"]
    return {"id": record["id"], "language": record["language"],
            "prescreen_rank": order.get(record["id"]),
            "chrf": record.get("roundtrip", {}).get("chrf"), "p_good": review.get("p_good"),
            "votes": review.get("votes", {}), "reason": review.get("reason", ""),
            "original": " / ".join(record["original"][f] for f in fields),
            "translation": " / ".join(record[f] for f in fields),
            "retranslation": " / ".join(record.get("retranslation", {}).get(f, "")
                                        for f in fields)}

  shown = [show(r) for r in dropped]
  report = {"settings": dict(settings), "examples": len(records), "kept": len(kept),
            "dropped": len(dropped), "votes_read": counts.read,
            "votes_skipped": dict(counts.skipped), "skipped_examples": list(counts.examples),
            "languages": {k: dict(v) for k, v in sorted(languages.items())},
            "reasons": dict(Counter(r["review"].get("reason", "") for r in dropped)),
            "changed_by_skill": changed,
            "assessors": [{"assessor": a, "votes": votes_by[a],
                           "qualification_accuracy": skills[a].accuracy,
                           "weight": skill_weight(skills[a])} for a in sorted(votes_by)],
            "dropped_examples": shown}
  lines = ["# Dataset review", "",
           f"{len(records)} examples: {len(kept)} kept, {len(dropped)} dropped. Votes: "
           f"{counts.read} read, {counts.skipped_total} skipped"
           + (f" ({', '.join(f'{k} {v}' for k, v in sorted(counts.skipped.items()))})"
              if counts.skipped_total else "") + f". Aggregation: {settings.get('method')} "
           f"(threshold {settings.get('threshold')}), unreviewed examples: "
           f"{settings.get('unreviewed')}.", ""]
  lines.append(reporting.data_table(
      ["language", "reviewed", "unreviewed", "kept", "dropped"],
      [[k, v["reviewed"], v["unreviewed"], v["kept"], v["dropped"]]
       for k, v in sorted(languages.items())]))
  lines += ["", "## Why examples were dropped", ""]
  lines.append(reporting.data_table(["reason", "examples"], sorted(report["reasons"].items())))
  lines += ["", "## Dropped examples", "",
            "Pre-screen rank: position in the round-trip order (1 = worst round trip, "
            f"{len(order)} = best); a high rank is a bad example the score alone would miss.", ""]
  lines.append(reporting.data_table(
      ["id", "rank", "chrF++", "P(good)", "votes", "reason", "original", "translation",
       "retranslation"],
      [[s["id"], s["prescreen_rank"], s["chrf"], s["p_good"],
        " ".join(f"{a}:{label}" for a, label in sorted(s["votes"].items())), s["reason"],
        s["original"], s["translation"], s["retranslation"]] for s in shown]))
  lines += ["", f"## Skill changed {len(changed)} outcome(s) against an unweighted majority",
            ""] + [f"- {i}: {'kept' if verdicts[i].keep else 'dropped'} (majority would have "
                   f"{'kept' if baseline[i].keep else 'dropped'} it)" for i in changed]
  lines += ["", "## Assessors", ""]
  lines.append(reporting.data_table(
      ["assessor", "votes", "qualification accuracy", "weight (log-odds)"],
      [[a["assessor"], a["votes"], a["qualification_accuracy"], a["weight"]]
       for a in report["assessors"]]))
  return report, "\n".join(lines)
