"""Languages as data: mT5's 101 (codes, names, scripts, Joshi class, HR/MR/LR group) and
the languages a user adds.

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
language identification does not separate them either. Common names
resolve too: ISO 639's other names (`Kiswahili`), and Bantu endonyms whose noun-class
prefix names the language (`isiZulu`, `Setswana`, `Chichewa`).

Languages outside the table are added as data, never by editing the package:
`new_language` checks and normalises one (`tn`, `tsn` and `Tswana` give `tn`; a BCP-47 tag
with a script subtag, `ff-Adlm`, gives code `ff` and script `Adlm`), and
`add_user_languages` makes it known to every lookup of this process. `aya-t5x languages
add` writes them into the task manifest (`aya_t5x.data.manifest`), and a run records the
table in MODEL_DIR, so every host, `eval` and `infer` load the same one. An unknown code
raises `UnknownLanguageError` naming the closest languages by code and by name, and how
to add it.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

TABLE = Path(__file__).with_name("languages.csv")
GROUPS = ("HR", "MR", "LR")
ADD_COMMAND = ("aya-t5x languages add CODE --name NAME --script SCRIPT --group {HR,MR,LR} "
               "--manifest aya_tasks.json")
# Bantu languages are often named by their noun-class prefix on the stem: isiZulu, Setswana,
# Kiswahili, Chichewa, Luganda, Kinyarwanda, Sesotho, Xitsonga, Tshivenda, Oshiwambo.
_NAME_PREFIXES = ("isi", "otji", "oshi", "tshi", "chi", "ki", "ru", "lu", "se", "si", "xi",
                  "ici", "kinya")
_SCRIPT_SUBTAG = re.compile(r"^[A-Za-z]{4}$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Language:
  """A language: a row of `languages.csv` (mT5's), or one a user added (`in_mt5=False`)."""

  code: str
  mc4_code: str
  iso639_1: str
  iso639_3: str
  name: str
  script: str
  joshi_class: int | None   # None for an added language (its group is given directly)
  group: str
  aliases: tuple[str, ...] = ()
  in_mt5: bool = True       # pre-trained on by mT5 (mC4); False for most added languages
  added_in: str = ""        # the file that added it ("" for the package table)

  def to_json(self) -> dict:
    """The entry a manifest's "languages" list holds (for an added language)."""
    return {"code": self.code, "name": self.name, "script": self.script, "group": self.group,
            "in_mt5": self.in_mt5, "aliases": list(self.aliases)}

  @property
  def codes(self) -> tuple[str, ...]:
    """Every code this language answers to, the main one first."""
    codes = (self.code, self.mc4_code, self.iso639_1, self.iso639_3, *self.aliases)
    return tuple(dict.fromkeys(c for c in codes if c))


class UnknownLanguageError(KeyError):
  """A code or name that is no known language; the message names close ones and the fix."""

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


# Languages added in this process (code -> Language), from manifests or LANGUAGES_FILE.
_ADDED: dict[str, Language] = {}


def added_languages() -> tuple[Language, ...]:
  """The languages added in this process, in the order they were added."""
  return tuple(_ADDED.values())


def known_languages() -> tuple[Language, ...]:
  """mT5's 101 and then the added ones."""
  return (*all_languages(), *added_languages())


def _forget_lookups() -> None:
  _index.cache_clear()
  find_language.cache_clear()


@functools.cache
def _index() -> Mapping[str, Language]:
  index: dict[str, Language] = {}
  for language in known_languages():
    for key in (*language.codes, language.name):
      key = key.lower()
      if key in index and index[key] is not language:
        where = language.added_in or TABLE
        raise ValueError(f"{where}: {key!r} names both {index[key].name} and {language.name}")
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
  """The closest known languages by code, then by name, as `code (Name)`."""
  known = known_languages()
  by_code = {c.lower(): lang for lang in known for c in lang.codes}
  by_name = {lang.name.lower(): lang for lang in known}
  query = text.strip().lower()
  close = [by_code[k] for k in difflib.get_close_matches(query, by_code, n=4, cutoff=0.5)]
  close += [by_name[k] for k in difflib.get_close_matches(query, by_name, n=4, cutoff=0.5)]
  labels = [f"{lang.code} ({lang.name})" for lang in close]
  return list(dict.fromkeys(labels))[:n]


def _name_candidates(text: str) -> tuple[str, ...]:
  """ISO 639-3 codes for a common name: ISO's other names, or a Bantu endonym's stem."""
  other = _other_names()
  key = text.strip().lower()
  if key in other:
    return _iso_candidates(other[key])
  for prefix in sorted(_NAME_PREFIXES, key=len, reverse=True):
    stem = key[len(prefix):]
    if key.startswith(prefix) and len(stem) >= 3:
      found = _iso_candidates(stem) or (_iso_candidates(other[stem]) if stem in other else ())
      if found:
        return found
  return ()


@functools.cache
def _other_names() -> Mapping[str, str]:
  from iso639.datafile import load_file

  return {name.lower(): reference for reference, names in
          load_file("mapping_other_names").items() for name in names}


def split_tag(text: str) -> tuple[str, str]:
  """(language subtag, script subtag or "") of a code or BCP-47 style tag (`ff-Adlm`)."""
  parts = [p for p in re.split(r"[-_]", str(text).strip()) if p]
  if not parts:
    return "", ""
  script = next((p.title() for p in parts[1:] if _SCRIPT_SUBTAG.match(p)), "")
  return parts[0], script


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
  for candidate in (_iso_candidates(text) or _iso_candidates(primary)
                    or _name_candidates(text)):
    if candidate in index:
      return index[candidate]
  return None


def _iso_lang(text: str):
  """The ISO 639 entry a code, tag or name stands for, or None."""
  from iso639 import Lang

  primary, _ = split_tag(text)
  for candidate in (*_iso_candidates(text), *_iso_candidates(primary), *_name_candidates(text)):
    return Lang(candidate)
  return None


def get_language(code_or_name: str) -> Language:
  """The known language for any code or name; `UnknownLanguageError` names the closest."""
  language = find_language(code_or_name)
  if language is not None:
    return language
  iso = _iso_lang(str(code_or_name))
  close = _closest(str(code_or_name))
  hint = f"; closest known languages: {', '.join(close)}" if close else ""
  if iso is not None:
    code = iso.pt1 or iso.pt3
    script = split_tag(str(code_or_name))[1] or "SCRIPT"
    fix = (f"add it with `aya-t5x languages add {code} --name \"{iso.name}\" --script {script} "
           "--group {HR,MR,LR} --manifest aya_tasks.json`")
    what = f"is {iso.name} (ISO 639 {iso.pt3}), a language outside mT5's 101 not added yet"
  else:
    fix = f"add it with `{ADD_COMMAND}`"
    what = "is not a known language code or name"
  raise UnknownLanguageError(
      f"{code_or_name!r} {what}{hint}. To train on it, {fix} (docs/your_language.md). "
      f"mT5's table is {TABLE}; codes may be ISO 639-1/639-3, a tag such as arb_Arab or "
      "ff-Adlm, or a name.")


def is_mt5_language(code_or_name: str) -> bool:
  """Whether mT5 was pre-trained on the language (one of the 101)."""
  language = find_language(code_or_name)
  return language is not None and language.in_mt5


# ----------------------------------------------------------------------------- added


def new_language(code: str, *, name: str, script: str = "", group: str, in_mt5: bool = False,
                 aliases: Iterable[str] = (), added_in: str = "") -> Language:
  """Checks and normalises a language to add; raises ValueError naming the field to fix.

  `code` may be an ISO 639-1/639-3 code or a BCP-47 tag with a script subtag (`ff-Adlm`);
  it becomes the ISO 639-1 code where one exists, else the 639-3 code, and the tag's
  script fills `script` (which must then agree). A code ISO 639 does not know is kept
  as given (lower case), for a language or variety without one.
  """
  primary, tag_script = split_tag(code)
  iso = _iso_lang(code)  # a code, a tag, or a name (Setswana -> tn)
  if iso is None and (not primary or not re.fullmatch(r"[A-Za-z]{2,8}", primary)):
    raise ValueError(f"language code {code!r}: give an ISO 639-1/639-3 code such as tn or "
                     "tsn, or a tag with a script such as ff-Adlm")
  script = script.strip().title() if script else tag_script
  if not script or not _SCRIPT_SUBTAG.match(script):
    raise ValueError(f"language {code!r}: --script must be an ISO 15924 code of four letters "
                     f"(Latn, Adlm, Tfng, Thaa, ...), got {script!r}")
  if tag_script and tag_script != script:
    raise ValueError(f"language {code!r}: the tag says script {tag_script}, --script says "
                     f"{script}; give one")
  group = group.strip().upper()
  if group not in GROUPS:
    raise ValueError(f"language {code!r}: --group must be one of {', '.join(GROUPS)}, "
                     f"got {group!r}")
  if not name or not name.strip():
    raise ValueError(f"language {code!r}: --name is required (its English name)")
  iso1 = iso.pt1 if iso else ""
  iso3 = iso.pt3 if iso else ""
  main = iso1 or iso3 or primary.lower()
  tags = [f"{main}-{script}", f"{main}_{script}"] + ([code] if code != main else [])
  return Language(code=main, mc4_code=main, iso639_1=iso1, iso639_3=iso3, name=name.strip(),
                  script=script, joshi_class=None, group=group,
                  aliases=tuple(a for a in dict.fromkeys([*tags, *aliases]) if a != main),
                  in_mt5=in_mt5, added_in=added_in)


def language_from_json(entry: Mapping, where: str, added_in: str = "") -> Language:
  """An added language from its manifest entry; ValueError names `where` and the field."""
  if not isinstance(entry, Mapping):
    raise ValueError(f"{where}: a language is a JSON object {{\"code\", \"name\", "
                     "\"script\", \"group\"}}")
  unknown = set(entry) - {"code", "name", "script", "group", "in_mt5", "aliases"}
  if unknown:
    raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; fields are "
                     "code, name, script, group, in_mt5, aliases")
  for field in ("code", "name", "script", "group"):
    if not isinstance(entry.get(field), str):
      raise ValueError(f"{where}: field {field!r} is required (a string)")
  try:
    return new_language(entry["code"], name=entry["name"], script=entry["script"],
                        group=entry["group"], in_mt5=bool(entry.get("in_mt5", False)),
                        aliases=entry.get("aliases") or (), added_in=added_in or where)
  except ValueError as e:
    raise ValueError(f"{where}: {e}") from None


