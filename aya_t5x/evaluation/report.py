"""Evaluation reports: per task, per language and per resource group, and run comparisons.

`build(result)` turns a suite's results into a JSON-ready dict: every task with all its
metrics, then per benchmark the average of its primary metric over languages and its
HR/MR/LR averages (Joshi classes 5-4, 3, 2-0; languages outside mT5's table count in
the average only), and over the benchmarks the suite average (the recipe's "held-out
average" for aya_heldout). `write(report, folder)` writes `eval.json`, `eval.md` and
`eval.png`. `compare(reports, names)` puts several runs side by side (the way the recipe
compares mT0x with the three Aya mixtures), written as `compare.*` by `write_comparison`.
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.data import languages

GROUPS = languages.GROUPS
COLOURS = {"all": "#4c4c4c", "HR": "#1f77b4", "MR": "#ff7f0e", "LR": "#2ca02c"}


def _mean(values: Sequence[float | None]) -> float | None:
  values = [v for v in values if v is not None]
  return statistics.fmean(values) if values else None


def _language(code: str) -> tuple[str, str]:
  language = languages.find_language(code) if code else None
  return (language.name, language.group) if language else ("", "")


def _suite_average(tasks: Sequence[Mapping[str, Any]]) -> float | None:
  """Per benchmark the mean score over its tasks (languages), then the mean of those."""
  by_benchmark: dict[str, list] = {}
  for task in tasks:
    by_benchmark.setdefault(task["benchmark"], []).append(task["score"])
  return _mean([_mean(scores) for scores in by_benchmark.values()])


def build(result, *, checkpoint: str | None = None, step: int | None = None,
          config: Any = None) -> dict[str, Any]:
  """The report of a `suite.SuiteResult` as a JSON-ready dict."""
  tasks = []
  for task in result.tasks:
    name, group = _language(task.language)
    tasks.append({
        "task": task.task, "benchmark": task.benchmark, "language": task.language,
        "language_name": name, "group": group, "kind": task.kind, "split": task.split,
        "examples": task.examples, "primary_metric": task.primary_metric,
        "score": task.score, "metrics": task.metrics, "info": task.info,
        "empty_predictions": task.empty_predictions,
        "truncated_inputs": task.truncated_inputs,
        "truncated_targets": task.truncated_targets, "seconds": round(task.seconds, 3)})
  bench_rows = []
  for bench in dict.fromkeys(t["benchmark"] for t in tasks):
    rows = [t for t in tasks if t["benchmark"] == bench]
    bench_rows.append({
        "benchmark": bench, "metric": rows[0]["primary_metric"],
        "average": _mean([t["score"] for t in rows]),
        "groups": {g: _mean([t["score"] for t in rows if t["group"] == g]) for g in GROUPS},
        "tasks": len(rows), "examples": sum(t["examples"] for t in rows),
        "empty_predictions": sum(t["empty_predictions"] for t in rows)})
  notes = sorted({f"{t['benchmark']}: {key} = {value}" for t in tasks
                  for key, value in t["info"].items()})
  return {
      "suite": result.suite, "checkpoint": str(checkpoint) if checkpoint else None,
      "step": step, "created": datetime.datetime.now(datetime.UTC).isoformat(
          timespec="seconds"),
      "model": _model_summary(config), "tasks": tasks, "benchmarks": bench_rows,
      "average": _suite_average(tasks),
      "groups": {g: _mean([b["groups"][g] for b in bench_rows]) for g in GROUPS},
      "skipped": [{"task": name, "reason": why} for name, why in result.skipped],
      "notes": notes,
  }


def _model_summary(config: Any) -> dict[str, Any] | None:
  if config is None:
    return None
  return {name: getattr(config, name) for name in
          ("vocab_size", "d_model", "num_heads", "d_ff", "num_encoder_layers",
           "num_decoder_layers") if hasattr(config, name)}


def scalars(report: Mapping[str, Any]) -> dict[str, float]:
  """Flat metrics for the trainer's log: per task, per benchmark and group, and overall."""
  out = {}
  for task in report["tasks"]:
    suffix = task["task"].rsplit(".", 1)[-1]
    name = task["benchmark"] if task["task"] == task["benchmark"] else \
        f"{task['benchmark']}/{suffix}"
    out[f"{name}/{task['primary_metric']}"] = task["score"]
  for bench in report["benchmarks"]:
    out[f"{bench['benchmark']}/average"] = bench["average"]
    out.update({f"{bench['benchmark']}/{g}": v for g, v in bench["groups"].items()
                if v is not None})
  if report["average"] is not None:
    out["average"] = report["average"]
  return {k: float(v) for k, v in out.items() if v is not None}


