"""gin the T5X way: `--gin_file`, `--gin.NAME=value`, search paths, and errors that name the fix.

The bottom layer of configuration: it imports gin and nothing of aya_t5x (but
`gin_files`, where the shipped files are, which imports nothing), so that every
command module can parse gin and read the values bound without depending on what is
registered. The registration table (which functions gin may configure) is
`aya_t5x.configurables`, imported by the command line (`aya_t5x.cli`) before any
command runs; `configured(name)` reaches a registered configurable through gin's own
registry.

The gin files shipped with aya_t5x (`gin/` in a checkout, `aya_t5x/gin/` once installed)
are always on the search path, so `--gin_file models/mt5_xxl.gin` works from any folder
and `--gin_file gin/models/mt5_xxl.gin` from the repository root.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin
from aya_t5x import gin_files

# The gin module of everything aya_t5x registers (`aya_t5x.configurables`).
MODULE = "aya_t5x"

MODEL_SIZES = ("tiny", "small", "base", "large", "xl", "xxl")


def _tolerate_folders_named_like_includes() -> None:
  """Keeps gin's include lookup from crashing on a plain folder in the working directory.

  For `include 'runs/finetune.gin'` gin also looks for a Python package `runs`; under
  `python -m` the working directory is importable, so a folder `runs/` there is found as
  a namespace package without a file, and gin's check raises TypeError instead of
  answering "not here". Such a folder holds no packaged gin file: the check now says so,
  and gin goes on to the search paths (the shipped gin files).
  """
  readers = gin.config._FILE_READERS  # pylint: disable=protected-access
  for index, (reader, exists) in enumerate(readers):
    if getattr(exists, "tolerant", False):
      continue

    def tolerant(path, exists=exists):
      try:
        return exists(path)
      except TypeError:
        return False

    tolerant.tolerant = True
    readers[index] = (reader, tolerant)


_tolerate_folders_named_like_includes()


class GinConfigError(ValueError):
  """A gin file, binding or search path is wrong; the message says what to change."""


def gin_root() -> Path:
  """The folder of the gin files shipped with aya_t5x."""
  try:
    return gin_files.shipped_gin_folder()
  except FileNotFoundError as e:
    raise GinConfigError(str(e)) from e


# Shipped gin folders renamed, old prefix -> new; the old paths work for one release.
RENAMED_GIN_FOLDERS = {"aya/": "topologies/"}


def _warn_if_renamed(name: str) -> None:
  stripped = name.removeprefix("gin/")
  for old, new in RENAMED_GIN_FOLDERS.items():
    if stripped.startswith(old):
      logging.getLogger("aya_t5x").warning(
          "gin file %r has moved to %r; the old path works until the next release.",
          name, new + stripped.removeprefix(old))


def resolve_gin_file(name: str, search_paths: Sequence[str] = ()) -> str:
  """Finds a gin file as given, under a search path, or under the shipped gin folder."""
  _warn_if_renamed(name)
  candidates = [Path(name)]
  roots = [Path(p) for p in search_paths] + [gin_root()]
  stripped = name.removeprefix("gin/")
  for root in roots:
    candidates += [root / name, root / stripped]
  for candidate in candidates:
    if candidate.is_file():
      return str(candidate)
  shipped = sorted(str(p.relative_to(gin_root())) for p in gin_root().rglob("*.gin"))
  close = difflib.get_close_matches(stripped, shipped, n=3)
  hint = f" Did you mean {', '.join(close)}?" if close else ""
  raise GinConfigError(
      f"gin file {name!r} not found as given, under --gin_search_paths "
      f"{list(search_paths)} or under {gin_root()}.{hint}")


def _registered() -> dict[str, Any]:
  """aya_t5x's configurables in gin's registry: name -> the function or class gin wraps."""
  return {c.name: c.wrapped for _, c in gin.config._REGISTRY.items()  # pylint: disable=protected-access
          if c.module == MODULE}


def configured(name: str):
  """The registered configurable `name` (`aya_t5x.configurables`), as gin configures it."""
  try:
    return gin.get_configurable(f"{MODULE}.{name}")
  except ValueError as e:
    raise GinConfigError(
        f"{MODULE}.{name} is not registered with gin: import aya_t5x.configurables first "
        "(the command line does)") from e


def _suggestion(message: str) -> str:
  """Turns gin's 'no configurable'/'no parameter' errors into a did-you-mean hint."""
  registered = _registered()
  match = re.search(r"No configurable matching '([^']+)'", message)
  if match:
    close = difflib.get_close_matches(match.group(1).split("/")[-1], registered, n=3)
    return f"\n  Did you mean {', '.join(close)}?" if close else ""
  match = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'",
                    message)
  if match and match.group(1) in registered:
    params = inspect.signature(registered[match.group(1)]).parameters
    close = difflib.get_close_matches(match.group(2), params, n=3)
    return (f"\n  Did you mean {', '.join(f'{match.group(1)}.{c}' for c in close)}?"
            if close else f"\n  Its parameters are: {', '.join(params)}.")
  return ""


