"""The `aya-t5x` command: parses flags and gin, then calls library functions.

Heavy libraries load inside each subcommand, so `aya-t5x --help` answers at once.
Gin flags work as in T5X on every subcommand that builds a model:
`--gin_file FILE` (repeatable), `--gin.NAME=VALUE` (repeatable, applied after the
files), `--gin_search_paths DIR[,DIR]`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


class CommandError(Exception):
  """A user error with a message that says what to change; printed without a traceback."""


def add_gin_flags(parser: argparse.ArgumentParser) -> None:
  """The T5X gin flags, for every subcommand that reads gin (data commands too)."""
  parser.add_argument("--gin_file", action="append", default=[], metavar="FILE",
                      help="gin file; repeat to combine (model size, run, mixture, ...)")
  parser.add_argument("--gin_search_paths", default="", metavar="DIR[,DIR]",
                      help="extra folders where gin files and includes are looked up")
  parser.epilog = "Any --gin.NAME=VALUE flag adds a gin binding after the files."


def _split_gin_bindings(extra: Sequence[str]) -> list[str]:
  bindings = []
  for arg in extra:
    if not arg.startswith("--gin."):
      raise CommandError(f"unrecognised argument {arg!r} (gin bindings are --gin.NAME=VALUE)")
    binding = arg.removeprefix("--gin.")
    if "=" not in binding:
      raise CommandError(f"{arg!r}: a gin binding needs a value, as in --gin.NAME=VALUE")
    bindings.append(binding)
  return bindings


def _parse_gin(args: argparse.Namespace) -> None:
  from aya_t5x import gin_config

  search = [p for p in args.gin_search_paths.split(",") if p]
  gin_config.parse_gin(args.gin_file, args.gin_bindings, search)


def _model_info(args: argparse.Namespace) -> int:
  from aya_t5x import gin_config, model_info

  _parse_gin(args)
  report = model_info.parameter_report(gin_config.configured_model())
  print(model_info.format_report(report))
  return 0


def _convert(args: argparse.Namespace) -> int:
  from aya_t5x import gin_config
  from aya_t5x.checkpoints import formats

  config = None
  if args.gin_file or args.gin_bindings:
    _parse_gin(args)
    config = gin_config.configured_model()
  params, config = formats.load_params(args.src, config, fmt=args.source_format)
  formats.save_params(params, config, args.dst, fmt=args.target_format)
  print(f"wrote {args.target_format} checkpoint {args.dst} "
        f"(d_model={config.d_model}, {config.num_encoder_layers}/"
        f"{config.num_decoder_layers} layers, vocab {config.vocab_size})")
  return 0


def _train(args: argparse.Namespace) -> int:
  from aya_t5x import gin_config

  _parse_gin(args)
  result = gin_config.configured_train()
  status = "stopped by SIGTERM at" if result.preempted else "finished at"
  print(f"training {status} step {result.step}: " + ", ".join(
      f"{k}={v:.4g}" for k, v in result.last_metrics.items()
      if k in ("loss", "accuracy", "tokens_per_second", "mfu")))
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="aya-t5x",
      description="Multilingual instruction tuning of mT5, the Aya recipe, T5X style.")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

  info = sub.add_parser("model-info", help="parameter count and bytes of a gin model",
                        description="Counts parameters from shapes alone (no allocation).")
  add_gin_flags(info)
  info.set_defaults(handler=_model_info)

  train = sub.add_parser(
      "train", help="fine-tune mT5 on a SeqIO task or mixture (resumes if MODEL_DIR has "
      "checkpoints)",
      description="Fine-tune mT5. Combine gin files: a model size (models/), a run "
                  "(runs/finetune.gin or runs/aya_recipe.gin), a mixture and a "
                  "partitioning preset (partitioning/).")
  add_gin_flags(train)
  train.set_defaults(handler=_train)

  convert = sub.add_parser(
      "convert", help="convert checkpoints between Hugging Face, T5X and aya_t5x",
      description="Convert a checkpoint. With --gin_file the checkpoint must match the "
                  "gin model; without, the model is read from the checkpoint.")
  convert.add_argument("--from", dest="source_format", choices=("hf", "t5x", "aya_t5x"),
                       required=True)
  convert.add_argument("--to", dest="target_format", choices=("hf", "aya_t5x"),
                       required=True)
  convert.add_argument("src", help="source checkpoint folder")
  convert.add_argument("dst", help="destination folder (created)")
  add_gin_flags(convert)
  convert.set_defaults(handler=_convert)

  from aya_t5x.data import commands as data_commands

  data_commands.add_commands(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  try:
    args.gin_bindings = _split_gin_bindings(extra)
    return args.handler(args)
  except CommandError as e:
    parser.error(str(e))
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    # Library errors are written to name the file, field or binding and the fix.
    print(f"aya-t5x {args.command}: error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
