"""The flag plumbing every command module shares: gin flags, their parsing, the user error.

Command modules (`aya_t5x/*/commands.py`, `compile_command`) and `aya_t5x.cli` import this
module; it imports none of them, so no command module depends on `cli`.

Gin flags work as in T5X on every subcommand that reads gin: `--gin_file FILE`
(repeatable), `--gin.NAME=VALUE` (repeatable, applied after the files),
`--gin_search_paths DIR[,DIR]`.
"""

from __future__ import annotations

import argparse
import re
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
  """The `NAME=VALUE` bindings of the `--gin.NAME=VALUE` arguments argparse left over.

  Each value is parsed as gin will parse it, so that a bad one is named by its flag: above
  all a string whose inner quotes the shell removed (`--gin.MODEL_DIR=/tmp/x`).
  """
  bindings = []
  for arg in extra:
    if not arg.startswith("--gin."):
      raise CommandError(f"unrecognised argument {arg!r} (gin bindings are --gin.NAME=VALUE)")
    binding = arg.removeprefix("--gin.")
    if "=" not in binding:
      raise CommandError(f"{arg!r}: a gin binding needs a value, as in --gin.NAME=VALUE")
    check_gin_binding(binding)
    bindings.append(binding)
  return bindings


class _StructureOnly:
  """A gin parser delegate that accepts any `@reference` and `%MACRO`: only the syntax of
  a value is checked here; gin resolves the names when the configuration is parsed."""

  def configurable_reference(self, scoped_name: str, evaluate: bool) -> str:
    return scoped_name

  def macro(self, name: str) -> str:
    return name


def _gin_syntax_error(statement: str) -> str | None:
  """gin's complaint about a one-line statement (its last line: the token), or None."""
  import tokenize

  from gin import config_parser

  try:
    config_parser.ConfigParser(statement, _StructureOnly()).parse_statement()
  except (SyntaxError, tokenize.TokenError) as e:
    text = e.args[0] if isinstance(e, tokenize.TokenError) else str(e)
    return re.sub(r"\s*\(line \d+\)$", "", text.strip().splitlines()[-1].strip())
  return None


def check_gin_binding(binding: str) -> None:
  """Raises CommandError naming `--gin.NAME=VALUE` when gin cannot parse VALUE.

  A value that parses once quoted is a string the shell took the quotes of: the error
  shows the flag with both pairs of quotes.
  """
  why = _gin_syntax_error(binding)
  if why is None:
    return
  name, value = (part.strip() for part in binding.split("=", 1))
  flag = f"--gin.{name}={value}"
  # A value opening a container or a string is a broken literal, not an unquoted string.
  if not value.startswith(("[", "(", "{", "'", '"')) and (
      _gin_syntax_error(f"{name} = {value!r}") is None):
    raise CommandError(
        f"{flag}: gin cannot parse the value {value} ({why}); a string needs quotes of its "
        f"own inside the shell's: --gin.{name}=\"{value!r}\"")
  raise CommandError(f"{flag}: gin cannot parse the value {value} ({why}); values are "
                     "Python literals (numbers, 'strings', lists, dicts), @references "
                     "or %MACROS")


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
