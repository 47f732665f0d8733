"""`aya-t5x demo`: the recipe in miniature, end to end: corpus, fine-tuning, evaluation, report.

For each weighting scheme asked for (the final translation-heavy one by default; all
three with `--compare`), the job

1. builds the demo corpus once (`aya_t5x.demo.corpus`, deterministic from the seed);
2. fine-tunes mT5-tiny with the real recipe's gin files, `models/mt5_tiny.gin`,
   `runs/aya_recipe.gin` and `mixtures/<scheme>.gin`, plus `demo/recipe.gin` for the
   CPU-sized settings (the same `train` as `aya-t5x train`, resuming if interrupted);
3. evaluates the final parameters with the demo suite (`eval/demo.gin`: the same suite
   machinery, rank classification and generation metrics as the recipe's benchmarks);
4. writes `report.md`, `report.json` and `report.png` in the output folder: the loss
   curve's start and end, every task per language with HR/MR/LR averages, the
   classification accuracy per language against chance, and with several schemes the
   side-by-side comparison of RECIPE.md §4's experiment.

With `--lora` it also trains LoRA adapters (`runs/lora.gin`, rank `LORA_DEMO_RANK`) for
the first scheme, from the same starting weights and for the same steps, and the report
puts them beside the full fine-tuning (`report.json` key `lora`): trainable parameters,
checkpoint size, loss, suite average and classification per language. The demo's base
is mT5-tiny's random initialisation (no pretrained model is reachable offline), which
is the hard case for adapters: they are meant to adapt a pretrained network.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.demo import corpus as demo_corpus

SCHEMES = ("translation_heavy", "human_heavy", "template_heavy")
MODEL_GIN = "models/mt5_tiny.gin"
RECIPE_GIN = ("runs/aya_recipe.gin", "mixtures/{scheme}.gin", "demo/recipe.gin")
EVAL_GIN = "eval/demo.gin"
CLASSIFICATION = "demo_classification"
# The report calls a language learnt when its classification accuracy beats chance by
# this many points (40 held-out questions a language: 2.5 standard errors of a coin).
ABOVE_CHANCE_MARGIN = 20.0
LORA_GIN = "runs/lora.gin"
# mT5-tiny's d_model is 128: rank 16 keeps the adapters an eighth of each kernel's width.
LORA_DEMO_RANK = 16


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoOptions:
  """What `aya-t5x demo` runs.

  Attributes:
    output_dir: corpus/, one run folder per scheme, and the report.
    schemes: weighting schemes to train (`SCHEMES`).
    seed: corpus, data order, initialisation and dropout.
    gin_bindings: extra `NAME=value` bindings for training and evaluation
      (for example `TRAIN_STEPS=200` for a quicker look).
    lora: also train LoRA adapters for the first scheme and compare them.
    preference: with `demo.preference.PreferenceOptions`, after the first scheme's SFT
      run a DPO round and its judged win rate against SFT (`report.json`'s `preference`).
  """

  output_dir: str
  schemes: Sequence[str] = SCHEMES[:1]
  seed: int = 0
  gin_bindings: Sequence[str] = ()
  lora: bool = False
  preference: Any = None  # a demo.preference.PreferenceOptions: the DPO round after SFT

  def __post_init__(self):
    unknown = [s for s in self.schemes if s not in SCHEMES]
    if unknown or not self.schemes:
      raise ValueError(f"demo scheme(s) {unknown or '(none)'}: choose from {', '.join(SCHEMES)}")


def parse_gin(corpus: demo_corpus.Corpus, scheme: str, run_dir: Path, seed: int,
              extra_bindings: Sequence[str] = (), extra_files: Sequence[str] = ()) -> None:
  """One gin configuration for a scheme's training and its evaluation.

  The recipe's files (`runs/aya_recipe.gin`, `mixtures/<scheme>.gin`), the demo's sizes
  (`demo/recipe.gin`) and the demo suite (`eval/demo.gin`), with the corpus's paths.
  """
  import aya_t5x.configurables  # noqa: F401  (what the gin files configure)
  import aya_t5x.mixtures  # noqa: F401  (the weighting schemes the recipe's gin names)
  from aya_t5x import gin_config

  files = [MODEL_GIN, *(f.format(scheme=scheme) for f in RECIPE_GIN), *extra_files,
           EVAL_GIN]
  gin_config.parse_gin(files, [
      f"VOCABULARY_PATH={str(corpus.vocabulary_path)!r}",
      f"AYA_SOURCES={json.dumps(corpus.source_paths())}",
      f"DEMO_CORPUS={str(corpus.root)!r}", f"MODEL_DIR={str(run_dir)!r}",
      f"train.seed={seed}", *extra_bindings])


def evaluate(params: Any, run_dir: Path, progress: Callable[[str], None] = print
             ) -> dict[str, Any]:
  """Runs the configured suite on `params`, placed on the configured mesh; writes
  run_dir/eval/ and returns the report."""
  from aya_t5x import gin_config

  return evaluate_with(params, gin_config.configured_model(), run_dir, progress)


def evaluate_with(params: Any, config: Any, run_dir: Path,
                  progress: Callable[[str], None] = print) -> dict[str, Any]:
  """`evaluate` for the network `config` (the base with adapters, say)."""
  from aya_t5x import gin_config
  from aya_t5x.evaluation import predict, report
  from aya_t5x.evaluation import suite as suite_lib

  suite = gin_config.configured("EvalSuite")()
  partitioner = gin_config.configured("Partitioner")()
  placement = predict.Placement(partitioner.mesh(), partitioner)
  result = suite_lib.run(suite_lib.plan(suite), placement.place_params(params, config),
                         config, placement, progress=progress)
  built = report.build(result, checkpoint=str(run_dir), config=config)
  report.write(built, run_dir / "eval")
  report.write_predictions(result, run_dir / "eval")
  return built


# ----------------------------------------------------------------------------- the report


def loss_curve(run_dir: Path) -> dict[str, Any]:
  """First and last logged training loss, and the last train-eval, from metrics.jsonl."""
  rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  train = [r for r in rows if "train/loss" in r]
  evals = [r for r in rows if "train_eval/loss" in r]
  return {"first_step": train[0]["step"], "first_loss": train[0]["train/loss"],
          "last_step": train[-1]["step"], "last_loss": train[-1]["train/loss"],
          "train_eval_loss": evals[-1]["train_eval/loss"] if evals else None,
          "train_eval_accuracy": evals[-1]["train_eval/accuracy"] if evals else None}


def classification_vs_chance(built: dict[str, Any]) -> dict[str, Any]:
  """Per language: rank-classification accuracy, chance, and whether it is well above."""
  chance = 100.0 * demo_corpus.CHANCE["classification"]
  rows = {t["language"]: t["score"] for t in built["tasks"] if t["benchmark"] == CLASSIFICATION}
  return {"chance": chance, "margin": ABOVE_CHANCE_MARGIN, "accuracy": rows,
          "lowest": min(rows.values()) if rows else None,
          "all_above": bool(rows) and all(v >= chance + ABOVE_CHANCE_MARGIN
                                          for v in rows.values())}


def _fmt(value: float | None) -> str:
  return "-" if value is None else f"{value:.2f}"


def markdown(summary: dict[str, Any]) -> str:
  lines = ["# aya_t5x demo report", "",
           f"Seed {summary['seed']}; corpus {summary['corpus_checksum'][:12]}; "
           f"{summary['seconds']:.0f} s in all. Each scheme fine-tuned mT5-tiny with "
           "`runs/aya_recipe.gin` + `mixtures/<scheme>.gin` + `demo/recipe.gin` and was "
           "evaluated on held-out examples no training file contains.", "",
           "## Learning", ""]
  lines.append(reporting.markdown_table(
      ["scheme", "loss at step", "→ loss at step", "train-eval loss",
       "classification: lowest language",
       f"above chance (+{ABOVE_CHANCE_MARGIN:.0f}) in every language"],
      [[scheme, f"{run['loss']['first_loss']:.3f} @ {run['loss']['first_step']}",
        f"{run['loss']['last_loss']:.3f} @ {run['loss']['last_step']}",
        _fmt(run["loss"]["train_eval_loss"]), _fmt(run["classification"]["lowest"]),
        "yes" if run["classification"]["all_above"] else "NO"]
       for scheme, run in summary["runs"].items()]))
  first = next(iter(summary["runs"].values()))["classification"]
  lines += ["", f"Classification (\"what colour are the ...?\", two options) is scored by rank "
            f"classification; chance is {first['chance']:.0f}%.", ""]
  from aya_t5x.data import languages

  lines.append(reporting.markdown_table(
      ["language", "group", *summary["runs"]],
      [[code, languages.get_language(code).group,
        *(_fmt(run["classification"]["accuracy"].get(code)) for run in summary["runs"].values())]
       for code in first["accuracy"]]))
  lines += ["", "## Every task, per language and resource group", ""]
  for scheme, run in summary["runs"].items():
    lines.append(f"- {scheme}: [{run['eval_markdown']}]({run['eval_markdown']}) "
                 f"(suite average {_fmt(run['average'])}; HR {_fmt(run['groups'].get('HR'))},"
                 f" MR {_fmt(run['groups'].get('MR'))}, LR {_fmt(run['groups'].get('LR'))})")
  if summary.get("lora"):
    lora = summary["lora"]
    lines += ["", f"## LoRA adapters against full fine-tuning ({lora['scheme']})", "",
              f"Rank {lora['rank']} on every attention and MLP kernel (`runs/lora.gin`), "
              "from the same random start and for the same steps; the base is frozen. "
              "Adapters are built to adapt a pretrained model: on the demo's random base "
              "they can only learn what low-rank updates of random layers express.", ""]
    lines.append(reporting.markdown_table(
        ["", "trainable parameters", "checkpoint (step folder)", "final loss",
         "suite average", "classification: lowest language"],
        [["full", f"{lora['full_trainable_parameters']:,}",
          f"{lora['full_checkpoint_bytes'] / 2**20:.2f} MiB",
          f"{lora['full_loss']['last_loss']:.3f}", _fmt(lora["full_average"]),
          _fmt(lora["full_classification"]["lowest"])],
         ["LoRA", f"{lora['trainable_parameters']:,}",
          f"{lora['checkpoint_bytes'] / 2**20:.2f} MiB", f"{lora['loss']['last_loss']:.3f}",
          _fmt(lora["average"]), _fmt(lora["classification"]["lowest"])]]))
    lines += ["", reporting.markdown_table(
        ["language", "full", "LoRA"],
        [[code, _fmt(acc), _fmt(lora["classification"]["accuracy"].get(code))]
         for code, acc in lora["full_classification"]["accuracy"].items()])]
  if summary.get("comparison"):
    # The comparison is a document of its own: its headings go one level down.
    nested = "\n".join("##" + line if line.startswith("#") else line
                       for line in summary["comparison"].splitlines())
    lines += ["", "## The weighting schemes side by side", "", nested]
  if summary.get("preference"):
    from aya_t5x.demo import preference

    lines += ["", preference.markdown(summary["preference"])]
  return "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> Path:
  """Classification accuracy per language, one bar per scheme, with the chance line."""
  plt = reporting.pyplot()
  runs = summary["runs"]
  codes = list(next(iter(runs.values()))["classification"]["accuracy"])
  fig, ax = plt.subplots(figsize=(max(6, len(codes) * 0.9), 3.6))
  width = 0.8 / len(runs)
  for i, (scheme, run) in enumerate(runs.items()):
    values = [run["classification"]["accuracy"].get(c) or 0.0 for c in codes]
    ax.bar([x + i * width for x in range(len(codes))], values, width, label=scheme)
  chance = next(iter(runs.values()))["classification"]["chance"]
  ax.axhline(chance, color="black", linestyle="--", linewidth=1, label="chance")
  ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(codes))], codes)
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(0, 100)
  ax.set_title("Demo classification on held-out examples, per language")
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  return reporting.save_figure(fig, path, dpi=110)


def _folder_bytes(path: Path) -> int:
  return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _lora_run(corpus: demo_corpus.Corpus, options: DemoOptions, out: Path,
              full: dict[str, Any], progress: Callable[[str], None]) -> dict[str, Any]:
  """Trains adapters for the first scheme (same start, same steps) and compares them."""
  import jax
  import numpy as np

  from aya_t5x import configurables, gin_config, model
  from aya_t5x.checkpoints import adapters, native

  scheme = options.schemes[0]
  run_dir = out / f"{scheme}_lora"
  bindings = [f"LORA_RANK={LORA_DEMO_RANK}", f"LORA_ALPHA={2.0 * LORA_DEMO_RANK}",
              *options.gin_bindings]
  # The base is the full run's starting point, the seed's initialisation of the model,
  # written once as a checkpoint: training reads it as INITIAL_CHECKPOINT_PATH, and the
  # evaluation attaches the adapters to it (checked against their fingerprint).
  parse_gin(corpus, scheme, run_dir, options.seed, bindings, extra_files=[LORA_GIN])
  config = gin_config.configured_model()
  base_dir = out / "base_init"
  if not (base_dir / native.CONFIG_FILE).is_file():
    native.save_params(jax.tree.map(np.asarray, model.init_params(
        config, jax.random.key(options.seed))), config, base_dir)
  base, _ = native.load_params(base_dir, config)
  progress(f"fine-tuning LoRA adapters on the {scheme} mixture in {run_dir}")
  parse_gin(corpus, scheme, run_dir, options.seed,
            [*bindings, f"INITIAL_CHECKPOINT_PATH={str(base_dir)!r}"], extra_files=[LORA_GIN])
  result = configurables.configured_train()
  params, adapted = adapters.attach_adapters(base, config, run_dir, base_source=str(base_dir))
  progress(f"evaluating the {scheme} adapters on the demo suite")
  built = evaluate_with(params, adapted, run_dir, progress)
  step = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
  full_dir = Path(full["run_dir"])
  full_step = max(int(p.name) for p in (full_dir / "checkpoints").iterdir()
                  if p.name.isdigit())
  total = sum(int(x.size) for x in jax.tree.leaves(base))
  trained = sum(int(x.size) for x in jax.tree.leaves(result.state.params))
  return {"scheme": scheme, "run_dir": str(run_dir), "rank": LORA_DEMO_RANK,
          "trainable_parameters": trained, "full_trainable_parameters": total,
          "checkpoint_bytes": _folder_bytes(run_dir / "checkpoints" / str(step)),
          "full_checkpoint_bytes": _folder_bytes(full_dir / "checkpoints" / str(full_step)),
          "loss": loss_curve(run_dir), "full_loss": full["loss"],
          "average": built["average"], "full_average": full["average"],
          "groups": built["groups"], "classification": classification_vs_chance(built),
          "full_classification": full["classification"],
          "eval_markdown": str(Path(run_dir.name) / "eval" / "eval.md")}


def run_demo(options: DemoOptions, progress: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs the demo (see the module docstring); returns the report as a dict."""
  from aya_t5x import configurables
  from aya_t5x.evaluation import report

  start = time.perf_counter()
  out = Path(options.output_dir)
  progress(f"building the demo corpus in {out / 'corpus'} (seed {options.seed})")
  corpus = demo_corpus.build_corpus(out / "corpus", seed=options.seed)
  runs, built_reports, sft_params = {}, {}, {}
  for scheme in options.schemes:
    run_dir = out / scheme
    progress(f"fine-tuning on the {scheme} mixture in {run_dir}")
    parse_gin(corpus, scheme, run_dir, options.seed, options.gin_bindings)
    result = configurables.configured_train()
    sft_params[scheme] = result.state.params
    progress(f"evaluating {scheme} on the demo suite")
    built = evaluate(result.state.params, run_dir, progress)
    built_reports[scheme] = built
    runs[scheme] = {"run_dir": str(run_dir), "loss": loss_curve(run_dir),
                    "classification": classification_vs_chance(built),
                    "average": built["average"], "groups": built["groups"],
                    "eval_markdown": str(Path(scheme) / "eval" / "eval.md")}
  summary = {"seed": options.seed, "corpus_checksum": corpus.summary()["checksum"],
             "runs": runs}
  if options.lora:
    summary["lora"] = _lora_run(corpus, options, out, runs[options.schemes[0]], progress)
  if options.preference is not None:
    from aya_t5x.demo import preference

    scheme = options.schemes[0]
    parse_gin(corpus, scheme, out / scheme, options.seed, options.gin_bindings)
    summary["preference"] = preference.run_round(
        corpus, sft_params[scheme], out / "preference", options.preference, options.seed,
        MODEL_GIN, RECIPE_GIN[-1], progress)
  summary["seconds"] = time.perf_counter() - start
  if len(built_reports) > 1:
    comparison = report.compare(list(built_reports.values()), list(built_reports))
    report.write_comparison(comparison, out / "compare")
    summary["comparison"] = report.comparison_markdown(comparison)
  (out / "report.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
  (out / "report.md").write_text(markdown(summary), encoding="utf-8")
  plot(summary, out / "report.png")
  progress(f"wrote {out / 'report.md'}, {out / 'report.json'} and {out / 'report.png'}")
  return summary