# ----------------------------------------------------------------------------- markdown


def _num(value: float | None) -> str:
  return "-" if value is None else f"{value:.2f}"


def markdown(report: Mapping[str, Any]) -> str:
  """The report as a markdown document: summary, then one table per benchmark."""
  table = reporting.markdown_table
  where = f"`{report['checkpoint']}`" if report.get("checkpoint") else "parameters in memory"
  step = f", step {report['step']}" if report.get("step") is not None else ""
  lines = [f"# Evaluation: {report['suite']}", "",
           f"Checkpoint {where}{step}; {report['created']}.", "", "## Summary", "",
           "Averages over languages of each benchmark's metric; HR/MR/LR over the languages "
           "of each resource group (Joshi classes 5-4, 3, 2-0).", ""]
  rows = [[b["benchmark"], b["metric"], _num(b["average"]), *(_num(b["groups"][g])
                                                               for g in GROUPS),
           b["tasks"], b["examples"], b["empty_predictions"]] for b in report["benchmarks"]]
  rows.append(["**average**", "", _num(report["average"]),
               *(_num(report["groups"][g]) for g in GROUPS), "", "", ""])
  lines.append(table(["benchmark", "metric", "average", *GROUPS, "tasks", "examples",
                   "empty predictions"], rows))
  for bench in report["benchmarks"]:
    tasks = [t for t in report["tasks"] if t["benchmark"] == bench["benchmark"]]
    names = list(dict.fromkeys(m for t in tasks for m in t["metrics"]))
    lines += ["", f"## {bench['benchmark']}", ""]
    lines.append(table(["task", "language", "group", *names, "examples", "empty", "truncated"], [
        [t["task"], f"{t['language']} {t['language_name']}".strip() or "-", t["group"] or "-",
         *(_num(t["metrics"].get(m)) for m in names), t["examples"], t["empty_predictions"],
         t["truncated_inputs"] + t["truncated_targets"]] for t in tasks]))
  if report["skipped"]:
    lines += ["", "## Skipped (data missing)", ""]
    groups: dict[str, list[Mapping[str, str]]] = {}
    for skipped in report["skipped"]:
      groups.setdefault(skipped["task"].rsplit(".", 1)[0], []).append(skipped)
    lines += [f"- {group} ({len(items)} task(s): "
              f"{', '.join(i['task'].rsplit('.', 1)[-1] for i in items)}): {items[0]['reason']}"
              for group, items in groups.items()]
  if report["notes"]:
    lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
  return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- plots


def _bars(path: Path, title: str, categories: Sequence[str], series: Mapping[str, Sequence],
          ylabel: str, colours: Mapping[str, str] | None = None) -> Path:
  """Grouped bars: one group per category, one bar per series (None leaves a gap)."""
  import numpy as np

  plt = reporting.pyplot()

  width = 0.8 / max(len(series), 1)
  fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(categories) * max(len(series), 2) / 2),
                                  4.5))
  positions = np.arange(len(categories))
  for i, (label, values) in enumerate(series.items()):
    heights = [np.nan if v is None else v for v in values]
    bars = ax.bar(positions + (i - (len(series) - 1) / 2) * width, heights, width,
                  label=label, color=(colours or {}).get(label))
    ax.bar_label(bars, fmt="%.1f", fontsize=6)
  ax.set_xticks(positions, categories, rotation=30, ha="right", fontsize=8)
  ax.set_ylim(0, 100)  # every metric here is on a 0-100 scale
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize=8)
  fig.tight_layout()
  return reporting.save_figure(fig, path)


