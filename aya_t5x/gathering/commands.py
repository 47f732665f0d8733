"""The `translate`, `retranslate`, `assessors` and `review` subcommands (wired in by `aya_t5x.cli`).

Building instruction data for a language that has none (docs/new_language_data.md):

    aya-t5x translate --input dolly.jsonl --target_languages sw --output sw/ \\
        --backend hf --model nllb-200-distilled-600M --max_per_language 3000 --register dolly_sw
    aya-t5x retranslate --input sw/ --output sw_back/ --backend hf --model nllb-200...
    aya-t5x assessors build-task --correct good.jsonl --incorrect bad.jsonl --output qual/
    aya-t5x assessors qualify --answers results.tsv --golden qual/golden.jsonl \\
        --min_accuracy 0.8 --output qual/
    aya-t5x review build-task --input sw_back/ --output review/
    aya-t5x review aggregate --votes votes.tsv --qualification qual/ --data sw_back/ \\
        --output sw_reviewed/ --register dolly_sw_reviewed

Each step writes its outputs and a report (`<step>_report.md` and `.json`); `--register
NAME` adds the output to a task manifest (`aya-t5x tasks add`), one SeqIO task per
language. Handlers raise ValueError / FileNotFoundError with the file, line or field and
the fix (the CLI prints them without a traceback).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aya_t5x.command_flags import add_gin_flags, parse_gin, uses_gin

DEFAULT_MANIFEST = "aya_tasks.json"
BACKENDS = ("aya_t5x", "hf", "dictionary")


def _csv(value: str) -> list[str]:
  return [v.strip() for v in value.split(",") if v.strip()]


# ----------------------------------------------------------------------------- shared


def _backend(args: argparse.Namespace):
  """The translation backend the flags describe."""
  from aya_t5x.gathering import translation, translation_backends

  if args.backend == "dictionary":
    if not args.dictionary:
      raise ValueError("--backend dictionary needs --dictionary FILE (JSON: {\"en-sw\": "
                       "{\"sentence\": \"translation\"}})")
    return translation.DictionaryBackend.from_file(args.dictionary)
  if not args.model:
    raise ValueError(f"--backend {args.backend} needs --model (a checkpoint or model folder)")
  if args.backend == "hf":
    codes = {}
    for item in args.language_code:
      language, sep, code = item.partition("=")
      if not sep or not language or not code:
        raise ValueError(f"--language_code {item!r}: write it as LANGUAGE=CODE, e.g. "
                         "sw=swh_Latn")
      codes[language] = code
    try:
      return translation_backends.HuggingFaceBackend(
          args.model, num_beams=args.num_beams, max_new_tokens=args.max_decode_length,
          language_codes=codes, device=args.device)
    except ImportError as e:  # the message names the packages to install
      raise ValueError(str(e)) from None
  if not args.vocabulary:
    raise ValueError("--backend aya_t5x needs --vocabulary (the SentencePiece model of the "
                     "checkpoint)")
  from aya_t5x import decoding

  config = None
  if uses_gin(args):
    from aya_t5x import gin_config

    parse_gin(args)
    config = gin_config.configured_model()
  options = decoding.DecodingOptions(method="beam" if args.num_beams > 1 else "greedy",
                                     num_beams=args.num_beams,
                                     max_decode_length=args.max_decode_length)
  return translation_backends.AyaT5XBackend.from_checkpoint(
      args.model, args.vocabulary, config=config, options=options, prompt=args.prompt)


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
  group = parser.add_argument_group("translation backend")
  group.add_argument("--backend", choices=BACKENDS, required=True,
                     help="aya_t5x: an aya_t5x/T5X/HF mT5 checkpoint prompted to translate; "
                          "hf: a local NLLB or M2M100 model (needs transformers and torch); "
                          "dictionary: exact sentence lookup in a JSON file")
  group.add_argument("--model", help="checkpoint (aya_t5x) or model folder (hf)")
  group.add_argument("--vocabulary", help="SentencePiece model of an aya_t5x checkpoint")
  group.add_argument("--prompt", default="Translate from {source} to {target}: {text}",
                     help="aya_t5x prompt; {source} and {target} are language names")
  group.add_argument("--dictionary", help="JSON {\"en-sw\": {\"sentence\": \"translation\"}}")
  group.add_argument("--language_code", action="append", default=[], metavar="LANG=CODE",
                     help="the hf model's code for a language, e.g. sw=swh_Latn (repeatable)")
  group.add_argument("--num_beams", type=int, default=1, help="1 decodes greedily")
  group.add_argument("--max_decode_length", type=int, default=256,
                     help="the most tokens of one translated sentence")
  group.add_argument("--device", default="cpu", help="torch device of the hf backend")
  group.add_argument("--batch_size", type=int, default=32, help="sentences per batch")
  group.add_argument("--no_split", action="store_true",
                     help="translate each field whole instead of sentence by sentence")
  add_gin_flags(parser)


def _add_shard_flags(parser: argparse.ArgumentParser) -> None:
  group = parser.add_argument_group("shards and hosts")
  group.add_argument("--examples_per_shard", type=int, default=1000)
  group.add_argument("--num_shards", type=int, help="instead of --examples_per_shard")
  group.add_argument("--host_index", type=int, default=0, help="this host (0-based)")
  group.add_argument("--host_count", type=int, default=1, help="hosts sharing the work")


def _add_register_flags(parser: argparse.ArgumentParser, what: str) -> None:
  group = parser.add_argument_group("registration")
  group.add_argument("--register", metavar="NAME",
                     help=f"add {what} to the task manifest as NAME (one SeqIO task "
                          "NAME.<language> per language)")
  group.add_argument("--manifest", default=DEFAULT_MANIFEST, help="task manifest (JSON)")
  group.add_argument("--replace", action="store_true", help="overwrite a task of that name")
  group.add_argument("--inputs_key", help="field of the prompt (default: the first field)")
  group.add_argument("--targets_key", help="field of the completion (default: the second)")


def _register(args: argparse.Namespace, path: Path, fields: list[str],
              languages_written: list[str]) -> None:
  """Adds an output folder or file to the manifest, one task per language."""
  if not args.register:
    return
  from aya_t5x.data import manifest as manifest_lib

  inputs_key = args.inputs_key or fields[0]
  targets_key = args.targets_key or (fields[1] if len(fields) > 1 else None)
  if targets_key is None:
    raise ValueError(f"--register needs --targets_key: the output has one text field "
                     f"({fields[0]})")
  print(manifest_lib.register_output(
      args.manifest, args.register, path, languages_written=languages_written,
      inputs_key=inputs_key, targets_key=targets_key, replace=args.replace))


def _write(out: str, name: str, report_and_markdown: tuple[dict, str]) -> None:
  from aya_t5x.gathering import translation_runs as runs

  paths = runs.write_step_report(out, name, report_and_markdown)
  print(report_and_markdown[1])
  print("wrote " + ", ".join(str(p) for p in paths.values()))


def _data_folder(path: str) -> str:
  """The data folder of a step's output folder (its `data/`), or the path itself."""
  from aya_t5x.gathering.translation_runs import DATA_DIR

  data = Path(path) / DATA_DIR
  return str(data) if data.is_dir() else path


