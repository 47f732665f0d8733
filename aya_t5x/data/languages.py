"""mT5's 101 languages as data: codes, names, scripts, Joshi class and HR/MR/LR group.

The table is `languages.csv` beside this module (one row per language of mC4, the
corpus mT5 was pre-trained on). Columns:

- `code`: the code aya_t5x uses in task names (ISO 639-1 where one exists, else 639-3).
- `mc4_code`: the code mC4/TFDS uses (`iw` for Hebrew; the others equal `code`).
- `iso639_1`, `iso639_3`: ISO codes (639-3 is the macrolanguage code where there is one).
- `name`, `script` (ISO 15924 of the main script in mC4).
- `joshi_class`: 0-5 from Joshi et al. (2020), "The State and Fate of Linguistic
  Diversity"; `group`: HR for classes 5-4, MR for 3, LR for 2-0, as the Aya papers
  group them (24 HR, 26 MR, 51 LR: just over half lower-resourced).
- `aliases`: other codes sources use for the language (`;`-separated).

`get_language` accepts any code or name: the table's codes and aliases, ISO 639-1/2/3
codes, BCP-47 style tags with a script or region (`arb_Arab`, `zh-Hans`, `pt-BR`), and
ISO names. Individual languages of a macrolanguage resolve to it (Moroccan Arabic `ary`
to Arabic, Standard Malay `zsm` to Malay) through the `iso639-lang` tables, because mC4's
language identification does not separate them either. Unknown codes raise
`UnknownLanguageError` naming the closest known languages.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
from collections.abc import Mapping
from pathlib import Path

TABLE = Path(__file__).with_name("languages.csv")
GROUPS = ("HR", "MR", "LR")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Language:
  """One of mT5's languages (a row of `languages.csv`)."""

  code: str
  mc4_code: str
  iso639_1: str
  iso639_3: str
  name: str
  script: str
  joshi_class: int
  group: str
  aliases: tuple[str, ...] = ()

  @property
  def codes(self) -> tuple[str, ...]:
    """Every code this language answers to, the main one first."""
    codes = (self.code, self.mc4_code, self.iso639_1, self.iso639_3, *self.aliases)
    return tuple(dict.fromkeys(c for c in codes if c))


class UnknownLanguageError(KeyError):
  """A code or name that is not one of mT5's languages; the message names close ones."""

  def __str__(self) -> str:  # KeyError would print the message quoted
    return str(self.args[0])


def group_of(joshi_class: int) -> str:
  """The Aya resource group of a Joshi class: 5-4 HR, 3 MR, 2-0 LR."""
  if not 0 <= joshi_class <= 5:
    raise ValueError(f"Joshi classes run from 0 to 5, got {joshi_class}")
  return "HR" if joshi_class >= 4 else "MR" if joshi_class == 3 else "LR"


def _read_table(path: Path) -> tuple[Language, ...]:
  languages = []
  with path.open(encoding="utf-8", newline="") as f:
    for line, row in enumerate(csv.DictReader(f), start=2):
      try:
        joshi = int(row["joshi_class"])
        language = Language(
            code=row["code"], mc4_code=row["mc4_code"], iso639_1=row["iso639_1"],
            iso639_3=row["iso639_3"], name=row["name"], script=row["script"],
            joshi_class=joshi, group=row["group"],
            aliases=tuple(a for a in row["aliases"].split(";") if a))
      except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}:{line}: malformed language row ({e}); columns are "
                         "code,mc4_code,iso639_1,iso639_3,name,script,joshi_class,group,"
                         "aliases") from e
      if language.group != group_of(joshi):
        raise ValueError(f"{path}:{line}: group {language.group} does not match Joshi class "
                         f"{joshi} (expected {group_of(joshi)})")
      languages.append(language)
  return tuple(languages)


@functools.cache
def all_languages() -> tuple[Language, ...]:
  """The 101 languages, in table order (alphabetical by code)."""
  return _read_table(TABLE)


@functools.cache
def _index() -> Mapping[str, Language]:
  index: dict[str, Language] = {}
  for language in all_languages():
    for key in (*language.codes, language.name):
      key = key.lower()
      if key in index and index[key] is not language:
        raise ValueError(f"{TABLE}: {key!r} names both {index[key].name} and {language.name}")
      index[key] = language
  return index


@functools.lru_cache(maxsize=4096)  # called per record for codes outside the table
def _iso_candidates(text: str) -> tuple[str, ...]:
  """ISO 639-3 codes `text` may stand for (itself, then its macrolanguage)."""
  from iso639 import Lang
  from iso639.exceptions import InvalidLanguageValue

  for attempt in (text, text.lower(), text.title()):
    try:
      lang = Lang(attempt)
    except InvalidLanguageValue:
      continue
    candidates = [lang.pt3]
    macro = lang.macro()
    if macro is not None:
      candidates.append(macro.pt3)
    return tuple(candidates)
  return ()


def _closest(text: str, n: int = 3) -> list[str]:
  keys = _index()
  close = difflib.get_close_matches(text.lower(), keys, n=8, cutoff=0.5)
  seen: list[str] = []
  for key in close:
    label = f"{keys[key].code} ({keys[key].name})"
    if label not in seen:
      seen.append(label)
  return seen[:n]


def is_iso639(code_or_name: str) -> bool:
  """Whether ISO 639 knows the code or name (or the language subtag of a tag like arb_Arab)."""
  text = str(code_or_name).strip()
  return bool(_iso_candidates(text) or _iso_candidates(text.replace("_", "-").split("-")[0]))


@functools.lru_cache(maxsize=4096)
def find_language(code_or_name: str) -> Language | None:
  """The mT5 language a code or name stands for, or None (see `get_language`)."""
  text = str(code_or_name).strip()
  if not text:
    return None
  index = _index()
  if text.lower() in index:
    return index[text.lower()]
  # `arb_Arab`, `zh-Hans`, `pt-BR`: the language subtag decides.
  primary = text.replace("_", "-").split("-")[0]
  if primary.lower() in index:
    return index[primary.lower()]
  for candidate in _iso_candidates(text) or _iso_candidates(primary):
    if candidate in index:
      return index[candidate]
  return None


def get_language(code_or_name: str) -> Language:
  """The mT5 language for any code or name; `UnknownLanguageError` names the closest."""
  language = find_language(code_or_name)
  if language is not None:
    return language
  iso = _iso_candidates(str(code_or_name).strip())
  what = "is a language outside mT5's 101" if iso else "is not a known language code or name"
  close = _closest(str(code_or_name))
  hint = f"; closest mT5 languages: {', '.join(close)}" if close else ""
  raise UnknownLanguageError(
      f"{code_or_name!r} {what}{hint}. The table is {TABLE}; codes may be ISO 639-1/639-3, "
      "a tag such as arb_Arab, or an English name.")


def is_mt5_language(code_or_name: str) -> bool:
  return find_language(code_or_name) is not None


def languages_in_group(group: str) -> tuple[Language, ...]:
  """The languages of one resource group: HR, MR or LR."""
  if group not in GROUPS:
    raise ValueError(f"unknown resource group {group!r}; groups are {', '.join(GROUPS)}")
  return tuple(lang for lang in all_languages() if lang.group == group)
