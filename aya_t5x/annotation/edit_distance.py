"""Character Levenshtein distance, the measure the Aya inclusion rule puts on re-annotations.

A re-annotation enters the dataset only when the distances of its prompt and of its
completion to the pair it edits add up to at least 5 (RECIPE.md §7). Characters are
Unicode code points (what a Python `str` iterates over, and what `Array.from` yields in
the browser), so that the live figure the page shows and the stored figure agree for
every script, emoji and combining mark included.

The distance uses the bit-parallel algorithm of Myers (1999) in Hyyrö's (2001) form for
whole strings: one pass over the shorter string with the longer one held as bit
vectors in Python integers, so an 8,000-character field costs milliseconds rather than
the seconds of the cell-by-cell table. `static/app.js` runs the same algorithm on
BigInts.
"""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
  """The least number of single-character insertions, deletions and substitutions a -> b."""
  if len(a) < len(b):
    a, b = b, a  # bits for the longer string, Python-level steps for the shorter
  if not b:
    return len(a)
  m = len(a)
  positions: dict[str, int] = {}
  for i, char in enumerate(a):
    positions[char] = positions.get(char, 0) | (1 << i)
  mask = (1 << m) - 1
  last = 1 << (m - 1)
  # Vertical deltas of the current column, +1 (pv) or -1 (mv); column 0 is 0, 1, ..., m.
  pv, mv, score = mask, 0, m
  for char in b:
    eq = positions.get(char, 0)
    xv = eq | mv
    xh = (((eq & pv) + pv) ^ pv) | eq
    ph = mv | (~(xh | pv) & mask)
    mh = pv & xh
    if ph & last:
      score += 1
    elif mh & last:
      score -= 1
    # Row 0 of the table is 0, 1, 2, ...: every horizontal step there adds one.
    ph = ((ph << 1) | 1) & mask
    mh = (mh << 1) & mask
    pv = mh | (~(xv | ph) & mask)
    mv = ph & xv
  return score


def pair_distance(before: tuple[str, str], after: tuple[str, str]) -> tuple[int, int]:
  """The (prompt, completion) distances of a re-annotation from the pair it edits."""
  return levenshtein(before[0], after[0]), levenshtein(before[1], after[1])