# ----------------------------------------------------------------------------- translate


def _shard_plan(args: argparse.Namespace):
  from aya_t5x.gathering import translation_runs as runs

  return runs.ShardPlan(examples_per_shard=args.examples_per_shard, num_shards=args.num_shards,
                        host_index=args.host_index, host_count=args.host_count)


def _print_step(result) -> None:
  for _, markdown in result.reports.values():
    print(markdown)
  print("wrote " + ", ".join(str(p) for p in result.report_paths.values()))


def _translate(args: argparse.Namespace) -> int:
  from aya_t5x.gathering import translation_runs as runs

  if args.task:
    from aya_t5x import input_pipeline

    input_pipeline.import_task_modules(args.module)
  fields = _csv(args.fields)
  result = runs.translate_dataset(
      _backend(args), args.output, fields=fields, source_language=args.source_language,
      target_languages=_csv(args.target_languages), input_path=args.input, task=args.task,
      split=args.split, caps=runs.Caps(max_per_language=args.max_per_language,
                                       uncapped=tuple(args.uncapped),
                                       dataset_key=args.dataset_key, seed=args.seed),
      id_key=args.id_key, tolerant=args.tolerant, batch_size=args.batch_size,
      split_sentences=not args.no_split, shards=_shard_plan(args))
  _print_step(result)
  summary = result.summary
  if args.register:
    if not summary.complete:
      raise ValueError(f"{args.output}: {len(summary.done)} of {summary.num_shards} shards are "
                       "done; register once every host has finished")
    _register(args, Path(summary.data_dir), fields,
              [k for k, v in summary.written.items() if v])
  return 0


