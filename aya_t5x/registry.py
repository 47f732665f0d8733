"""Name lookups in aya_t5x's registries, with errors that list what exists.

Each extension point (sources, weighting schemes, tasks, ...) keeps its own typed dict;
they share this lookup so that a typo always fails the same way: the closest names
first, then everything registered.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, *, what: str, empty: str = "(none)") -> T:
  """`table[name]`, or a KeyError naming the closest entries and all registered ones.

  Args:
    table: the registry.
    name: the requested key.
    what: what the entries are, for the message ("source", "weighting scheme").
    empty: what to say when nothing is registered (for example how to register).
  """
  if name in table:
    return table[name]
  close = difflib.get_close_matches(name, list(table), n=3)
  hint = f" Did you mean {', '.join(close)}?" if close else ""
  raise KeyError(f"unknown {what} {name!r}.{hint} Registered: "
                 f"{', '.join(sorted(table)) or empty}")
