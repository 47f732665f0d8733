"""Character Levenshtein distance, the measure the Aya inclusion rule puts on re-annotations.

A re-annotation enters the dataset only when the distances of its prompt and of its
completion to the pair it edits add up to at least 5 (RECIPE.md §7). Characters are
Unicode code points (what a Python `str` iterates over, and what `Array.from` yields in
the browser), so that the live figure the page shows and the stored figure agree for
every script, emoji and combining mark included.

The server's figure comes from rapidfuzz (a maintained C++ implementation, bit-parallel
for long strings: an 8,000-character field costs well under a millisecond). The page's
live figure comes from `static/app.js`, which runs the bit-parallel algorithm of Myers
(1999) in Hyyrö's (2001) form on BigInts; the browser test checks the two agree on
random text in several scripts, and tests/annotation/test_edit_distance.py checks this
one against the textbook table and the `editdistance` package.
"""

from __future__ import annotations

from rapidfuzz.distance import Levenshtein


def levenshtein(a: str, b: str) -> int:
  """The least number of single-character insertions, deletions and substitutions a -> b."""
  return Levenshtein.distance(a, b)


def pair_distance(before: tuple[str, str], after: tuple[str, str]) -> tuple[int, int]:
  """The (prompt, completion) distances of a re-annotation from the pair it edits."""
  return levenshtein(before[0], after[0]), levenshtein(before[1], after[1])
