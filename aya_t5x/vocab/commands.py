"""The `vocab` subcommands of `aya-t5x` (wired in by `aya_t5x.cli`).

    aya-t5x vocab report --vocabulary M.model --text en=en.txt --text dv=dv.txt --output DIR
    aya-t5x vocab report --vocabulary M.model --task my_task [--manifest aya_tasks.json]
    aya-t5x vocab train --text a.txt [--text b.txt] --output M.model [--vocab_size 8000]
    aya-t5x vocab extend --vocabulary BASE.model --text dv.txt --pieces 4000 --output NEW.model
    aya-t5x vocab resize-checkpoint --checkpoint OLD --old_vocabulary BASE.model
        --new_vocabulary NEW.model --output DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aya_t5x.command_flags import CommandError


def _language_files(values: list[str]) -> dict[str, list[str]]:
  """`LANG=FILE` flags (a bare FILE is keyed by its stem), grouped by language."""
  texts: dict[str, list[str]] = {}
  for value in values:
    language, sep, path = value.partition("=")
    if not sep:
      language, path = Path(value).stem, value
    if not language or not path:
      raise CommandError(f"--text {value!r}: give LANG=FILE, e.g. --text dv=dhivehi.txt")
    texts.setdefault(language, []).append(path)
  return texts


def _task_texts(args: argparse.Namespace, vocabulary) -> dict[str, list[str]]:
  """Inputs and targets of each `--task [LANG=]NAME` (its --split, --max_examples each)."""
  import seqio

  from aya_t5x import input_pipeline

  input_pipeline.import_task_modules(args.module)
  if args.manifest:
    from aya_t5x.data import manifest

    manifest.load_manifest(args.manifest, vocabulary)
  texts: dict[str, list[str]] = {}
  for value in args.task:
    language, sep, name = value.partition("=")
    if not sep:
      language, name = value, value
    try:
      task = seqio.get_mixture_or_task(name)
    except ValueError as e:
      raise CommandError(f"--task {name!r}: {e} (pass --module or --manifest to register "
                         "it)") from e
    dataset = task.get_dataset(None, split=args.split, shuffle=False, use_cached=False)
    lines = texts.setdefault(language, [])
    for count, example in enumerate(dataset.as_numpy_iterator()):
      if count == args.max_examples:
        break
      for key in ("inputs_pretokenized", "targets_pretokenized"):
        if key in example:
          lines.append(example[key].decode("utf-8"))
    if not lines:
      raise CommandError(f"--task {name!r}: split {args.split!r} gave no text "
                         "(inputs_pretokenized / targets_pretokenized).")
  return texts


def _report(args: argparse.Namespace) -> int:
  from aya_t5x.vocab import coverage

  if not args.text and not args.task:
    raise CommandError("give --text LANG=FILE (repeatable) or --task NAME")
  processor = coverage.load_processor(args.vocabulary)
  texts = {language: [line for f in files for line in coverage.read_lines(f)]
           for language, files in _language_files(args.text).items()}
  if args.task:
    from aya_t5x.vocab import vocabulary

    texts.update(_task_texts(args, vocabulary.sentencepiece_vocabulary(args.vocabulary)))
  report = coverage.coverage_report(processor, texts)
  paths = coverage.write_coverage_report(report, args.output, vocabulary=args.vocabulary)
  for language, entry in report.items():
    print(coverage.summary_line(language, entry))
  print(f"wrote {', '.join(str(p) for p in paths.values())}")
  return 0


def _train(args: argparse.Namespace) -> int:
  from aya_t5x.vocab import coverage, vocabulary

  path = vocabulary.train_sentencepiece(
      args.text, args.output, vocab_size=args.vocab_size, model_type=args.model_type,
      character_coverage=args.character_coverage, byte_fallback=args.byte_fallback)
  processor = coverage.load_processor(path)
  print(f"wrote {path}: {processor.get_piece_size()} pieces ({args.model_type}; pad 0, "
        "eos 1, unk 2, no bos)")
  return 0


def _extend(args: argparse.Namespace) -> int:
  from aya_t5x.vocab import coverage, extension

  held_out = args.held_out or []
  lines = {"text": [line for f in args.text for line in coverage.read_lines(f)]}
  if held_out:
    lines["held-out"] = [line for f in held_out for line in coverage.read_lines(f)]
  before = {k: coverage.measure(coverage.load_processor(args.vocabulary), v)
            for k, v in lines.items()}
  result = extension.extend_vocabulary(args.vocabulary, args.text, args.output,
                                       pieces=args.pieces,
                                       only_new_characters=args.only_new_characters)
  after = {k: coverage.measure(coverage.load_processor(result.path), v)
           for k, v in lines.items()}
  print(f"wrote {result.path}: {result.base_pieces} + {len(result.new_pieces)} pieces "
        f"({result.model_type}; {result.new_characters} new character(s)); ids 0-"
        f"{result.base_pieces - 1} unchanged")
  for name in lines:
    b, a = before[name].as_dict(), after[name].as_dict()
    print(f"  {name}: before {coverage.summary_line('', b).lstrip(': ')}")
    print(f"  {name}: after  {coverage.summary_line('', a).lstrip(': ')}")
  if len(result.new_pieces) < args.pieces:
    print(f"note: the text gave {len(result.new_pieces)} new pieces, fewer than --pieces "
          f"{args.pieces}; more text gives more.")
  print(f"grow a checkpoint to match: aya-t5x vocab resize-checkpoint --checkpoint OLD "
        f"--old_vocabulary {args.vocabulary} --new_vocabulary {result.path} --output NEW_DIR")
  return 0


def _resize(args: argparse.Namespace) -> int:
  from aya_t5x.checkpoints import resize

  config = None
  if args.gin_file or args.gin_bindings:
    from aya_t5x import gin_config
    from aya_t5x.command_flags import parse_gin

    parse_gin(args)
    config = gin_config.configured_model()
  result = resize.resize_checkpoint(
      args.checkpoint, args.output, old_vocabulary=args.old_vocabulary,
      new_vocabulary=args.new_vocabulary, source_format=args.source_format,
      target_format=args.target_format, config=config)
  for line in resize.summary(result):
    print(line)
  return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
  """Adds `vocab` and its subcommands to the `aya-t5x` parser."""
  from aya_t5x.command_flags import add_gin_flags

  vocab = subparsers.add_parser(
      "vocab", help="SentencePiece vocabularies: coverage report, training, extension, "
      "checkpoint resize", description="Measure how well a vocabulary writes a language, "
      "train one, extend one with a new language's pieces, and grow a checkpoint to match "
      "(docs/vocabulary.md).")
  sub = vocab.add_subparsers(dest="vocab_command", required=True, metavar="SUBCOMMAND")

  report = sub.add_parser(
      "report", help="pieces per word, unknown share and uncovered characters per language",
      description="Writes OUTPUT/vocab_report.md, .json (keyed by language) and .png.")
  report.add_argument("--vocabulary", required=True, help="SentencePiece model file")
  report.add_argument("--text", action="append", default=[], metavar="LANG=FILE",
                      help="UTF-8 text, one sentence a line; repeat per language (en or eng "
                           "gives the ratio to English)")
  report.add_argument("--task", action="append", default=[], metavar="[LANG=]NAME",
                      help="a registered SeqIO task or mixture: its inputs and targets")
  report.add_argument("--module", action="append", help="module that registers --task")
  report.add_argument("--manifest", help="task manifest (aya-t5x tasks add) holding --task")
  report.add_argument("--split", default="train", help="the --task split to read")
  report.add_argument("--max_examples", type=int, default=10_000,
                      help="examples read per --task")
  report.add_argument("--output", required=True, help="folder for the report files")
  report.set_defaults(handler=_report)

  train = sub.add_parser(
      "train", help="train a SentencePiece model with T5's ids (pad 0, eos 1, unk 2)",
      description="Trains a SentencePiece model the way the demo does: T5 ids (pad 0, "
                  "eos 1, unk 2, no bos), deterministic (one thread, all sentences).")
  train.add_argument("--text", action="append", required=True, metavar="FILE",
                     help="UTF-8 text, one sentence a line; repeatable")
  train.add_argument("--output", required=True, help="the .model file to write")
  train.add_argument("--vocab_size", type=int, default=8000,
                     help="at most this many pieces (fewer on a small text)")
  train.add_argument("--model_type", default="unigram", choices=("unigram", "bpe"))
  train.add_argument("--character_coverage", type=float, default=1.0)
  train.add_argument("--byte_fallback", action="store_true",
                     help="spell unseen characters as bytes (256 more pieces)")
  train.set_defaults(handler=_train)

  extend = sub.add_parser(
      "extend", help="append pieces learnt from new text to a vocabulary (old ids kept)",
      description="Learns up to --pieces pieces for the text (every character the base "
                  "lacks among them) and appends them to the base model's proto; prints "
                  "the coverage before and after.")
  extend.add_argument("--vocabulary", required=True, help="the base SentencePiece model")
  extend.add_argument("--text", action="append", required=True, metavar="FILE",
                      help="UTF-8 text in the new language, one sentence a line; repeatable")
  extend.add_argument("--pieces", type=int, required=True, help="new pieces to add (at most)")
  extend.add_argument("--output", required=True, help="the extended .model file to write")
  extend.add_argument("--held_out", action="append", metavar="FILE",
                      help="text kept out of the extension, measured before and after too")
  extend.add_argument("--only_new_characters", action="store_true",
                      help="add only pieces holding a character the base cannot write, so "
                           "text the base covers encodes exactly as before")
  extend.set_defaults(handler=_extend)

  resize = sub.add_parser(
      "resize-checkpoint", help="grow a checkpoint's embedding and output layer to an "
      "extended vocabulary",
      description="New rows start as the mean of the rows of the pieces the old "
                  "vocabulary splits them into; old rows are copied exactly. Reads "
                  "aya_t5x (a run too), T5X and Hugging Face checkpoints; writes parameters "
                  "only (fine-tuning starts a fresh optimizer state).")
  resize.add_argument("--checkpoint", required=True,
                      help="checkpoint folder, training MODEL_DIR or step folder")
  resize.add_argument("--old_vocabulary", required=True,
                      help="the vocabulary the checkpoint was trained with")
  resize.add_argument("--new_vocabulary", required=True,
                      help="its extension (aya-t5x vocab extend)")
  resize.add_argument("--output", required=True, help="folder to write (new)")
  resize.add_argument("--from", dest="source_format", choices=("aya_t5x", "hf", "t5x"),
                      help="the checkpoint's format (default: detected)")
  resize.add_argument("--to", dest="target_format", choices=("aya_t5x", "hf", "t5x"),
                      help="the format to write (default: the checkpoint's)")
  add_gin_flags(resize)
  resize.set_defaults(handler=_resize)
