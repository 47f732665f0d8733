"""Pairwise win rates of two models' generations, by the recipe's rules (RECIPE.md §5).

The judge sees the instruction and two answers in random order and prefers one by asking,
in this order, whether an answer is in the requested language, answers the request, is
factually and semantically sound, and is grammatical, ending with `Preferred: Answer (A)`,
`Preferred: Answer (B)` or `Preferred: TIE`.

    a = read_generations("model_a.jsonl"); b = read_generations("model_b.jsonl")
    report = pairwise_win_rates(judge, join_generations(a, b), "out/", seed=0)

Replies that do not parse are counted as unparseable, never fatal. Win, tie and loss
rates per language come with a Wilson 95% interval, as JSON and markdown.
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.evaluation.judging.backends import Judge, JudgePrompt, run_judge
from aya_t5x.evaluation.judging.generation import Pairs

# ----------------------------------------------------------------------------------------
# The recipe's pairwise prompt and its verdicts
# ----------------------------------------------------------------------------------------

PAIRWISE_SYSTEM = """\
You are an impartial judge. You are given an instruction and two answers to it, \
Answer (A) and Answer (B). Decide which answer is better by these criteria, in this \
order of priority; go to the next criterion only when both answers are equally good on \
the previous one:
1. The answer is written in the language the instruction asks for (if it names none, the \
language of the instruction).
2. The answer does what the instruction asks.
3. The answer is factually correct and makes sense.
4. The answer is grammatical and fluent.
The order in which the answers are shown is random and says nothing about their quality.
You may explain your reasoning briefly. The last line of your reply must be exactly one of:
Preferred: Answer (A)
Preferred: Answer (B)
Preferred: TIE"""

PAIRWISE_USER = """\
Instruction:
{instruction}

Answer (A):
{answer_a}

Answer (B):
{answer_b}

Which answer is better? End with "Preferred: Answer (A)", "Preferred: Answer (B)" or \
"Preferred: TIE"."""

_PREFERRED = re.compile(r"preferred\s*\**\s*:\s*\**\s*(?:answer\s*\(?\s*([ab])\b\s*\)?|(tie)\b)",
                        re.IGNORECASE)


def pairwise_prompt(instruction: str, answer_a: str, answer_b: str) -> JudgePrompt:
  return JudgePrompt(system=PAIRWISE_SYSTEM, user=PAIRWISE_USER.format(
      instruction=instruction, answer_a=answer_a, answer_b=answer_b))


def parse_preference(reply: Any) -> str | None:
  """'A', 'B' or 'TIE' from a judge's reply; None when it names none or contradicts itself.

  Accepts the format with any case, markdown bold and without the parentheses
  ("**Preferred:** answer b"); a reply that states two different verdicts is unparseable.
  """
  if not isinstance(reply, str):
    return None
  verdicts = {(letter or tie).upper() for letter, tie in _PREFERRED.findall(reply)}
  return verdicts.pop() if len(verdicts) == 1 else None


# ----------------------------------------------------------------------------------------
# Rates and intervals
# ----------------------------------------------------------------------------------------


def shown_first(seed: int, key: str) -> bool:
  """Whether model A is shown as Answer (A) for this item: a fair coin seeded by (seed, id).

  Hashing the id (rather than drawing in file order) gives every item the same order in
  a resumed or reordered run.
  """
  return hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=1).digest()[0] % 2 == 0


def _counts_to_rates(counts: Mapping[str, int]) -> dict[str, Any]:
  judged = counts["win"] + counts["tie"] + counts["loss"]
  row: dict[str, Any] = {"pairs": sum(counts.values()), "judged": judged, **counts}
  for outcome in ("win", "tie", "loss"):
    row[f"{outcome}_rate"] = counts[outcome] / judged if judged else None
  row["win_rate_ci95"] = reporting.wilson_interval(counts["win"], judged)
  row["loss_rate_ci95"] = reporting.wilson_interval(counts["loss"], judged)
  return row


OUTCOMES = ("win", "tie", "loss", "unparseable", "failed")


def pairwise_win_rates(judge: Judge, joined: Pairs, output_dir: str | os.PathLike, *,
                       seed: int = 0, name_a: str = "A", name_b: str = "B") -> dict[str, Any]:
  """Judges every pair and writes win_rates.json, win_rates.md and judgments.jsonl.

  Rates are model A's, over the judged pairs (wins + ties + losses); unparseable replies
  and failed requests are counted beside them. `first_shown_preferred` is the share of
  decisive verdicts that went to whichever answer was shown first (0.5 = no position bias).
  """
  output_dir = Path(output_dir)
  items = []
  for ga, gb in joined.pairs:
    a_first = shown_first(seed, ga.id)
    first, second = (ga, gb) if a_first else (gb, ga)
    items.append((ga.id, pairwise_prompt(ga.prompt, first.completion, second.completion),
                  {"id": ga.id, "language": ga.language,
                   "model_a_shown_as": "A" if a_first else "B"}))
  records = run_judge(judge, items, output_dir / "judgments.jsonl", parse_preference)

  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  first_preferred = decisive = 0
  for key, _, fields in items:
    record = records[key]
    verdict = record["verdict"]
    if record["error"] is not None:
      outcome = "failed"
    elif verdict is None:
      outcome = "unparseable"
    elif verdict == "TIE":
      outcome = "tie"
    else:
      decisive += 1
      first_preferred += verdict == "A"
      outcome = "win" if verdict == fields["model_a_shown_as"] else "loss"
    counts[fields["language"]][outcome] += 1
    counts["all"][outcome] += 1
  report = {
      "what": "pairwise_win_rates", "model_a": name_a, "model_b": name_b,
      "judge": judge.description, "seed": seed, "pairs": len(items),
      "unmatched": {"only_a": len(joined.only_a), "only_b": len(joined.only_b),
                    "examples": (joined.only_a + joined.only_b)[:5]},
      "skipped_lines": len(joined.skipped), "skipped_examples": dict(
          list(joined.skipped.items())[:5]),
      "first_shown_preferred": first_preferred / decisive if decisive else None,
      "languages": {lang: _counts_to_rates({o: c[o] for o in OUTCOMES})
                    for lang, c in sorted(counts.items()) if lang != "all"},
      "overall": _counts_to_rates({o: counts["all"][o] for o in OUTCOMES}),
  }
  reporting.write_report(output_dir, "win_rates", report, format_win_rates(report))
  return report


# ----------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------


def format_win_rates(report: Mapping[str, Any]) -> str:
  percent = reporting.percent
  rows = [[lang, r["judged"], percent(r["win_rate"]), percent(r["tie_rate"]),
           percent(r["loss_rate"]), reporting.percent_interval(r["win_rate_ci95"]),
           r["unparseable"], r["failed"]]
          for lang, r in [*report["languages"].items(), ("**all**", report["overall"])]]
  table = reporting.markdown_table(["language", "judged", "win", "tie", "loss",
                                    "win 95% CI (Wilson)", "unparseable", "failed"], rows)
  return "\n\n".join([
      f"# {report['model_a']} vs {report['model_b']}: win rates of {report['model_a']}",
      f"Judge: {report['judge']}; answer order seeded with {report['seed']}; "
      f"{report['pairs']} pairs ({report['unmatched']['only_a']} ids only in A, "
      f"{report['unmatched']['only_b']} only in B, {report['skipped_lines']} lines skipped). "
      f"First-shown answer preferred in {percent(report['first_shown_preferred'])} of "
      "decisive verdicts.",
      table]) + "\n"
