"""The `annotate` subcommand of `aya-t5x` (wired in by `aya_t5x.cli`).

    aya-t5x annotate serve --db annotations.db [--host 127.0.0.1 --port 8000]
    aya-t5x annotate import pairs.jsonl --db annotations.db --language sw
    aya-t5x annotate export --db annotations.db --output aya_dataset.jsonl [--register NAME]

Errors are ValueError / FileNotFoundError with the file, line or field and the fix (the
CLI prints them without a traceback).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_DB = "annotations.db"


def _limits(args: argparse.Namespace):
  from aya_t5x.annotation import forms

  return forms.Limits(max_field_chars=args.max_field_chars, max_body_bytes=args.max_body_bytes)


def _serve(args: argparse.Namespace) -> int:
  from aya_t5x.annotation import server

  config = server.ServerConfig(db=args.db, host=args.host, port=args.port,
                               limits=_limits(args), secure_cookies=args.secure_cookies)
  server.serve(config, announce=lambda line: print(line, flush=True))
  return 0


def _import(args: argparse.Namespace) -> int:
  from aya_t5x.annotation import seeds
  from aya_t5x.annotation.store import Store

  if not Path(args.path).exists() and "://" not in args.path:
    raise FileNotFoundError(f"{args.path}: no such file or folder of pairs to import")
  with Store(args.db) as store:
    report = seeds.import_seeds(
        store, args.path, language=args.language, language_key=args.language_key,
        inputs_key=args.inputs_key, targets_key=args.targets_key, tolerant=args.tolerant,
        limits=_limits(args))
  print(report.format())
  return 0


def _register(name: str, output: Path, manifest: str, replace: bool,
              codes: list[str]) -> None:
  from aya_t5x.data import registration

  print(registration.register_output(manifest, name, output, languages_written=codes,
                                     language_key="language_code", replace=replace))


def _export(args: argparse.Namespace) -> int:
  from aya_t5x.annotation import export
  from aya_t5x.annotation.store import Store

  if not Path(args.db).is_file():
    raise FileNotFoundError(f"{args.db}: no annotation database here (aya-t5x annotate serve "
                            "creates one)")
  rules = export.ExportRules(min_edit_distance=args.min_edit_distance,
                             min_language_contributions=args.min_language_contributions,
                             min_votes=args.min_votes)
  with Store(args.db) as store:
    result = export.build_export(store, rules)
  paths = export.write_export(result, args.output)
  print(export.format_markdown(result.report))
  print("wrote " + ", ".join(str(p) for p in paths.values()))
  if args.register:
    if not result.records:
      raise ValueError(f"{args.output}: nothing to register, no language reached "
                       f"{rules.min_language_contributions} contributions (see the report; "
                       "--min_language_contributions lowers the bar for a trial run)")
    codes = sorted({r["language_code"] for r in result.records})
    _register(args.register, Path(args.output), args.manifest, args.replace, codes)
  return 0


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--max_field_chars", type=int, default=8000,
                      help="the most characters a prompt or completion may have")
  parser.add_argument("--max_body_bytes", type=int, default=None,
                      help="the most bytes of one form submission (by default enough for "
                           "two full fields)")


def add_commands(subparsers: Any) -> None:
  """Adds `annotate {serve,import,export}` to an argparse subparsers object."""
  annotate = subparsers.add_parser(
      "annotate", help="the annotation web app: serve it, seed it, export the dataset",
      description="Community annotation as in the Aya Dataset (docs/annotation.md).")
  actions = annotate.add_subparsers(dest="annotate_command", required=True, metavar="ACTION")

  serve = actions.add_parser(
      "serve", help="run the web app",
      description="Contributors log in with a user id (no password: run it for a trusted "
                  "team or behind an authenticating proxy), write pairs, re-annotate, vote "
                  "and rate. Ctrl-C stops it; everything saved is in --db.")
  serve.add_argument("--db", default=DEFAULT_DB, help="SQLite database (created if new)")
  serve.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (0.0.0.0 for every interface)")
  serve.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
  serve.add_argument("--secure_cookies", action="store_true",
                     help="mark the login cookie Secure (when served over HTTPS)")
  _add_limit_flags(serve)
  serve.set_defaults(handler=_serve)

  seed = actions.add_parser(
      "import", help="seed the re-annotation queues with existing pairs",
      description="Adds the pairs of a JSONL/parquet/arrow file or folder to the "
                  "re-annotation queues of their language; pairs already there are not "
                  "added twice.")
  seed.add_argument("path", help="data file or folder")
  seed.add_argument("--db", default=DEFAULT_DB)
  seed.add_argument("--language", help="language of every pair: any code or name")
  seed.add_argument("--language_key", help="field holding each pair's language instead")
  seed.add_argument("--inputs_key", default="inputs", help="field of the prompt")
  seed.add_argument("--targets_key", default="targets", help="field of the completion")
  seed.add_argument("--tolerant", action="store_true",
                    help="skip and count bad records instead of stopping")
  _add_limit_flags(seed)
  seed.set_defaults(handler=_import)

  out = actions.add_parser(
      "export", help="write the Aya Dataset schema with the inclusion rules, and a report",
      description="Keeps every original, re-annotations with an edit distance of at least "
                  "--min_edit_distance, and languages with at least "
                  "--min_language_contributions contributions. Writes OUTPUT, "
                  "OUTPUT.report.json and OUTPUT.report.md (approval ratios, contributor "
                  "scores, what was dropped).")
  out.add_argument("--db", default=DEFAULT_DB)
  out.add_argument("--output", required=True, help="JSONL file to write")
  out.add_argument("--min_edit_distance", type=int, default=5)
  out.add_argument("--min_language_contributions", type=int, default=50)
  out.add_argument("--min_votes", type=int, default=20,
                   help="votes a language needs before its approval ratio is reported")
  out.add_argument("--register", metavar="NAME",
                   help="also register the export as SeqIO task NAME (task manifest)")
  out.add_argument("--manifest", default="aya_tasks.json", help="task manifest (JSON)")
  out.add_argument("--replace", action="store_true",
                   help="overwrite a task NAME that points to another file")
  out.set_defaults(handler=_export)
