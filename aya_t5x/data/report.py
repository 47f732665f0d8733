"""The mixture report: who gets what of a step budget, as markdown, JSON and a PNG plot.

For a `mixing.MixturePlan` and a budget (steps × batch × examples per packed sequence)
it gives, per source and per language, the share of examples and of tokens, the
HR/MR/LR split, and how many epochs each source and task is repeated, with a warning
above a threshold (RECIPE.md §4: the human set seen 30 times over was a cause of
overfitting). Without data (a plan over the published sizes) it is per source only.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.data import languages, mixing, registration

DEFAULT_WARN_EPOCHS = 10.0
GROUP_COLOURS = {"HR": "#1f77b4", "MR": "#ff7f0e", "LR": "#2ca02c", "": "#7f7f7f"}


def _tokens_per_example(info: registration.TaskInfo, planned, vocabulary, sample: int) -> float:
  """Mean tokens (with eos) of inputs + targets over the task's first `sample` examples,
  or over all of them when the task comes from an `aya-t5x cache` output."""
  if planned.index.cache_dir is not None:
    from aya_t5x.data import caches

    stats = caches.split_stats(planned.index.cache_dir, info.name, "train")
    return (stats["inputs_tokens"] + stats["targets_tokens"]) / stats["examples"] + 2 if \
        stats["examples"] else 0.0
  total = count = 0
  for example in registration.examples_of(info, planned.index):
    total += len(vocabulary.encode(example.inputs)) + len(vocabulary.encode(example.targets)) + 2
    count += 1
    if count >= sample:
      break
  return total / count if count else 0.0


def mixture_report(plan: mixing.MixturePlan, *, steps: int, batch: int,
                   examples_per_sequence: float = 1.0,
                   warn_epochs: float = DEFAULT_WARN_EPOCHS, vocabulary=None,
                   token_sample: int = 64) -> dict[str, Any]:
  """The report as a JSON-ready dict (see `format_markdown`, `write_report`).

  Tokens are counted with `vocabulary` on up to `token_sample` examples per task and
  scaled to the task; without a vocabulary the report counts characters instead.
  """
  if steps <= 0 or batch <= 0 or examples_per_sequence <= 0:
    raise ValueError(f"steps, batch and examples per sequence must be positive, got {steps}, "
                     f"{batch}, {examples_per_sequence}")
  budget = steps * batch * examples_per_sequence
  unit = "tokens" if vocabulary is not None else "characters"
  weights_total = float(sum(plan.source_weights.values()))
  warnings: list[str] = []

  sources_out = []
  for source, weight in plan.source_weights.items():
    share = weight / weights_total
    size = plan.size_of(source)
    drawn = share * budget
    epochs = drawn / size if size else math.inf
    if epochs > warn_epochs:
      warnings.append(f"{source}: {epochs:.1f} epochs at {100 * share:.1f}% of "
                      f"{budget:,.0f} examples (above {warn_epochs:g}); expect overfitting, "
                      "or lower its weight")
    sources_out.append({"source": source, "weight_pct": round(100 * share, 4),
                        "examples_available": int(size), "examples_drawn": round(drawn),
                        "epochs": round(epochs, 6) if math.isfinite(epochs) else None})

  tasks_out = []
  for source, planned in plan.source_tasks.items():
    for info in planned.tasks:
      rate = plan.task_rates.get(info.name, 0.0)
      size = info.sizes.get("train", 0)
      if vocabulary is not None:
        per_example = _tokens_per_example(info, planned, vocabulary, token_sample)
      else:
        per_example = info.chars.get("train", 0) / size if size else 0.0
      tasks_out.append({"task": info.name, "source": source, "language": info.language,
                        "group": info.resource_group, "rate": rate,
                        "examples_available": size, "examples_drawn": round(rate * budget),
                        "epochs": round(rate * budget / size, 6) if size else None,
                        f"{unit}_per_example": round(per_example, 2),
                        f"{unit}_drawn": round(rate * budget * per_example)})
  for task in tasks_out:
    if task["epochs"] is not None and task["epochs"] > warn_epochs:
      warnings.append(f"task {task['task']}: {task['epochs']:.1f} epochs")
  token_total = sum(t[f"{unit}_drawn"] for t in tasks_out) or 1

  by_language: dict[str, dict[str, float]] = collections.defaultdict(
      lambda: collections.defaultdict(float))
  for task in tasks_out:
    row = by_language[task["language"]]
    row["share"] += task["rate"]
    row[unit] += task[f"{unit}_drawn"]
    row["drawn"] += task["examples_drawn"]
    row["available"] += task["examples_available"]
  languages_out = []
  for code, row in sorted(by_language.items(), key=lambda kv: -kv[1]["share"]):
    language = languages.find_language(code) if code else None
    languages_out.append({
        "language": code, "name": language.name if language else "",
        "group": language.group if language else "",
        "examples_pct": round(100 * row["share"], 4),
        f"{unit}_pct": round(100 * row[unit] / token_total, 4),
        "examples_drawn": round(row["drawn"]), "examples_available": round(row["available"])})
  groups_out = {}
  if languages_out:
    for group in (*languages.GROUPS, ""):
      rows = [r for r in languages_out if r["group"] == group]
      if rows or group:
        groups_out[group or "unknown"] = {
            "languages": len(rows),
            "examples_pct": round(sum(r["examples_pct"] for r in rows), 4),
            f"{unit}_pct": round(sum(r[f"{unit}_pct"] for r in rows), 4)}
  return {
      "mixture": plan.name, "scheme": plan.scheme, "strategy": plan.strategy,
      "budget": {"steps": steps, "batch": batch, "examples_per_sequence": examples_per_sequence,
                 "examples": round(budget)},
      "unit": unit, "warn_epochs": warn_epochs, "sources": sources_out,
      "languages": languages_out, "groups": groups_out, "tasks": tasks_out,
      "warnings": warnings,
      "data": {s: p.report.to_dict() for s, p in plan.source_tasks.items()},
      "sizes": "scanned" if plan.source_tasks else "published (RECIPE.md §3)",
  }


def _num(value: float | None) -> str:
  if value is None:
    return "-"
  return f"{value:,.2f}" if isinstance(value, float) and not value.is_integer() else \
      f"{value:,.0f}"


def format_markdown(report: Mapping[str, Any]) -> str:
  """The report as a markdown document."""
  table = reporting.markdown_table
  budget = report["budget"]
  unit = report["unit"]
  lines = [f"# Mixture report: {report['mixture']}", "",
           f"Scheme `{report['scheme']}`, strategy `{report['strategy']}` inside sources; "
           f"sizes {report['sizes']}. Budget: {budget['steps']:,} steps x {budget['batch']} "
           f"sequences x {budget['examples_per_sequence']:g} examples per sequence = "
           f"{budget['examples']:,} examples.", "", "## Sources", ""]
  lines.append(table(["source", "weight %", "examples available", "examples drawn", "epochs"], [
      [s["source"], _num(s["weight_pct"]), _num(s["examples_available"]),
       _num(s["examples_drawn"]), _num(s["epochs"])] for s in report["sources"]]))
  if report["groups"]:
    lines += ["", "## Resource groups (Joshi classes: HR 5-4, MR 3, LR 2-0)", ""]
    lines.append(table(["group", "languages", "examples %", f"{unit} %"], [
        [g, v["languages"], _num(v["examples_pct"]), _num(v[f"{unit}_pct"])]
        for g, v in report["groups"].items()]))
  if report["languages"]:
    lines += ["", "## Languages", ""]
    lines.append(table(["language", "name", "group", "examples %", f"{unit} %", "examples drawn",
                     "examples available"], [
        [r["language"], r["name"], r["group"], _num(r["examples_pct"]),
         _num(r[f"{unit}_pct"]), _num(r["examples_drawn"]), _num(r["examples_available"])]
        for r in report["languages"]]))
  lines += ["", "## Warnings", ""]
  lines += [f"- {w}" for w in report["warnings"]] or ["None."]
  if report["data"]:
    lines += ["", "## Data read", ""]
    lines.append(table(["source", "read", "kept", "skipped (malformed)", "removed by filters"], [
        [s, d["read"], d["kept"], d["skipped_malformed"],
         "; ".join(f"{k} ({v})" for k, v in d["removed"].items()) or "-"]
        for s, d in report["data"].items()]))
  return "\n".join(lines) + "\n"


def plot(report: Mapping[str, Any], path: str | Path) -> Path:
  """A PNG of examples drawn per language (or per source without languages), log scale."""
  plt = reporting.pyplot()
  rows = report["languages"] or report["sources"]
  labels = [r.get("language") or r.get("source") or "?" for r in rows]
  values = [max(r["examples_drawn"], 1) for r in rows]
  colours = [GROUP_COLOURS.get(r.get("group", ""), GROUP_COLOURS[""]) for r in rows]
  height = max(3.0, 0.22 * len(rows) + 1.5)
  fig, ax = plt.subplots(figsize=(8, height))
  ax.barh(range(len(rows)), values, color=colours)
  ax.set_yticks(range(len(rows)), labels, fontsize=8)
  ax.invert_yaxis()
  ax.set_xscale("log")
  ax.set_xlabel(f"examples drawn in {report['budget']['examples']:,} (log scale)")
  what = "language" if report["languages"] else "source"
  ax.set_title(f"{report['mixture']}: examples per {what}")
  if report["languages"]:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=GROUP_COLOURS[g], label=g) for g in languages.GROUPS],
              loc="lower right")
  fig.tight_layout()
  return reporting.save_figure(fig, path)


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
  """Writes `<mixture>.md`, `<mixture>.json` and `<mixture>.png` into `out_dir`."""
  return reporting.write_report(out_dir, str(report["mixture"]), report,
                                format_markdown(report), plot)