def check_addable(language: Language) -> None:
  """Raises ValueError when the language, or one of its codes, is known already."""
  for key in (*language.codes, language.name):
    found = find_language(key)
    if found is not None and found.code != language.code:
      raise ValueError(f"{key!r} already names {found.code} ({found.name}); choose another "
                       "code or name")
  known = find_language(language.code)
  if known is not None and known.joshi_class is not None:
    raise ValueError(f"{language.code} is {known.name}, one of mT5's 101 languages already; "
                     "use it as it is")


def add_user_languages(added: Iterable[Language]) -> None:
  """Makes languages known to every lookup of this process (the same code again: replaced)."""
  added = list(added)
  for language in added:
    _ADDED.pop(language.code, None)
  _forget_lookups()
  for language in added:
    check_addable(language)
    _ADDED[language.code] = language
    _forget_lookups()


def clear_user_languages() -> None:
  """Forgets the added languages (tests; a process that loads another manifest)."""
  _ADDED.clear()
  _forget_lookups()


def languages_in_group(group: str) -> tuple[Language, ...]:
  """The mT5 languages of one resource group: HR, MR or LR."""
  if group not in GROUPS:
    raise ValueError(f"unknown resource group {group!r}; groups are {', '.join(GROUPS)}")
  return tuple(lang for lang in all_languages() if lang.group == group)