def plot(report: Mapping[str, Any], path: str | Path) -> Path:
  """A PNG: per benchmark the average and the HR/MR/LR averages of its metric."""
  benches = report["benchmarks"]
  series = {"all": [b["average"] for b in benches]}
  series.update({g: [b["groups"][g] for b in benches] for g in GROUPS})
  return _bars(Path(path), f"{report['suite']}: score by resource group",
               [f"{b['benchmark']}\n({b['metric']})" for b in benches], series, "score",
               COLOURS)


def write(report: Mapping[str, Any], folder: str | Path) -> dict[str, Path]:
  """Writes eval.json, eval.md and eval.png into `folder`."""
  return reporting.write_report(folder, "eval", report, markdown(report), plot)


def write_predictions(result, folder: str | Path) -> Path:
  """One JSONL per task under `folder/predictions/`: generations, or option scores."""
  out = Path(folder) / "predictions"
  out.mkdir(parents=True, exist_ok=True)
  for task in result.tasks:
    with open(out / f"{task.task}.jsonl", "w", encoding="utf-8") as f:
      for record in task.records:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
  return out


def load(path: str | Path) -> dict[str, Any]:
  """A report written by `write` (its eval.json, or the folder holding it)."""
  path = Path(path)
  if path.is_dir():
    path = path / "eval.json"
  if not path.is_file():
    raise FileNotFoundError(f"evaluation report {path} not found (an eval.json written by "
                            "`aya-t5x eval`).")
  try:
    report = json.loads(path.read_text(encoding="utf-8"))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e}); expected an eval.json of `aya-t5x "
                     "eval`.") from None
  missing = {"suite", "tasks", "benchmarks", "average", "groups"} - set(report)
  if missing:
    raise ValueError(f"{path}: not an evaluation report (no {sorted(missing)}).")
  return report


# ----------------------------------------------------------------------------- comparison


