"""The `eval` subcommand of `aya-t5x` (wired in by `aya_t5x.cli`).

    aya-t5x eval --gin_file models/mt5_xxl.gin --gin_file eval/aya_heldout.gin \
      --gin.VOCABULARY_PATH="'/data/mc4.250000.100extra/sentencepiece.model'" \
      --checkpoint /runs/aya --data_dir /data/aya_eval --output_dir /runs/aya/eval
    aya-t5x eval --checkpoint /runs/mine --task tswana_qa --metric chrf \
      --output_dir /runs/mine/eval       # a task of the run's manifest, no gin written
    aya-t5x eval report /runs/aya/eval/eval.json
    aya-t5x eval report --compare mt0x/eval.json aya/eval.json --names mT0x Aya \
      --output_dir comparison

The suite and its tasks come from gin, the model size from gin or else from the
checkpoint (a run saves its model); the flags here override the
suite's data paths and sizes. Everything is checked (tasks, vocabulary, data files)
before the checkpoint is loaded. Handlers import the heavy libraries only when run and
raise ValueError / FileNotFoundError with messages that name the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from aya_t5x.command_flags import add_gin_flags as _add_gin_flags
from aya_t5x.command_flags import parse_gin

SUITES = ("eval/aya_heldout.gin", "eval/aya_generative.gin", "eval/aya_full.gin",
          "eval/demo.gin")


def _parse_data_paths(items: list[str] | None) -> dict[str, str]:
  paths = {}
  for item in items or ():
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
      raise ValueError(f"--data {item!r}: write it as FOLDER=PATH, e.g. "
                       "flores200=/data/flores200_dataset")
    paths[name] = path
  return paths


def _configured_suite(args: argparse.Namespace):
  from aya_t5x import gin_config

  try:
    suite = gin_config.configured("EvalSuite")()
  except TypeError as e:
    if "required" in str(e) or "missing" in str(e):
      raise ValueError(f"no evaluation suite configured: add one of --gin_file "
                       f"{', '.join(SUITES)} ({e}).") from None
    raise
  overrides: dict[str, Any] = {
      "data_dir": args.data_dir, "spbleu_model": args.spbleu_model,
      "max_examples": args.max_examples, "batch_size": args.batch_size,
      "allow_missing": args.allow_missing or None}
  data_paths = _parse_data_paths(args.data)
  if data_paths:
    overrides["data_paths"] = {**suite.data_paths, **data_paths}
  return dataclasses.replace(suite, **{k: v for k, v in overrides.items() if v is not None})


def _checkpoint_step(path: Path) -> int | None:
  """The step of a run folder (its latest) or of a step folder, else None."""
  steps = [int(p.name) for p in (path / "checkpoints").glob("*") if p.name.isdigit()]
  if steps:
    return max(steps)
  return int(path.name) if path.name.isdigit() and (path / "state").is_dir() else None


# --metric NAME -> (EvalTask kind, metric functions by name in aya_t5x.evaluation.metrics)
METRICS = {"accuracy": ("generate", "accuracy"), "exact_match": ("generate", "exact_match"),
           "chrf": ("generate", "chrf"), "rouge": ("generate", "rouge_lsum"),
           "rank_classification": ("rank", None)}
MAX_RANK_OPTIONS = 64


def _rank_options(task_name: str, split: str) -> list[str]:
  """The distinct targets of a task's split: the options rank classification scores."""
  import seqio

  task = seqio.get_mixture_or_task(task_name)
  if split not in task.splits:
    raise ValueError(f"task {task_name} has no {split!r} split (splits: "
                     f"{', '.join(task.splits)}); pick one with --split")
  dataset = task.get_dataset(sequence_length=None, split=split, shuffle=False, num_epochs=1)
  options: dict[str, None] = {}
  for example in dataset.as_numpy_iterator():
    options[example["targets_pretokenized"].decode("utf-8").strip()] = None
    if len(options) > MAX_RANK_OPTIONS:
      raise ValueError(f"task {task_name}: more than {MAX_RANK_OPTIONS} distinct targets in "
                       f"{split}; rank classification picks among a few labels: use "
                       "--metric exact_match or chrf")
  if len(options) < 2:
    raise ValueError(f"task {task_name}: {split} has {len(options)} distinct target(s); rank "
                     "classification needs two or more")
  return list(options)


