"""How well a SentencePiece vocabulary writes a language: pieces per word and per character,
unknown pieces, the characters it cannot write, and the report files that say so.

`measure(processor, lines)` counts one language's text; `coverage_report` measures several
and adds the ratio to English; `write_coverage_report` writes `vocab_report.md`,
`vocab_report.json` (an object keyed by language) and `vocab_report.png`.

Words are whitespace-separated tokens, except in scripts written without spaces between
words (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar), where every character of
the script counts as one word; the other characters of such a token still form words of
their own. So pieces per word of Chinese or Thai text counts pieces per character of that
script, a lower bound that compares such languages with each other, not with spaced
ones; pieces per character compares every language.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x import reporting

# unicodedata name prefixes of the scripts written without spaces between words.
_SPACELESS_PREFIXES = ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA",
                       "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR")
ENGLISH_KEYS = ("en", "eng", "english")
REPORT_STEM = "vocab_report"


@functools.lru_cache(maxsize=65536)
def _spaceless(character: str) -> bool:
  return unicodedata.name(character, "").startswith(_SPACELESS_PREFIXES)


def count_words(line: str) -> int:
  """Words of `line` as this module counts them (see the module docstring)."""
  words = 0
  for token in line.split():
    rest = False
    for character in token:
      if _spaceless(character):
        words += 1
        if rest:
          words, rest = words + 1, False
      else:
        rest = True
    words += rest
  return words


def character_name(character: str) -> str:
  return f"U+{ord(character):04X} {unicodedata.name(character, '(unnamed)')}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Coverage:
  """One language's text through one vocabulary."""

  lines: int
  words: int
  characters: int  # not counting whitespace
  pieces: int
  unknown_pieces: int
  byte_pieces: int  # pieces spelled with byte fallback (0 without it)
  uncovered_characters: dict[str, int]  # character -> occurrences, most frequent first

  @property
  def pieces_per_word(self) -> float | None:
    return self.pieces / self.words if self.words else None

  @property
  def pieces_per_character(self) -> float | None:
    return self.pieces / self.characters if self.characters else None

  @property
  def unknown_share(self) -> float | None:
    return self.unknown_pieces / self.pieces if self.pieces else None

  def as_dict(self) -> dict[str, Any]:
    return {"pieces_per_word": self.pieces_per_word,
            "pieces_per_character": self.pieces_per_character,
            "unknown_share": self.unknown_share,
            "uncovered_characters": self.uncovered_characters,
            "byte_fallback_share": self.byte_pieces / self.pieces if self.pieces else None,
            "lines": self.lines, "words": self.words, "characters": self.characters,
            "pieces": self.pieces, "unknown_pieces": self.unknown_pieces}


def load_processor(path: str | os.PathLike):
  """A `sentencepiece.SentencePieceProcessor` for the model file at `path`."""
  import sentencepiece as spm

  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"SentencePiece model {path} not found (--vocabulary).")
  try:
    return spm.SentencePieceProcessor(model_file=str(path))
  except (RuntimeError, OSError) as e:
    raise ValueError(f"{path}: not a SentencePiece model ({e}).") from e


def measure(processor, lines: Iterable[str], *, batch: int = 1024) -> Coverage:
  """Encodes `lines` (blank ones skipped) with `processor` and counts what came out."""
  unk = processor.unk_id()
  totals = collections.Counter()
  characters: collections.Counter[str] = collections.Counter()

  def flush(chunk: list[str]) -> None:
    for ids in processor.encode(chunk):
      totals["pieces"] += len(ids)
      totals["unknown"] += sum(i == unk for i in ids)
      totals["bytes"] += sum(processor.is_byte(i) for i in ids)

  chunk: list[str] = []
  for line in lines:
    line = line.strip()
    if not line:
      continue
    totals["lines"] += 1
    totals["words"] += count_words(line)
    characters.update(c for c in line if not c.isspace())
    chunk.append(line)
    if len(chunk) == batch:
      flush(chunk)
      chunk = []
  if chunk:
    flush(chunk)
  # A character is uncovered when the vocabulary spells it, alone, as the unknown piece.
  uncovered = {c: n for c, n in characters.most_common() if unk in processor.encode(c)}
  return Coverage(lines=totals["lines"], words=totals["words"],
                  characters=sum(characters.values()), pieces=totals["pieces"],
                  unknown_pieces=totals["unknown"], byte_pieces=totals["bytes"],
                  uncovered_characters=uncovered)


