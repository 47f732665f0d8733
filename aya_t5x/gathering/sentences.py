"""Sentence splitting per language and script that joins back: split, translate each, join.

The translated part of the Aya collection splits paragraphs into sentences, translates
them one by one and joins them back (RECIPE.md section 3), because translation models
are trained on sentences and drop or repeat content in long inputs. Scripts end
sentences differently:

- Latin, Cyrillic and most others: `.`, `!`, `?` followed by whitespace (a lowercase
  letter after `.` or a known abbreviation or initial before it means no boundary);
- Chinese and Japanese: `。！？` with no space after;
- Devanagari and Bengali (and Gurmukhi): the danda `।` and `॥`;
- Ethiopic (Amharic): `።` and the question mark `፧`;
- Arabic script (Arabic, Persian, Urdu, Pashto, Sindhi): `؟` and the Urdu full stop `۔`;
- Armenian `։`, Myanmar `။`, Khmer `។`, Greek `;` (its question mark);
- Thai and Lao have no terminator: whitespace separates sentences.

A line break always ends a sentence. `split_sentences` keeps every separator, so that
`segmented.join(segmented.sentences) == text`; `join` with translated sentences puts
them back between the same separators, adding a space where the source script needs
none but the target's does (Chinese to English) and dropping plain spaces where the
target writes none (English to Chinese).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

from aya_t5x.data import languages

# Closing quotes and brackets that stay with the sentence they end.
_CLOSERS = "\"'”’»›」』）)]】〕"
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs no fig e.g i.e approx dept est inc ltd co".split())


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScriptRules:
  """How one script ends sentences."""

  strong: str = ""          # always end a sentence, with or without whitespace after
  weak: str = ".!?…"        # end a sentence only before whitespace
  cased: bool = False       # '.' before a lowercase letter does not end a sentence
  spaces_separate: bool = False  # whitespace alone separates sentences (Thai, Lao)
  spaced: bool = True       # sentences are written with a space between them


_LATIN_LIKE = ScriptRules(cased=True)
_RULES: dict[str, ScriptRules] = {
    "Latn": _LATIN_LIKE, "Cyrl": _LATIN_LIKE, "Geor": ScriptRules(),
    "Grek": ScriptRules(weak=".!?;\u037e…", cased=True),
    "Armn": ScriptRules(strong="\u0589", cased=True),
    "Hans": ScriptRules(strong="。！？", weak="!?", spaced=False),
    "Hant": ScriptRules(strong="。！？", weak="!?", spaced=False),
    "Jpan": ScriptRules(strong="。！？", weak="!?", spaced=False),
    "Deva": ScriptRules(strong="।॥"), "Beng": ScriptRules(strong="।॥"),
    "Guru": ScriptRules(strong="।॥"),
    "Ethi": ScriptRules(strong="።፧፨"),
    "Arab": ScriptRules(strong="؟۔"),
    "Mymr": ScriptRules(strong="။"),
    "Khmr": ScriptRules(strong="។៕"),
    "Thai": ScriptRules(spaces_separate=True), "Laoo": ScriptRules(spaces_separate=True),
}


def rules_for(language: str) -> ScriptRules:
  """The splitting rules of a language (any code or name `languages` knows)."""
  return _RULES.get(languages.get_language(language).script, ScriptRules())


def _pattern(rules: ScriptRules) -> re.Pattern:
  closers = re.escape(_CLOSERS)
  parts = []
  if rules.strong:
    strong = re.escape(rules.strong)
    parts.append(rf"(?P<strong>[{strong}][{strong}{re.escape(rules.weak)}]*[{closers}]*)"
                 r"(?P<strong_gap>\s*)")
  if rules.weak:
    parts.append(rf"(?P<weak>[{re.escape(rules.weak)}]+[{closers}]*)(?P<weak_gap>\s+)")
  parts.append(r"(?P<gap>\s+)" if rules.spaces_separate else r"(?P<gap>[^\S\n]*\n\s*)")
  return re.compile("|".join(parts))


_PATTERNS: dict[ScriptRules, re.Pattern] = {}


def _continues(text: str, end: int, after: int, terminator: str) -> bool:
  """Whether a '.' at text[end - 1] before whitespace is an abbreviation or an initial."""
  if not terminator.startswith(".") or len(terminator.rstrip(_CLOSERS)) != 1:
    return False
  following = text[after:after + 1]
  if following.islower():
    return True
  word = re.search(r"([\w.]+)\.$", text[:end])
  if word is None:
    return False
  word = word.group(1)
  return (len(word) == 1 and word.isalpha()) or word.lower() in _ABBREVIATIONS


@dataclasses.dataclass(frozen=True)
class Segmented:
  """A text cut into sentences, with the whitespace around them kept.

  `separators[0]` comes before the first sentence and `separators[-1]` after the last,
  so `len(separators) == len(sentences) + 1`.
  """

  sentences: tuple[str, ...]
  separators: tuple[str, ...]

  def join(self, sentences: Sequence[str], target_language: str | None = None) -> str:
    """Puts `sentences` (e.g. their translations) back between the original separators.

    With `target_language`, a separator that has no line break becomes a space where the
    target script separates sentences by spaces, and disappears where it does not.
    """
    if len(sentences) != len(self.sentences):
      raise ValueError(f"join needs {len(self.sentences)} sentences, got {len(sentences)}")
    spaced = rules_for(target_language).spaced if target_language else None
    parts = [self.separators[0]]
    for i, sentence in enumerate(sentences):
      separator = self.separators[i + 1]
      inner = i + 1 < len(sentences)
      if spaced is not None and inner and "\n" not in separator:
        separator = " " if spaced else ""
      parts += [sentence, separator]
    return "".join(parts)


def split_sentences(text: str, language: str) -> Segmented:
  """Cuts `text` into sentences by the rules of `language`'s script (see the module doc)."""
  rules = rules_for(language)
  pattern = _PATTERNS.setdefault(rules, _pattern(rules))
  lead = len(text) - len(text.lstrip())
  sentences: list[str] = []
  separators = [text[:lead]]
  start = lead
  for match in pattern.finditer(text, lead):
    groups = match.groupdict()
    if match.lastgroup in ("strong_gap", "weak_gap"):
      terminator = groups.get("strong") or groups["weak"]
      end = match.start() + len(terminator)
      if groups.get("weak") and rules.cased and "\n" not in groups["weak_gap"] and \
          _continues(text, end, match.end(), terminator):
        continue
    else:
      end = match.start()
    if end == start or match.end() == len(text):
      continue  # nothing before, or only trailing whitespace after: not a boundary
    sentences.append(text[start:end])
    separators.append(text[end:match.end()])
    start = match.end()
  body = text[start:]
  stripped = body.rstrip()
  if stripped:
    sentences.append(stripped)
    separators.append(body[len(stripped):])
  else:
    separators[-1] += body
  return Segmented(sentences=tuple(sentences), separators=tuple(separators))