def _task_suite(args: argparse.Namespace):
  """The suite of `--task ... --metric ...`: the run's manifest and vocabulary, no gin."""
  from aya_t5x import run_record
  from aya_t5x.data import manifest as manifest_lib
  from aya_t5x.evaluation import metrics
  from aya_t5x.evaluation import suite as suite_lib
  from aya_t5x.vocab import vocabulary as vocab_lib

  if not args.metric:
    raise ValueError(f"--task needs --metric: one of {', '.join(METRICS)}")
  vocabulary_path = args.vocabulary or run_record.recorded_vocabulary(args.checkpoint)
  if not vocabulary_path:
    raise ValueError(f"{args.checkpoint} records no vocabulary (runs record theirs in "
                     "MODEL_DIR/vocabulary.json): pass --vocabulary SPM_MODEL")
  vocabulary = vocab_lib.sentencepiece_vocabulary(vocabulary_path)
  manifest = args.manifest or run_record.recorded_manifest(args.checkpoint)
  if manifest:
    manifest_lib.load_manifest(manifest, vocabulary)
  kind, metric = METRICS[args.metric]
  entries = []
  for name in args.task:
    options = _rank_options(name, args.split) if kind == "rank" else None
    entries.append(suite_lib.EvalTask(
        task=name, kind=kind, split=args.split, options=options,
        metric_fns=(getattr(metrics, metric),) if metric else (),
        primary_metric="accuracy" if kind == "rank" else None))
  return suite_lib.EvalSuite(name="tasks", tasks=entries, vocabulary=vocabulary,
                             batch_size=args.batch_size or 32,
                             max_examples=args.max_examples)


def _eval(args: argparse.Namespace) -> int:
  from aya_t5x import gin_config, run_record
  from aya_t5x.checkpoints import loading
  from aya_t5x.evaluation import predict, report
  from aya_t5x.evaluation import suite as suite_lib

  if not args.checkpoint or not args.output_dir:
    raise ValueError("give --checkpoint (a training MODEL_DIR, a step folder or any "
                     "checkpoint) and --output_dir (where eval.json, eval.md and eval.png "
                     "go); `aya-t5x eval report` renders or compares reports.")
  loading.check_exists(args.checkpoint)
  run_record.use_recorded_languages(args.checkpoint)
  parse_gin(args)
  config = loading.model_config(args.checkpoint, gin_config.configured_model_or_none())
  suite = _task_suite(args) if args.task else _configured_suite(args)
  plan = suite_lib.plan(suite)
  print(f"suite {plan.suite}: {len(plan.tasks)} task(s)"
        + (f", {len(plan.skipped)} skipped for missing data" if plan.skipped else ""))
  checkpoint = Path(args.checkpoint)
  params = loading.load_params(checkpoint, config)
  if args.adapters:
    from aya_t5x.checkpoints import adapters

    params, config = adapters.attach_adapters(params, config, args.adapters,
                                              base_source=str(checkpoint))
  partitioner = gin_config.configured("Partitioner")()
  placement = predict.Placement(partitioner.mesh(), partitioner)
  result = suite_lib.run(plan, placement.place_params(params, config), config, placement,
                         progress=print)
  built = report.build(result, checkpoint=str(checkpoint), step=_checkpoint_step(checkpoint),
                       config=config)
  paths = report.write(built, args.output_dir)
  report.write_predictions(result, args.output_dir)
  summary = report.markdown(built).split("\n## ", 2)
  print("## " + summary[1].rstrip() if len(summary) > 1 else "")
  print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']} and predictions/")
  return 0


def _names(paths: list[str], names: list[str] | None) -> list[str]:
  if names:
    if len(names) != len(paths):
      raise ValueError(f"--names gives {len(names)} name(s) for {len(paths)} report(s).")
    return names
  derived = [Path(p).parent.name if p.endswith(".json") else Path(p).name for p in paths]
  return derived if len(set(derived)) == len(derived) else [f"{i + 1}:{n}" for i, n in
                                                           enumerate(derived)]