# ----------------------------------------------------------------------------- retranslate


def _retranslate(args: argparse.Namespace) -> int:
  from aya_t5x.gathering import roundtrip

  _print_step(roundtrip.retranslate_dataset(
      _backend(args), args.input, args.output,
      scorer=roundtrip.RoundTripScorer(args.spbleu_model), tolerant=args.tolerant,
      batch_size=args.batch_size, split_sentences=not args.no_split,
      shards=_shard_plan(args)))
  return 0


# ----------------------------------------------------------------------------- assessors


def _read_records(path: str) -> list[tuple[str, dict]]:
  from aya_t5x.gathering import translation_runs as runs

  return runs.read_input(path)[0]


def _assessors_build_task(args: argparse.Namespace) -> int:
  from aya_t5x import reporting
  from aya_t5x.gathering import crowd_files, qualification

  items, golden = qualification.build_task(
      _read_records(args.correct), _read_records(args.incorrect), source_key=args.source_key,
      translation_key=args.translation_key, seed=args.seed)
  paths = crowd_files.write_task_files(args.output, "qualification", items,
                                       qualification.TASK_COLUMNS, golden=golden)
  paths["golden"] = reporting.write_jsonl(
      Path(args.output) / "golden.jsonl",
      [{"item_id": item, "label": label} for item, label in golden.items()])
  bad = sum(v == crowd_files.BAD for v in golden.values())
  print(f"{len(items)} items ({len(items) - bad} good, {bad} bad translations); wrote "
        + ", ".join(str(p) for p in paths.values())
        + ". Keep golden.jsonl from the assessors; it scores their answers.")
  return 0


def _roster(path: str | None):
  """An `known_assessors` check from a file of ids (one a line), or None."""
  if not path:
    return None
  if not Path(path).is_file():
    raise FileNotFoundError(f"assessor list {path} not found (one assessor id a line)")
  ids = {line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()
         if line.strip()}
  return lambda assessor: None if assessor in ids else f"is not in {path}"


def _assessors_qualify(args: argparse.Namespace) -> int:
  from aya_t5x.gathering import crowd_files, qualification

  golden = qualification.read_golden(args.golden)
  answers, counts = crowd_files.read_answers(
      args.answers, fmt=args.format, item_key=args.item_key, label_key=args.label_key,
      known_items=golden, items_name=f"the golden set {args.golden}",
      known_assessors=_roster(args.assessors), tolerant=args.tolerant)
  if not answers:
    raise ValueError(f"{args.answers}: no usable answers ({counts.skipped_total} skipped)")
  scores = qualification.select(
      qualification.score_assessors(answers, golden, confidence=args.confidence),
      min_accuracy=args.min_accuracy, top_k=args.top_k, min_answers=args.min_answers,
      by=args.by)
  settings = {"answers": args.answers, "golden": args.golden, "min_accuracy": args.min_accuracy,
              "top_k": args.top_k, "min_answers": args.min_answers, "by": args.by,
              "confidence": args.confidence}
  _write(args.output, "qualification",
         qualification.qualification_report(scores, counts, golden=golden, settings=settings))
  selected = [s.assessor for s in scores if s.selected]
  path = Path(args.output) / "selected_assessors.txt"
  path.write_text("".join(f"{a}\n" for a in selected), encoding="utf-8")
  print(f"selected {len(selected)} of {len(scores)} assessors: {path}")
  return 0


# ----------------------------------------------------------------------------- review


def _review_build_task(args: argparse.Namespace) -> int:
  from aya_t5x.gathering import crowd_files, review, roundtrip

  records = roundtrip.ranked(roundtrip.read_scored(_data_folder(args.input)), by=args.rank_by)
  items, columns = review.build_review_task(records, limit=args.limit)
  paths = crowd_files.write_task_files(args.output, "review", items, columns)
  print(f"{len(items)} review items, worst round trip ({args.rank_by}) first; wrote "
        + ", ".join(str(p) for p in paths.values()))
  return 0


