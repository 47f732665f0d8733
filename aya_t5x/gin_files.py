"""The gin files shipped with aya_t5x: where they are, and the macros a run file declares.

Imports nothing heavy (not even gin), so that `aya-t5x train --help` can list the run
macros at once. The gin parsing itself is `aya_t5x.gin_config`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# The run file every training run includes (runs/aya_recipe.gin includes it too).
RUN_FILE = "runs/finetune.gin"
_MACRO_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.*?)\s*(?:#\s*(.*))?$")


def shipped_gin_folder() -> Path:
  """The folder of the shipped gin files (`gin/` in a checkout, `aya_t5x/gin/` installed).

  Raises FileNotFoundError naming both places when neither holds them.
  """
  package = Path(__file__).resolve().parent
  for candidate in (package / "gin", package.parent / "gin"):
    if (candidate / "models").is_dir():
      return candidate
  raise FileNotFoundError(f"aya_t5x's gin files are missing (looked in {package / 'gin'} "
                          f"and {package.parent / 'gin'}); reinstall the package.")


@dataclass(frozen=True, kw_only=True)
class RunMacro:
  """One `NAME = value  # comment` line of a run file."""

  name: str
  default: str  # as written in the file; `%gin.REQUIRED` for one the user must set
  comment: str = ""

  @property
  def required(self) -> bool:
    return self.default == "%gin.REQUIRED"


def run_macros(path: Path | None = None) -> list[RunMacro]:
  """The top-level macros of a run file (default: the shipped `runs/finetune.gin`), in order.

  Reads the text only: a macro is a line `NAME = value` with an upper-case name at the
  start of the line (gin's convention for macros); bindings of configurables are skipped.
  """
  path = path or shipped_gin_folder() / RUN_FILE
  macros = []
  for line in path.read_text(encoding="utf-8").splitlines():
    match = _MACRO_LINE.match(line)
    if match:
      name, default, comment = match.groups()
      macros.append(RunMacro(name=name, default=default, comment=comment or ""))
  return macros


def run_macros_help(path: Path | None = None) -> str:
  """The run macros as a help section: name, default or "required", and the file's note."""
  try:
    macros = run_macros(path)
  except OSError as e:  # a broken install: say so in the help instead of failing
    return f"(the run macros cannot be listed: {e})"
  width = max(len(m.name) for m in macros) if macros else 0
  lines = [f"run macros ({RUN_FILE}; set with --gin.NAME=VALUE, a string in inner quotes: "
           "--gin.MODEL_DIR=\"'/tmp/run'\"):"]
  for m in macros:
    value = "required" if m.required else f"default {m.default}"
    lines.append(f"  {m.name:<{width}}  {value}" + (f"; {m.comment}" if m.comment else ""))
  return "\n".join(lines)
