"""The `annotate` subcommand of `aya-t5x` (wired in by `aya_t5x.cli`).

    aya-t5x annotate serve --db annotations.db [--host 127.0.0.1 --port 8000]
    aya-t5x annotate invite --db annotations.db --language sw --count 50 [--output links.txt]
    aya-t5x annotate import pairs.jsonl --db annotations.db --language sw
    aya-t5x annotate export --db annotations.db --output aya_dataset.jsonl [--register NAME]

Errors are ValueError / FileNotFoundError with the file, line or field and the fix (the
CLI prints them without a traceback).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

DEFAULT_DB = "annotations.db"


def _limits(args: argparse.Namespace):
  from aya_t5x.annotation import forms

  return forms.Limits(max_field_chars=args.max_field_chars, max_body_bytes=args.max_body_bytes)


def _serve(args: argparse.Namespace) -> int:
  from aya_t5x.annotation import accounts, server

  policy = accounts.LoginPolicy(session_s=args.session_hours * 3600)
  hosts = tuple(h.strip() for h in (args.allowed_hosts or "").split(",") if h.strip())
  config = server.ServerConfig(db=args.db, host=args.host, port=args.port,
                               public_url=args.public_url, allowed_hosts=hosts,
                               limits=_limits(args), secure_cookies=args.secure_cookies,
                               policy=policy, pool_size=args.pool_size,
                               keep_alive_s=args.keep_alive_s,
                               body_timeout_s=args.body_timeout_s,
                               max_connections=args.max_connections)
  server.serve(config, announce=lambda line: print(line, flush=True))
  return 0


def _invite(args: argparse.Namespace) -> int:
  from aya_t5x.annotation import accounts, database, forms
  from aya_t5x.annotation.account_routes import invitation_link

  if args.user is None and args.language is None:
    raise ValueError("annotate invite: give --language (the invitees' language), or --user "
                     "ID to let an existing account set its password")
  language = forms.check_language(args.language).code if args.language else ""
  with database.Database(args.db) as db:
    tokens = accounts.Accounts(db).create_invitations(
        created_by=f"cli:{args.created_by}", language=language, count=args.count,
        role=args.role, user_id=args.user)
  links = "".join(invitation_link(args.url, t) + "\n" for t in tokens)
  if args.output:
    # The links are passwords until used: a file only its owner can read.
    fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      f.write(links)
    print(f"wrote {len(tokens)} invitation link(s) to {args.output}")
  else:
    print(links, end="")
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
  from aya_t5x.data import manifest as manifest_lib

  print(manifest_lib.register_output(manifest, name, output, languages_written=codes,
                                     language_key="language_code", replace=replace))


def _export(args: argparse.Namespace) -> int:
  from aya_t5x.annotation import export
  from aya_t5x.annotation.store import Store

  if "://" not in args.db and not Path(args.db).is_file():
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
  """Adds `annotate {serve,invite,import,export}` to an argparse subparsers object."""
  annotate = subparsers.add_parser(
      "annotate", help="the annotation web app: serve it, seed it, export the dataset",
      description="Community annotation as in the Aya Dataset (docs/annotation.md).")
  actions = annotate.add_subparsers(dest="annotate_command", required=True, metavar="ACTION")

  serve = actions.add_parser(
      "serve", help="run the web app",
      description="Contributors join through invitations (aya-t5x annotate invite), log in "
                  "with a password, write pairs, re-annotate, vote and rate. Ctrl-C stops "
                  "it; everything saved is in --db. Several processes (on several machines) "
                  "can serve one PostgreSQL database.")
  serve.add_argument("--db", default=DEFAULT_DB,
                     help="SQLite file (created if new) or postgresql://user:pass@host/db")
  serve.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (0.0.0.0 for every interface)")
  serve.add_argument("--port", type=int, default=8000, help="port (0 picks a free one)")
  serve.add_argument("--public_url",
                     help="the address people open, e.g. https://annotate.example.org: "
                          "invitation links are built on it (never on the Host header)")
  serve.add_argument("--allowed_hosts",
                     help="comma-separated Host names served (e.g. annotate.example.org, "
                          "*.example.org); others get 400. Default: --public_url's host, "
                          "127.0.0.1 and localhost")
  serve.add_argument("--keep_alive_s", type=float, default=5.0,
                     help="close a connection idle for this long")
  serve.add_argument("--body_timeout_s", type=float, default=30.0,
                     help="a form must arrive within this long (else 408)")
  serve.add_argument("--max_connections", type=int, default=1000,
                     help="connections and requests at once beyond which uvicorn answers 503")
  serve.add_argument("--secure_cookies", action="store_true",
                     help="always mark cookies Secure (they are anyway on requests that "
                          "arrive over HTTPS, also through a proxy on this machine that sets "
                          "X-Forwarded-Proto)")
  serve.add_argument("--session_hours", type=float, default=12.0,
                     help="how long a login lasts")
  serve.add_argument("--pool_size", type=int, default=10,
                     help="database connections this process keeps open")
  _add_limit_flags(serve)
  serve.set_defaults(handler=_serve)

  invite = actions.add_parser(
      "invite", help="issue one-time sign-up links (or a password link for an account)",
      description="Prints (or writes to --output) one-time links: each lets one person "
                  "choose a user id and a password, in --language with --role. With --user, "
                  "one link that sets that existing account's password (accounts migrated "
                  "from the password-less app, forgotten passwords). Links expire after 14 "
                  "days.")
  invite.add_argument("--db", default=DEFAULT_DB,
                      help="SQLite file or postgresql:// URL")
  invite.add_argument("--language", help="the invitees' language (code or name)")
  invite.add_argument("--count", type=int, default=1, help="how many links")
  invite.add_argument("--role", default="contributor", choices=("contributor", "lead", "admin"),
                      help="lead: reviews, invites and exports their language; admin: all")
  invite.add_argument("--user", help="an existing account that is to set its password")
  invite.add_argument("--url", default="http://127.0.0.1:8000",
                      help="the app's public address, as the invitees open it")
  invite.add_argument("--output", help="write the links to this file (mode 600) instead")
  invite.add_argument("--created_by", default=os.environ.get("USER", "admin"),
                      help="who issues them (for the audit table)")
  invite.set_defaults(handler=_invite)

  seed = actions.add_parser(
      "import", help="seed the re-annotation queues with existing pairs",
      description="Adds the pairs of a JSONL/parquet/arrow file or folder to the "
                  "re-annotation queues of their language; pairs already there are not "
                  "added twice.")
  seed.add_argument("path", help="data file or folder")
  seed.add_argument("--db", default=DEFAULT_DB, help="SQLite file or postgresql:// URL")
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
  out.add_argument("--db", default=DEFAULT_DB, help="SQLite file or postgresql:// URL")
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