def _review_aggregate(args: argparse.Namespace) -> int:
  from aya_t5x import reporting
  from aya_t5x.gathering import crowd_files, qualification, review, roundtrip

  skills = qualification.read_qualification(args.qualification)
  records = roundtrip.read_scored(_data_folder(args.data))
  ids = {str(r["id"]) for r in records}

  def check(assessor: str) -> str | None:
    if assessor not in skills:
      return f"has no qualification result in {args.qualification}"
    if not skills[assessor].selected and not args.allow_unselected:
      return "did not pass the qualification (--allow_unselected counts them anyway)"
    return None

  answers, counts = crowd_files.read_answers(
      args.votes, fmt=args.format, item_key=args.item_key, label_key=args.label_key,
      known_items=ids, items_name=f"the data {args.data}", known_assessors=check,
      tolerant=args.tolerant)
  verdicts = review.aggregate(answers, skills, method=args.method, threshold=args.threshold)
  baseline = review.aggregate(answers, skills, method="majority", threshold=args.threshold)
  kept, dropped = review.apply_verdicts(records, verdicts, unreviewed=args.unreviewed)
  out = Path(args.output)
  data = reporting.write_jsonl(out / "data" / "reviewed.jsonl", kept)
  reporting.write_jsonl(out / "dropped.jsonl", dropped)
  reporting.write_jsonl(out / "verdicts.jsonl", [v.to_json() for v in verdicts.values()])
  settings = {"votes": args.votes, "qualification": args.qualification, "method": args.method,
              "threshold": args.threshold, "unreviewed": args.unreviewed}
  _write(args.output, "review", review.review_report(
      records, kept, dropped, verdicts, skills, counts, baseline=baseline, settings=settings))
  if args.register:
    if not kept:
      raise ValueError("nothing to register: every example was dropped (see the report)")
    _register(args, data.parent, list(records[0]["original"]),
              sorted({r["language"] for r in kept}))
  return 0


# ----------------------------------------------------------------------------- wiring


def _answer_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--format", default="auto",
                      choices=("auto", "jsonl", "csv", "tsv", "toloka", "mturk"),
                      help="answers file format (detected from its header by default)")
  parser.add_argument("--item_key", default="item_id",
                      help="the item id field (Toloka INPUT:<key>, MTurk Input.<key>)")
  parser.add_argument("--label_key", default="label",
                      help="the answer field (Toloka OUTPUT:<key>, MTurk Answer.<key>)")
  parser.add_argument("--tolerant", action="store_true",
                      help="skip and count bad rows instead of failing")