def compare(reports: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
  """Several runs side by side: per benchmark, per group and per task, one value per run."""
  if len(reports) < 2 or len(reports) != len(names):
    raise ValueError(f"compare needs two or more reports and one name each; got "
                     f"{len(reports)} report(s) and {len(names)} name(s).")
  benches = list(dict.fromkeys(b["benchmark"] for r in reports for b in r["benchmarks"]))
  per_run = [{b["benchmark"]: b for b in r["benchmarks"]} for r in reports]
  task_names = list(dict.fromkeys(t["task"] for r in reports for t in r["tasks"]))
  per_task = [{t["task"]: t for t in r["tasks"]} for r in reports]
  first = {t["task"]: t for r in reversed(reports) for t in r["tasks"]}
  # Runs over different tasks (another suite, --allow_missing) have averages over
  # different things; the shared tasks' average compares like with like.
  shared = {t for t in task_names if all(t in run for run in per_task)}
  lacking = {name: [t for t in task_names if t not in run]
             for name, run in zip(names, per_task)}
  coverage = None
  if any(lacking.values()):
    coverage = {"shared_tasks": len(shared),
                "missing_tasks": {n: missing for n, missing in lacking.items() if missing},
                "shared_average": [_suite_average([t for t in r["tasks"] if t["task"] in shared])
                                   for r in reports]}
  return {
      "runs": [{"name": n, "suite": r["suite"], "checkpoint": r.get("checkpoint"),
                "step": r.get("step")} for n, r in zip(names, reports)],
      "benchmarks": [{
          "benchmark": b,
          "metric": next(run[b]["metric"] for run in per_run if b in run),
          "values": [run[b]["average"] if b in run else None for run in per_run],
          "groups": {g: [run[b]["groups"][g] if b in run else None for run in per_run]
                     for g in GROUPS}} for b in benches],
      "average": [r["average"] for r in reports],
      "coverage": coverage,
      "groups": {g: [r["groups"][g] for r in reports] for g in GROUPS},
      "tasks": [{"task": t, "benchmark": first[t]["benchmark"],
                 "language": first[t]["language"], "group": first[t]["group"],
                 "metric": first[t]["primary_metric"],
                 "values": [run[t]["score"] if t in run else None for run in per_task]}
                for t in task_names],
  }


def _delta(values: Sequence[float | None]) -> str:
  if len(values) != 2 or None in values:
    return ""
  return f"{values[1] - values[0]:+.2f}"


def comparison_markdown(comparison: Mapping[str, Any]) -> str:
  table = reporting.markdown_table
  names = [r["name"] for r in comparison["runs"]]
  two = len(names) == 2
  delta = [f"{names[1]} - {names[0]}"] if two else []
  lines = ["# Evaluation comparison", ""]
  lines += [f"- **{r['name']}**: suite {r['suite']}, checkpoint `{r['checkpoint']}`"
            + (f", step {r['step']}" if r.get("step") is not None else "")
            for r in comparison["runs"]]
  coverage = comparison.get("coverage")
  if coverage:
    lacking = "; ".join(f"{name} lacks {len(tasks)} (e.g. {tasks[0]})"
                        for name, tasks in coverage["missing_tasks"].items())
    lines += ["", f"**The runs cover different tasks**: {lacking}. Each run's average is "
              f"over its own tasks; the row *average over the {coverage['shared_tasks']} "
              "shared tasks* compares like with like."]
  lines += ["", "## Benchmarks (average over languages)", ""]
  rows = [[b["benchmark"], b["metric"], *map(_num, b["values"])] +
          ([_delta(b["values"])] if two else []) for b in comparison["benchmarks"]]
  rows.append(["**average**", "", *map(_num, comparison["average"])] +
              ([_delta(comparison["average"])] if two else []))
  if coverage:
    rows.append([f"*average over the {coverage['shared_tasks']} shared tasks*", "",
                 *map(_num, coverage["shared_average"])] +
                ([_delta(coverage["shared_average"])] if two else []))
  lines.append(table(["benchmark", "metric", *names, *delta], rows))
  lines += ["", "## Resource groups", ""]
  rows = [[b["benchmark"], g, *map(_num, b["groups"][g])] +
          ([_delta(b["groups"][g])] if two else [])
          for b in comparison["benchmarks"] for g in GROUPS
          if any(v is not None for v in b["groups"][g])]
  rows += [["**average**", g, *map(_num, comparison["groups"][g])] +
           ([_delta(comparison["groups"][g])] if two else []) for g in GROUPS]
  lines.append(table(["benchmark", "group", *names, *delta], rows))
  lines += ["", "## Tasks", ""]
  lines.append(table(["task", "language", "group", "metric", *names, *delta], [
      [t["task"], t["language"] or "-", t["group"] or "-", t["metric"],
       *map(_num, t["values"])] + ([_delta(t["values"])] if two else [])
      for t in comparison["tasks"]]))
  return "\n".join(lines) + "\n"


def plot_comparison(comparison: Mapping[str, Any], path: str | Path) -> Path:
  """A PNG: per benchmark (and the average), one bar per run."""
  benches = comparison["benchmarks"]
  categories = [b["benchmark"] for b in benches] + ["average"]
  series = {run["name"]: [b["values"][i] for b in benches] + [comparison["average"][i]]
            for i, run in enumerate(comparison["runs"])}
  return _bars(Path(path), "comparison of runs", categories, series, "score")


def write_comparison(comparison: Mapping[str, Any], folder: str | Path) -> dict[str, Path]:
  """Writes compare.json, compare.md and compare.png into `folder`."""
  return reporting.write_report(folder, "compare", comparison, comparison_markdown(comparison),
                    plot_comparison)