def _report(args: argparse.Namespace) -> int:
  from aya_t5x.evaluation import report

  if args.compare:
    if args.reports:
      raise ValueError("give the reports either after --compare or as arguments, not both.")
    reports = [report.load(p) for p in args.compare]
    comparison = report.compare(reports, _names(args.compare, args.names))
    print(report.comparison_markdown(comparison), end="")
    if args.output_dir:
      paths = report.write_comparison(comparison, args.output_dir)
      print(f"wrote {paths['json']}, {paths['markdown']}, {paths['png']}")
    return 0
  if not args.reports:
    raise ValueError("give a report (eval.json or its folder), or --compare A B ...")
  for path in args.reports:
    loaded = report.load(path)
    print(report.markdown(loaded), end="")
    folder = Path(args.output_dir) if args.output_dir else (
        Path(path) if Path(path).is_dir() else Path(path).parent)
    paths = report.write(loaded, folder)
    print(f"wrote {paths['markdown']} and {paths['png']}")
  return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
  """Adds `eval` (with its `report` subcommand) to the `aya-t5x` parser."""
  evaluate = subparsers.add_parser(
      "eval", help="evaluate a checkpoint on an eval suite (gin/eval/*.gin); `eval report` "
      "renders or compares reports",
      description="Evaluate a checkpoint on a suite "
                  f"({', '.join(SUITES)}), with a model size (models/) where the checkpoint "
                  "stores none (T5X). Writes eval.json, eval.md, eval.png and "
                  "predictions/ to --output_dir. See docs/evaluation.md.")
  evaluate.add_argument("--adapters", metavar="RUN_DIR",
                        help="a LoRA run (or step folder) whose adapters run on "
                             "--checkpoint, the base they were trained on, unmerged")
  evaluate.add_argument("--checkpoint", help="a training MODEL_DIR (latest step), a step "
                        "folder, or an aya_t5x / T5X / Hugging Face checkpoint")
  evaluate.add_argument("--output_dir", help="folder for the report and predictions")
  evaluate.add_argument("--data_dir", help="evaluation data root: xcopa/, xnli/, "
                        "xstorycloze/, xwinograd/, mmlu/, flores200/, xlsum/, tydiqa/ inside "
                        "(default: $AYA_EVAL_DATA)")
  evaluate.add_argument("--data", action="append", metavar="FOLDER=PATH",
                        help="one benchmark folder elsewhere, e.g. flores200=/data/flores200")
  evaluate.add_argument("--spbleu_model", metavar="SPM_MODEL",
                        help="FLORES-200 SentencePiece model (sacrebleu's "
                        "flores200sacrebleuspm) for spBLEU")
  evaluate.add_argument("--max_examples", type=int, help="at most N examples per task")
  evaluate.add_argument("--batch_size", type=int, help="rows per batch")
  evaluate.add_argument("--allow_missing", action="store_true",
                        help="skip (and report) tasks whose data files are missing")
  evaluate.add_argument("--task", action="append", metavar="NAME",
                        help="evaluate this task (or mixture) of the run's manifest instead "
                        "of a gin suite; repeat for several")
  evaluate.add_argument("--metric", choices=tuple(METRICS),
                        help="with --task: generate and score (accuracy, exact_match, chrf, "
                        "rouge), or rank_classification over the split's distinct targets")
  evaluate.add_argument("--split", default="validation",
                        choices=("train", "validation", "test"), help="with --task")
  evaluate.add_argument("--manifest", help="with --task: the task manifest (default: the "
                        "one the run trained with)")
  evaluate.add_argument("--vocabulary", help="with --task: SentencePiece model (default: "
                        "the one the run recorded)")
  _add_gin_flags(evaluate)
  evaluate.set_defaults(handler=_eval)

  sub = evaluate.add_subparsers(dest="eval_command", metavar="report")
  show = sub.add_parser(
      "report", help="render a report again, or compare several runs",
      description="Print (and rewrite the markdown and PNG of) eval.json reports, or put "
                  "several side by side with --compare.")
  show.add_argument("reports", nargs="*", help="eval.json files or their folders")
  show.add_argument("--compare", nargs="+", metavar="REPORT",
                    help="two or more eval.json files (or folders) to compare")
  show.add_argument("--names", nargs="+", help="a name per compared run (default: folders)")
  show.add_argument("--output_dir", help="write compare.json/.md/.png (or the re-rendered "
                    "report) here")
  show.set_defaults(handler=_report)
