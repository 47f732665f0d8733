"""The `aya-t5x` command: parses flags and gin, then calls library functions.

Heavy libraries load inside each subcommand, so `aya-t5x --help` answers at once. The
core commands (model-info, train, infer, convert) are here; each product's commands sit in
its own `commands.py` (COMMAND_MODULES), and the gin flags they all share in
`aya_t5x.command_flags`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from aya_t5x import gin_files, startup
from aya_t5x.command_flags import (
  CommandError,
  add_gin_flags,
  parse_gin,
  split_gin_bindings,
  uses_gin,
)

COMMAND_MODULES = ("aya_t5x.data.commands", "aya_t5x.gathering.commands",
                   "aya_t5x.evaluation.commands", "aya_t5x.evaluation.judge_commands",
                   "aya_t5x.annotation.commands", "aya_t5x.demo.commands",
                   "aya_t5x.vocab.commands", "aya_t5x.compile_command",
                   "aya_t5x.preference.commands")


def _model_info(args: argparse.Namespace) -> int:
  from aya_t5x import gin_config, model_info

  parse_gin(args)
  report = model_info.parameter_report(gin_config.configured_model())
  print(model_info.format_report(report))
  return 0


def _convert(args: argparse.Namespace) -> int:
  from aya_t5x import gin_config, run_record
  from aya_t5x.checkpoints import conversion, loading

  loading.check_exists(args.src)
  vocabulary = args.vocabulary or run_record.recorded_vocabulary(args.src)
  config = None
  if uses_gin(args):
    parse_gin(args)
    config = gin_config.configured_model()
  result = conversion.convert_checkpoint(args.src, args.dst, source_format=args.source_format,
                                         target_format=args.target_format, config=config,
                                         adapters=args.merge_adapters)
  config = result.config
  copied = ""
  if vocabulary and args.target_format == "hf":
    conversion.write_hf_tokenizer(vocabulary, args.dst)
    copied = f"; tokenizer {vocabulary} as spiece.model"
  print(f"wrote {args.target_format} checkpoint {args.dst} "
        + (f"from {result.train_state_dir} " if result.train_state_dir else "")
        + f"(d_model={config.d_model}, {config.num_encoder_layers}/"
        f"{config.num_decoder_layers} layers, vocab {config.vocab_size}){copied}")
  return 0


def _train(args: argparse.Namespace) -> int:
  from aya_t5x import configurables, distributed

  if args.print_config:
    parse_gin(args)
    from aya_t5x import gin_config as config_lib

    config_lib.check_required_macros()
    for name, value in config_lib.resolved_macros(args.gin_bindings).items():
      print(f"{name} = {value}")
    return 0
  distributed.initialize(distributed.config_from_args(args))  # before jax starts
  parse_gin(args)
  try:
    result = configurables.configured_train()
  except Exception as e:
    lost = distributed.lost_peer(e)
    if lost is None:
      raise
    # Exit now: jax's shutdown would wait at a barrier for the lost process until its
    # heartbeat timeout and then abort from C++ with a page of stack.
    print(f"aya-t5x train: error: {lost}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(2)
  if distributed.is_first_process():  # one summary per run, not one per host
    status = "stopped by SIGTERM at" if result.preempted else "finished at"
    print(f"training {status} step {result.step}: " + ", ".join(
        f"{k}={v:.4g}" for k, v in result.last_metrics.items()
        if k in ("loss", "accuracy", "tokens_per_second", "mfu")))
  return 0


def _vocabulary(args: argparse.Namespace):
  from aya_t5x import run_record
  from aya_t5x.vocab import vocabulary

  path = args.vocabulary or (None if args.task else
                             run_record.recorded_vocabulary(args.checkpoint))
  if path:
    return vocabulary.sentencepiece_vocabulary(path)
  if not args.task:
    raise CommandError("give --vocabulary SPM_MODEL or --task NAME (whose inputs vocabulary "
                       f"is used): {args.checkpoint} records no vocabulary (runs record "
                       "theirs in MODEL_DIR/vocabulary.json)")
  import seqio

  from aya_t5x import input_pipeline

  input_pipeline.import_task_modules(args.module)
  try:
    return seqio.get_mixture_or_task(args.task).output_features["inputs"].vocabulary
  except ValueError as e:
    raise CommandError(f"--task {args.task!r}: {e} (pass --module to register it)") from e


def _infer(args: argparse.Namespace) -> int:
  from aya_t5x import decoding, gin_config, inference, run_record
  from aya_t5x.checkpoints import loading
  from aya_t5x.vocab import vocabulary as vocab_lib

  loading.check_exists(args.checkpoint)
  run_record.use_recorded_languages(args.checkpoint)
  parse_gin(args)
  config = loading.model_config(args.checkpoint, gin_config.configured_model_or_none())
  vocabulary = _vocabulary(args)
  vocab_lib.check_fits_model(vocabulary, config.vocab_size)
  options = decoding.DecodingOptions(
      method=args.method, max_decode_length=args.max_decode_length,
      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
      num_beams=args.num_beams, length_penalty_alpha=args.length_penalty_alpha)
  params = loading.load_params(args.checkpoint, config)
  if args.adapters:
    from aya_t5x.checkpoints import adapters

    params, config = adapters.attach_adapters(params, config, args.adapters,
                                              base_source=args.checkpoint)
  report = inference.infer_jsonl(
      params, config, vocabulary, args.input, args.output, options,
      batch_size=args.batch_size, max_input_length=args.max_input_length,
      input_key=args.input_key, seed=args.seed)
  for why in list(report.skipped.values())[:5]:
    print(f"skipped {why}", file=sys.stderr)
  if not report.written:
    raise ValueError(
        f"no prompt of {args.input} could be read ({len(report.skipped)} line(s) skipped); "
        f"is the prompt's field --input_key {args.input_key!r}?")
  print(f"wrote {report.written} completions to {args.output}; skipped "
        f"{len(report.skipped)} line(s)")
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="aya-t5x",
      description="Multilingual instruction tuning of mT5, the Aya recipe, T5X style.")
  parser.add_argument("--verbose", action="store_true",
                      help="show the start-up messages of TensorFlow, CUDA and libtpu "
                           "(hidden where no accelerator is in use) and, on an error, its "
                           "full details; may follow the subcommand too")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  info = sub.add_parser("model-info", help="parameter count and bytes of a gin model",
                        description="Counts parameters from shapes alone (no allocation).")
  add_gin_flags(info)
  info.set_defaults(handler=_model_info)

  train = sub.add_parser(
      "train", help="fine-tune mT5 on a SeqIO task or mixture (resumes if MODEL_DIR has "
      "checkpoints)",
      description="Fine-tune mT5. Combine gin files: a model size (models/), a run\n"
                  "(runs/finetune.gin or runs/aya_recipe.gin), a mixture and a\n"
                  "partitioning preset (partitioning/).",
      formatter_class=argparse.RawDescriptionHelpFormatter)
  add_gin_flags(train)
  train.add_argument("--print_config", action="store_true",
                     help="print the resolved gin macros and exit without training")
  train.epilog = f"{train.epilog}\n\n{gin_files.run_macros_help()}"
  from aya_t5x import distributed

  distributed.add_flags(train)
  train.set_defaults(handler=_train)

  infer = sub.add_parser(
      "infer", help="JSONL prompts in, JSONL completions out, from any checkpoint",
      description="Decode prompts with a trained model. --checkpoint is a training "
                  "MODEL_DIR (latest step), a step folder, or an aya_t5x / T5X / Hugging "
                  "Face checkpoint; the model is the one it stores (a run saves "
                  "mt5_config.json), or the --gin_file model size (T5X, or to override).")
  infer.add_argument("--checkpoint", required=True)
  infer.add_argument("--adapters", metavar="RUN_DIR",
                     help="a LoRA run (or step folder) whose adapters run on --checkpoint, "
                          "the base they were trained on, without merging")
  infer.add_argument("--input", required=True, help="JSONL file, one prompt per line")
  infer.add_argument("--output", required=True, help="JSONL file to write")
  infer.add_argument("--input_key", default="inputs", help="the prompt's field")
  infer.add_argument("--vocabulary", help="SentencePiece model of the checkpoint (default: "
                     "the one a training run recorded in MODEL_DIR/vocabulary.json)")
  infer.add_argument("--task", help="a SeqIO task or mixture whose vocabulary to use")
  infer.add_argument("--module", action="append", help="module that registers --task")
  infer.add_argument("--method", default="greedy", choices=("greedy", "sample", "beam"))
  infer.add_argument("--max_decode_length", type=int, default=256)
  infer.add_argument("--temperature", type=float, default=1.0)
  infer.add_argument("--top_k", type=int, default=0)
  infer.add_argument("--top_p", type=float, default=1.0)
  infer.add_argument("--num_beams", type=int, default=4)
  infer.add_argument("--length_penalty_alpha", type=float, default=0.6)
  infer.add_argument("--batch_size", type=int, default=16)
  infer.add_argument("--max_input_length", type=int, default=512)
  infer.add_argument("--seed", type=int, default=0)
  add_gin_flags(infer)
  infer.set_defaults(handler=_infer)

  convert = sub.add_parser(
      "convert", help="convert checkpoints between Hugging Face, T5X and aya_t5x",
      description="Convert a checkpoint. With --gin_file the checkpoint must match the "
                  "gin model; without, the model is read from the checkpoint. --from "
                  "aya_t5x also takes a training MODEL_DIR (its latest step) or a step "
                  "folder (a run saves its model; one from before that needs the gin "
                  "files it was trained with).")
  convert.add_argument("--from", dest="source_format", choices=("hf", "t5x", "aya_t5x"),
                       required=True)
  convert.add_argument("--merge_adapters", metavar="RUN_DIR",
                       help="a LoRA run (or step folder) whose adapters are merged into the "
                            "source, its base, before writing")
  convert.add_argument("--to", dest="target_format", choices=("hf", "aya_t5x", "hf_peft"),
                       required=True)
  convert.add_argument("src", help="source checkpoint folder; with --from aya_t5x also a "
                       "training MODEL_DIR or a step folder")
  convert.add_argument("dst", help="destination folder (created)")
  convert.add_argument("--vocabulary", help="SentencePiece model written beside a Hugging "
                       "Face export as its tokenizer (default: the one a training run "
                       "recorded)")
  add_gin_flags(convert)
  convert.set_defaults(handler=_convert)

  # Subcommands defined beside the code they drive: each module has add_commands(sub).
  for module in COMMAND_MODULES:
    importlib.import_module(module).add_commands(sub)
  # Errors found after parsing (a misspelled flag) show the subcommand's usage.
  for command_parser in sub.choices.values():
    command_parser.set_defaults(command_parser=command_parser)
  return parser


def _unrecognised(command_parser: argparse.ArgumentParser, extra: Sequence[str]) -> str | None:
  """The error for the first left-over argument that is not a gin binding, or None."""
  for arg in extra:
    if arg.startswith("--gin."):
      continue
    flag = arg.split("=", 1)[0]
    if not flag.startswith("-"):
      return f"unrecognised argument {arg!r}"
    known = [s for s in command_parser._option_string_actions if s.startswith("--")]
    close = difflib.get_close_matches(flag, known, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (f"unrecognised argument {flag!r}{hint} (gin bindings are --gin.NAME=VALUE; "
            "--help lists the flags)")
  return None


def _register(args: argparse.Namespace) -> None:
  """Fills the registries the commands look names up in, at the top of the import graph.

  The recipe's sources and training tasks (`aya_t5x.tasks`), its weighting schemes
  (`aya_t5x.mixtures`) and, for commands that read gin, what gin files may configure
  (`aya_t5x.configurables`, which imports the trainer: two seconds, so only then). The
  evaluation sets register where the eval gin files import `aya_t5x.tasks.evaluation`.
  Library modules import none of these.
  """
  import aya_t5x.mixtures  # noqa: F401
  import aya_t5x.preference.tasks  # noqa: F401  (manifest tasks of kind "preference")
  import aya_t5x.tasks  # noqa: F401

  if hasattr(args, "gin_file"):
    import aya_t5x.configurables  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
  try:
    parser = build_parser()
  except ValueError as e:  # a data table the commands read at start (languages.csv) is bad
    print(f"aya-t5x: error: {e}", file=sys.stderr)
    return 2
  argv = list(sys.argv[1:] if argv is None else argv)
  # --verbose is a flag of the command as a whole, but users add it at the end too.
  verbose = "--verbose" in argv
  args, extra = parser.parse_known_args([a for a in argv if a != "--verbose"])
  startup.quiet_start(verbose=verbose)
  unrecognised = _unrecognised(args.command_parser, extra)
  if unrecognised:
    args.command_parser.error(unrecognised)
  _register(args)
  try:
    args.gin_bindings = split_gin_bindings(extra)
    return args.handler(args)
  except CommandError as e:
    args.command_parser.error(str(e))
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    # Library errors are written to name the file, field or binding and the fix; what
    # they were raised from (often long: a storage spec, a parser's state) is for --verbose.
    if verbose:
      # Each error of the chain in turn, oldest first: gin re-raises a configurable's
      # error with its chain suppressed, which would hide what it was raised from.
      chain: list[BaseException] = []
      error: BaseException | None = e
      while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
      for error in reversed(chain):
        traceback.print_exception(error, chain=False, file=sys.stderr)
    print(f"aya-t5x {args.command}: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