class _DropGinSearchMisses(logging.Filter):
  """gin logs an ERROR for every search path an include is not under; only misses."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Path not found:")


@contextlib.contextmanager
def _quiet_search_misses():
  drop = _DropGinSearchMisses()
  root = logging.getLogger()
  root.addFilter(drop)
  try:
    yield
  finally:
    root.removeFilter(drop)


def _gin_texts(files: Sequence[str], search_paths: Sequence[str]) -> list[str]:
  """The text of every gin file given, and of the files they include."""
  seen, texts, pending = set(), [], list(files)
  while pending:
    path = pending.pop()
    if path in seen:
      continue
    seen.add(path)
    text = Path(path).read_text(encoding="utf-8")
    texts.append(text)
    for include in re.findall(r"^\s*include\s+['\"]([^'\"]+)['\"]", text, re.MULTILINE):
      pending.append(resolve_gin_file(include, search_paths))
  return texts


def _referenced_macros(texts: Sequence[str]) -> set[str]:
  """Every `%MACRO` the gin texts refer to."""
  return {name for text in texts for name in re.findall(r"%([A-Za-z_][A-Za-z0-9_.]*)", text)}


def _defined_macros(texts: Sequence[str]) -> set[str]:
  """Every `MACRO = ...` the gin texts define."""
  return {name for text in texts
          for name in re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", text, re.MULTILINE)}


# The macros the files of the last `parse_gin` define (for `unset_required_macros`).
_PARSED_MACROS: set[str] = set()

# How to set the macros the shipped gin files leave `%gin.REQUIRED`.
MACRO_FIXES = {
    "MODEL_DIR": "--gin.MODEL_DIR=\"'/path/to/run'\"",
    "MIXTURE_OR_TASK_NAME": "--gin.MIXTURE_OR_TASK_NAME=\"'name'\" (`aya-t5x tasks list` "
                            "shows the registered ones)",
    "VOCABULARY_PATH": "--gin.VOCABULARY_PATH=\"'/path/sentencepiece.model'\"",
    "AYA_SOURCES": "--gin.AYA_SOURCES=\"{'aya_dataset': '/data/aya_dataset', ...}\" (one "
                   "folder or file per source of the scheme)",
    "AYA_SCHEME": "a mixture file, e.g. --gin_file mixtures/translation_heavy.gin",
    "DEMO_CORPUS": "--gin.DEMO_CORPUS=\"'/path/to/demo_output/corpus'\"",
}


def _is_required_marker(value) -> bool:
  return (isinstance(value, gin.config.ConfigurableReference)
          and value.scoped_selector.split("/")[0] == "gin.REQUIRED")


def unset_required_macros() -> list[str]:
  """The macros of the parsed gin files still bound to `%gin.REQUIRED`.

  gin checks `%gin.REQUIRED` only where a parameter is bound to it directly; through a
  macro (`MODEL_DIR = %gin.REQUIRED`, `train.model_dir = %MODEL_DIR`) the marker itself
  would reach the function.
  """
  return [name for name in sorted(_PARSED_MACROS) if _is_required_marker(macro_value(name))]


def check_required_macros() -> None:
  """Raises `GinConfigError` naming every `%gin.REQUIRED` macro left unset, and its fix."""
  unset = unset_required_macros()
  if unset:
    fixes = "\n".join(f"  {name}: {MACRO_FIXES.get(name, f'--gin.{name}=...')}"
                      for name in unset)
    raise GinConfigError(f"These gin macros must be set: {', '.join(unset)}.\n{fixes}")


def macro_value(name: str, default=None):
  """The value the parsed gin files bind to macro `name` (`default` if none)."""
  try:
    return gin.query_parameter(f"%{name}")
  except ValueError:
    return default


def _macro_text(name: str, seen: frozenset[str] = frozenset()) -> str:
  """A macro's value as gin text, following macros that name other macros."""
  value = macro_value(name)
  selector = getattr(value, "scoped_selector", "")
  if selector.endswith("/gin.macro") and selector not in seen:
    return _macro_text(selector.split("/")[0], seen | {selector})
  return gin.config._format_value(value)  # pylint: disable=protected-access


