"""The character edit distance against the textbook table and the `editdistance` package."""

import random

import editdistance
import pytest

from aya_t5x.annotation.edit_distance import levenshtein, pair_distance


def table_distance(a: str, b: str) -> int:
  """Wagner-Fischer: the full dynamic-programming table, one cell at a time."""
  previous = list(range(len(b) + 1))
  for i, x in enumerate(a, start=1):
    current = [i]
    for j, y in enumerate(b, start=1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
    previous = current
  return previous[-1]


@pytest.mark.parametrize("a,b,expected", [
    ("", "", 0), ("", "abc", 3), ("kitten", "sitting", 3), ("flaw", "lawn", 2),
    ("mtoto anasoma", "mtoto anasoma kitabu", 7), ("a😀b", "ab", 1),
    ("\u00e9", "e\u0301", 2), ("\u1230\u120b\u121d", "\u1230\u120b\u121d\u1273", 1)])
def test_known_distances(a, b, expected):
  assert levenshtein(a, b) == expected
  assert levenshtein(b, a) == expected


def test_random_strings_equal_the_table_and_editdistance():
  rng = random.Random(0)
  alphabet = "ab c\n😀é"  # few symbols, so that matches are frequent
  for _ in range(400):
    a = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    b = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    assert levenshtein(a, b) == table_distance(a, b) == editdistance.eval(a, b), (a, b)


def test_long_fields_equal_editdistance():
  rng = random.Random(1)
  a = "".join(rng.choice("abcdefgh ") for _ in range(8000))
  b = "".join(rng.choice("abcdefgh ") for _ in range(7000))
  edited = a[:3000] + "XYZ" + a[3010:]
  assert levenshtein(a, b) == editdistance.eval(a, b)
  assert levenshtein(a, edited) == editdistance.eval(a, edited) == 10


def test_pair_distance_is_per_field():
  assert pair_distance(("habari", "nzuri"), ("habari yako", "nzuri sana")) == (5, 5)