def add_commands(subparsers: Any) -> None:
  """Adds `translate`, `retranslate`, `assessors` and `review` to an argparse subparsers."""
  translate = subparsers.add_parser(
      "translate", help="translate a dataset or SeqIO task into other languages, in shards",
      description="Sentence by sentence, length-sorted batches; <unk>, empty and copied "
                  "outputs dropped and counted; per-language caps with a seeded sample per "
                  "language; resumable shards, several hosts (docs/new_language_data.md).")
  source = translate.add_argument_group("input")
  source.add_argument("--input", help="JSONL/parquet/arrow file or folder")
  source.add_argument("--task", help="a SeqIO task instead of --input")
  source.add_argument("--module", action="append", help="module that registers --task")
  source.add_argument("--split", default="train", help="split of --task")
  source.add_argument("--fields", default="inputs,targets", help="text fields to translate")
  source.add_argument("--id_key", help="field with a unique id (else the record's position)")
  source.add_argument("--source_language", default="en")
  source.add_argument("--target_languages", required=True, help="comma-separated codes")
  source.add_argument("--tolerant", action="store_true",
                      help="skip and count malformed records instead of failing")
  caps = translate.add_argument_group("caps (the Aya collection: 3000, Dolly uncapped)")
  caps.add_argument("--max_per_language", type=int,
                    help="at most this many examples per language and dataset")
  caps.add_argument("--uncapped", action="append", default=[], metavar="PATTERN",
                    help="datasets never capped (name substring, e.g. dolly; repeatable)")
  caps.add_argument("--dataset_key", help="field naming each record's dataset")
  caps.add_argument("--seed", type=int, default=0)
  translate.add_argument("--output", required=True, help="output folder (resumed if it exists)")
  _add_backend_flags(translate)
  _add_shard_flags(translate)
  _add_register_flags(translate, "the translations")
  translate.set_defaults(handler=_translate)

  retranslate = subparsers.add_parser(
      "retranslate", help="translate translations back and score each round trip",
      description="chrF++ and spBLEU of each retranslation against its original, a pre-screen "
                  "that ranks examples for review (aya-t5x review build-task).")
  retranslate.add_argument("--input", required=True, help="output folder of aya-t5x translate")
  retranslate.add_argument("--output", required=True, help="output folder (resumed if it exists)")
  retranslate.add_argument("--spbleu_model",
                           help="local FLORES-200 SentencePiece model (flores200sacrebleuspm); "
                                "without it spBLEU falls back to 13a/char with a warning")
  retranslate.add_argument("--tolerant", action="store_true")
  _add_backend_flags(retranslate)
  _add_shard_flags(retranslate)
  retranslate.set_defaults(handler=_retranslate)

  assessors = subparsers.add_parser("assessors", help="qualify assessors (Filtering I)")
  actions = assessors.add_subparsers(dest="assessors_command", required=True, metavar="ACTION")
  build = actions.add_parser(
      "build-task", help="a task of correct and incorrect translations to classify",
      description="Writes qualification.jsonl, qualification_toloka.tsv, "
                  "qualification_mturk.csv and the answer key golden.jsonl.")
  build.add_argument("--correct", required=True, help="records with correct translations")
  build.add_argument("--incorrect", required=True, help="records with incorrect translations")
  build.add_argument("--source_key", default="source")
  build.add_argument("--translation_key", default="translation")
  build.add_argument("--seed", type=int, default=0, help="shuffles the items")
  build.add_argument("--output", required=True)
  build.set_defaults(handler=_assessors_build_task)
  qualify = actions.add_parser(
      "qualify", help="score assessors' answers against the golden set and select the best",
      description="Accuracy with a Wilson interval per assessor; selection by a threshold "
                  "on the interval's lower bound (or accuracy), by top-k, or both.")
  qualify.add_argument("--answers", required=True,
                       help="CSV, TSV, JSONL, Toloka results TSV or MTurk batch results CSV")
  qualify.add_argument("--golden", required=True, help="golden.jsonl from build-task")
  qualify.add_argument("--assessors", help="file of known assessor ids, one a line")
  qualify.add_argument("--min_accuracy", type=float)
  qualify.add_argument("--top_k", type=int)
  qualify.add_argument("--min_answers", type=int, default=1)
  qualify.add_argument("--by", default="low", choices=("low", "accuracy"),
                       help="what --min_accuracy and the ranking look at")
  qualify.add_argument("--confidence", type=float, default=0.95)
  qualify.add_argument("--output", required=True)
  _answer_flags(qualify)
  qualify.set_defaults(handler=_assessors_qualify)

  review = subparsers.add_parser("review", help="review translated data (Filtering II)")
  actions = review.add_subparsers(dest="review_command", required=True, metavar="ACTION")
  task = actions.add_parser(
      "build-task", help="items showing original, translation and retranslation",
      description="Writes review.jsonl, review_toloka.tsv and review_mturk.csv, the worst "
                  "round trips first.")
  task.add_argument("--input", required=True, help="output folder of aya-t5x retranslate")
  task.add_argument("--output", required=True)
  task.add_argument("--limit", type=int, help="only the first N (the worst round trips)")
  task.add_argument("--rank_by", default="chrf", choices=("chrf", "spbleu"))
  task.set_defaults(handler=_review_build_task)
  aggregate = actions.add_parser(
      "aggregate", help="aggregate votes by assessor skill (crowd-kit) and filter the data",
      description="Writes data/reviewed.jsonl (kept), dropped.jsonl, verdicts.jsonl and "
                  "review_report.md/.json (what was dropped and why).")
  aggregate.add_argument("--votes", required=True, help="the review answers file")
  aggregate.add_argument("--qualification", required=True,
                         help="qualification output folder or its qualification_report.json")
  aggregate.add_argument("--data", required=True, help="output folder of aya-t5x retranslate")
  aggregate.add_argument("--output", required=True)
  aggregate.add_argument("--method", default="dawid_skene",
                         choices=("dawid_skene", "glad", "weighted_majority", "mmsr",
                                  "majority"))
  aggregate.add_argument("--threshold", type=float, default=0.5,
                         help="keep an example when P(good) reaches this")
  aggregate.add_argument("--unreviewed", default="drop", choices=("drop", "keep"),
                         help="what happens to examples nobody voted on")
  aggregate.add_argument("--allow_unselected", action="store_true",
                         help="count votes of assessors who did not pass qualification")
  _answer_flags(aggregate)
  _add_register_flags(aggregate, "the kept examples")
  aggregate.set_defaults(handler=_review_aggregate)
