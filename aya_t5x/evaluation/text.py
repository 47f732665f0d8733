"""Tokenization and normalisation for text metrics that must work in every script.

The reference tokenizers of ROUGE and SQuAD keep only ASCII letters and digits, so a
Hindi or Chinese summary becomes an empty token list and identical strings score 0.
Here a word is a run of letters, combining marks and digits in any script; combining
marks stay with their base character (Devanagari vowel signs are marks, so `हिंदी` is one
word); and in scripts written without spaces between words (Han, Hiragana, Katakana,
Thai, Lao, Khmer, Myanmar, Tibetan) every character, with its marks, is a word of its
own, as in MLQA's "mixed segmentation". Text is NFKC-normalised and case-folded. For
plain ASCII English the words equal rouge-score's own tokens.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable

# Code point ranges of the scripts written without spaces between words.
UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x0F00, 0x0FFF),    # Tibetan
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x19E0, 0x19FF),    # Khmer symbols
    (0x2E80, 0x2FDF),    # CJK and Kangxi radicals
    (0x3040, 0x30FF),    # Hiragana, Katakana
    (0x31F0, 0x31FF),    # Katakana phonetic extensions
    (0x3400, 0x4DBF),    # CJK extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # halfwidth Katakana
    (0x20000, 0x3134F),  # CJK extensions B to G
)
# The same scripts as ISO 15924 codes (the `script` column of the language table).
UNSPACED_SCRIPTS = frozenset({"Hans", "Hant", "Hani", "Jpan", "Thai", "Laoo", "Khmr", "Mymr",
                              "Tibt"})
# Sentence ends: after . ! ? and their Devanagari, Armenian, Arabic, Urdu and Ethiopic
# forms when a space follows; after the CJK full-width forms always.
_SENTENCE_END = re.compile(r"(?<=[.!?।॥։؟۔።])\s+|(?<=[。！？])\s*")
_ENGLISH_ARTICLES = re.compile(r"\b(a|an|the)\b")


def is_unspaced(char: str) -> bool:
  """Whether `char` belongs to a script written without spaces between words."""
  point = ord(char)
  return any(low <= point <= high for low, high in UNSPACED_RANGES)


def _is_word_char(char: str) -> bool:
  return unicodedata.category(char)[0] in "LMN"


def _segment(text: str, separates: Callable[[str], bool]) -> list[str]:
  """Splits at separator characters and around every unspaced-script character."""
  tokens: list[str] = []
  # What tokens[-1] is, for the next character: None after a separator, 'word' (a
  # spaced-script word that letters extend), 'char' (an unspaced-script character
  # that only combining marks extend).
  last = None
  for char in text:
    if separates(char):
      last = None
    elif last is not None and unicodedata.category(char)[0] == "M":
      tokens[-1] += char
    elif is_unspaced(char):
      tokens.append(char)
      last = "char"
    elif last == "word":
      tokens[-1] += char
    else:
      tokens.append(char)
      last = "word"
  return tokens


def words(text: str) -> list[str]:
  """The words of `text` in any script, case-folded (the tokens of multi-script ROUGE)."""
  text = unicodedata.normalize("NFKC", text).casefold()
  return _segment(text, lambda char: not _is_word_char(char))


def sentences(text: str) -> list[str]:
  """`text` split into sentences at sentence-final punctuation of many scripts."""
  parts = (part.strip() for line in text.splitlines() for part in _SENTENCE_END.split(line))
  return [part for part in parts if part]


def _is_punctuation(char: str) -> bool:
  return unicodedata.category(char)[0] == "P" or char in string.punctuation


def answer_tokens(text: str) -> list[str]:
  """SQuAD's answer normalisation, for every script.

  As the SQuAD v1.1 script: lower case, punctuation deleted, English articles removed,
  split at whitespace. Unicode punctuation of every script is deleted too, and text in
  scripts without spaces is split into characters, so that F1 gives partial credit in
  Thai or Japanese instead of comparing whole sentences.
  """
  text = unicodedata.normalize("NFKC", text).casefold()
  text = "".join(char for char in text if not _is_punctuation(char))
  text = _ENGLISH_ARTICLES.sub(" ", text)
  return _segment(text, str.isspace)