def resolved_macros(bindings: Sequence[str] = ()) -> dict[str, str]:
  """Every macro the parsed gin files and `bindings` define, resolved, as gin text."""
  names = set(_PARSED_MACROS) | {b.split("=", 1)[0].strip() for b in bindings
                                 if re.fullmatch(r"[A-Z][A-Z0-9_]*", b.split("=", 1)[0].strip())}
  return {name: _macro_text(name) for name in sorted(names)}


def _check_macro_bindings(bindings: Sequence[str], referenced: set[str]) -> None:
  """A macro set on the command line that no file uses is a typo (gin accepts it)."""
  for binding in bindings:
    name = binding.split("=", 1)[0].strip()
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and name not in referenced:
      close = difflib.get_close_matches(name, referenced, n=3)
      hint = f" Did you mean {', '.join(close)}?" if close else ""
      raise GinConfigError(
          f"--gin.{binding}: no gin file uses the macro {name}, so it would have no "
          f"effect.{hint}")


def parse_gin(gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = (),
              search_paths: Sequence[str] = ()) -> None:
  """Parses gin files and `NAME=value` bindings (later ones win), after a clean reset.

  What the files configure must be registered first: `import aya_t5x.configurables`
  (the command line does).
  """
  if not _registered():
    raise GinConfigError("aya_t5x's configurables are not registered with gin: import "
                         "aya_t5x.configurables before parsing gin files.")
  gin.clear_config()
  for path in [*search_paths, str(gin_root())]:
    gin.add_config_file_search_path(os.fspath(path))
  files = [resolve_gin_file(f, search_paths) for f in gin_files]
  texts = _gin_texts(files, search_paths)  # read once, for both checks
  _check_macro_bindings(gin_bindings, _referenced_macros(texts))
  _PARSED_MACROS.clear()
  _PARSED_MACROS.update(_defined_macros(texts))
  try:
    with _quiet_search_misses():
      gin.parse_config_files_and_bindings(files, list(gin_bindings), finalize_config=False)
  except (OSError, ValueError, SyntaxError) as e:
    message = str(e).strip()
    raise GinConfigError(f"gin configuration error: {message}{_suggestion(message)}") from e


def configured_model():
  """The `MT5Config` the parsed gin files bind (a model size file is required)."""
  try:
    return configured("MT5Config")()
  except TypeError as e:
    if "required" in str(e):
      raise GinConfigError(
          "No model size configured: add a model gin file, for example --gin_file "
          f"models/mt5_small.gin (sizes: {', '.join(MODEL_SIZES)}). ({e})") from e
    raise


def configured_model_or_none():
  """The `MT5Config` the parsed gin files bind, or None where they bind no model size."""
  try:
    return configured_model()
  except GinConfigError as e:
    if "No model size configured" in str(e):
      return None
    raise
