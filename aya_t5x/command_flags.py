"""The flag plumbing every command module shares: gin flags, their parsing, the user error.

Command modules (`aya_t5x/*/commands.py`, `compile_command`) and `aya_t5x.cli` import this
module; it imports none of them, so no command module depends on `cli`.

Gin flags work as in T5X on every subcommand that reads gin: `--gin_file FILE`
(repeatable), `--gin.NAME=VALUE` (repeatable, applied after the files),
`--gin_search_paths DIR[,DIR]`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from aya_t5x import gin_config


class CommandError(Exception):
  """A user error with a message that says what to change; printed without a traceback."""


def add_gin_flags(parser: argparse.ArgumentParser) -> None:
  """The T5X gin flags, for every subcommand that reads gin (data commands too)."""
  parser.add_argument("--gin_file", action="append", default=[], metavar="FILE",
                      help="gin file; repeat to combine (model size, run, mixture, ...)")
  parser.add_argument("--gin_search_paths", default="", metavar="DIR[,DIR]",
                      help="extra folders where gin files and includes are looked up")
  parser.epilog = "Any --gin.NAME=VALUE flag adds a gin binding after the files."


def split_gin_bindings(extra: Sequence[str]) -> list[str]:
  """The `NAME=VALUE` bindings of the `--gin.NAME=VALUE` arguments argparse left over."""
  bindings = []
  for arg in extra:
    if not arg.startswith("--gin."):
      raise CommandError(f"unrecognised argument {arg!r} (gin bindings are --gin.NAME=VALUE)")
    binding = arg.removeprefix("--gin.")
    if "=" not in binding:
      raise CommandError(f"{arg!r}: a gin binding needs a value, as in --gin.NAME=VALUE")
    bindings.append(binding)
  return bindings


def gin_search_paths(args: argparse.Namespace) -> list[str]:
  """The folders of `--gin_search_paths DIR[,DIR]` (empty entries dropped)."""
  return [p for p in getattr(args, "gin_search_paths", "").split(",") if p]


def uses_gin(args: argparse.Namespace) -> bool:
  """Whether the command line gave any gin file or binding."""
  return bool(getattr(args, "gin_file", None) or getattr(args, "gin_bindings", None))


def parse_gin(args: argparse.Namespace) -> None:
  """Parses the command line's gin files and bindings (see `aya_t5x.gin_config`)."""
  gin_config.parse_gin(getattr(args, "gin_file", []), getattr(args, "gin_bindings", []),
                       gin_search_paths(args))