def read_lines(path: str | os.PathLike) -> list[str]:
  """The lines of a UTF-8 text file; the error names the file and the first bad line."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"text file {path} not found.")
  data = path.read_bytes()
  try:
    return data.decode("utf-8").splitlines()
  except UnicodeDecodeError as e:
    line = data[:e.start].count(b"\n") + 1
    raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason}); give UTF-8 text, one "
                     "sentence or paragraph a line.") from None


def english_key(languages: Iterable[str]) -> str | None:
  """The language key that holds English text, if any (en, eng or English)."""
  return next((k for k in languages if k.lower() in ENGLISH_KEYS), None)


def coverage_report(processor, texts: Mapping[str, Sequence[str]]) -> dict[str, dict]:
  """Measures each language's lines: {language: Coverage.as_dict() + ratios to English}.

  With English among the languages, each language also gets `pieces_per_word_vs_english`
  and `pieces_per_character_vs_english` (1.0 for English itself); otherwise they are None.
  """
  measured = {language: measure(processor, lines) for language, lines in texts.items()}
  english = english_key(measured)
  report = {}
  for language, coverage in measured.items():
    entry = coverage.as_dict()
    for field in ("pieces_per_word", "pieces_per_character"):
      base = measured[english].as_dict()[field] if english else None
      entry[f"{field}_vs_english"] = (entry[field] / base if base and entry[field] is not None
                                      else None)
    report[language] = entry
  return report


def _uncovered_lines(uncovered: Mapping[str, int], limit: int = 40) -> list[str]:
  if not uncovered:
    return ["  none"]
  lines = [f"  - {c} {character_name(c)}: {n}" for c, n in list(uncovered.items())[:limit]]
  if len(uncovered) > limit:
    lines.append(f"  - and {len(uncovered) - limit} more (all in vocab_report.json)")
  return lines


def format_markdown(report: Mapping[str, Mapping[str, Any]], *, vocabulary: str) -> str:
  """The report as markdown: one table row per language, then the uncovered characters."""
  rows = [(language, e["lines"], e["words"], e["pieces"], e["pieces_per_word"],
           e["pieces_per_character"], reporting.percent(e["unknown_share"]),
           e["pieces_per_word_vs_english"], len(e["uncovered_characters"]))
          for language, e in report.items()]
  table = reporting.data_table(
      ["language", "lines", "words", "pieces", "pieces/word", "pieces/char", "unknown",
       "pieces/word vs English", "uncovered characters"], rows)
  lines = [f"# Vocabulary coverage: {vocabulary}", "", table, "",
           "Words are whitespace-separated, except that every character of a script written "
           "without spaces (Han, Kana, Thai, Lao, Khmer, Myanmar) counts as a word. "
           "'unknown' is the share of pieces that are the unknown piece.", "",
           "## Characters the vocabulary cannot write", ""]
  for language, e in report.items():
    uncovered = e["uncovered_characters"]
    lines.append(f"- **{language}** ({len(uncovered)}, with their occurrences):")
    lines += _uncovered_lines(uncovered)
  return "\n".join(lines) + "\n"


def draw(report: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
  """Two bar charts: pieces per word and the unknown share, one bar per language."""
  plt = reporting.pyplot()
  languages = list(report)
  figure, (left, right) = plt.subplots(1, 2, figsize=(max(6, 1.1 * len(languages) + 3), 3.5))
  left.bar(languages, [report[k]["pieces_per_word"] or 0 for k in languages], color="#4c72b0")
  left.set_title("pieces per word")
  english = english_key(languages)
  if english:
    left.axhline(report[english]["pieces_per_word"] or 0, color="grey", linestyle="--",
                 linewidth=1, label="English")
    left.legend()
  right.bar(languages, [100 * (report[k]["unknown_share"] or 0) for k in languages],
            color="#c44e52")
  right.set_title("unknown pieces (%)")
  for axis in (left, right):
    axis.tick_params(axis="x", rotation=45)
  figure.tight_layout()
  return reporting.save_figure(figure, path)


def write_coverage_report(report: Mapping[str, Mapping[str, Any]], folder: str | os.PathLike,
                          *, vocabulary: str) -> dict[str, Path]:
  """Writes `vocab_report.{json,md,png}` in `folder`; returns their paths."""
  return reporting.write_report(folder, REPORT_STEM, report,
                                format_markdown(report, vocabulary=vocabulary), draw=draw)


def summary_line(language: str, entry: Mapping[str, Any]) -> str:
  """One line for a terminal: pieces per word, unknown share, uncovered characters."""
  ppw = entry["pieces_per_word"]
  return (f"{language}: {ppw:.2f} pieces/word, " if ppw is not None else f"{language}: ") + (
      f"{reporting.percent(entry['unknown_share'])} unknown, "
      f"{len(entry['uncovered_characters'])} uncovered character(s)")
