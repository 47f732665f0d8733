"""Existing prompt/completion pairs from files into the re-annotation queues.

A team seeds the queues of its language with pairs worth improving (translated,
templated, or from an older dataset): `aya-t5x annotate import FILE --db DB --language
sw`. Any format `aya_t5x.data.readers` reads works (JSONL, parquet, arrow, folders).
Pairs go through the same checks as the web form (`forms.check_pair`); a bad record
stops the import with its file, line and field, or with `tolerant` is skipped and
counted. All pairs are added in one transaction, so a failed import adds nothing.
"""

from __future__ import annotations

import dataclasses
import os

from aya_t5x.annotation import forms
from aya_t5x.annotation.store import Store
from aya_t5x.data import readers


@dataclasses.dataclass(frozen=True, kw_only=True)
class SeedReport:
  """What an import did: pairs added per language, duplicates, and skipped records."""

  added: dict[str, int]
  duplicates: int
  skipped: dict[str, str]  # location -> reason

  def format(self) -> str:
    per_language = ", ".join(f"{lang} {n}" for lang, n in sorted(self.added.items()))
    lines = [f"added {sum(self.added.values())} pair(s) to the re-annotation queues"
             + (f" ({per_language})" if per_language else "")
             + f"; {self.duplicates} already there; {len(self.skipped)} record(s) skipped"]
    lines += [f"  skipped {where}: {why}" for where, why in list(self.skipped.items())[:10]]
    if len(self.skipped) > 10:
      lines.append(f"  ... and {len(self.skipped) - 10} more")
    return "\n".join(lines)


def _string_field(record: dict, field: str, location: readers.Location) -> str:
  value = record.get(field)
  if not isinstance(value, str):
    what = "missing" if field not in record else f"a {type(value).__name__}, not a string"
    raise readers.MalformedRecord(location, field, f"{what} (fields: {', '.join(sorted(record))})")
  return value


def import_seeds(store: Store, path: str | os.PathLike, *, language: str | None = None,
                 language_key: str | None = None, inputs_key: str = "inputs",
                 targets_key: str = "targets", tolerant: bool = False,
                 limits: forms.Limits = forms.Limits()) -> SeedReport:
  """Adds the pairs of a file or folder to the re-annotation queues.

  Args:
    store: the annotation database.
    path: a data file or folder.
    language: the language of every pair (any code or name), or
    language_key: the field holding each record's language.
    inputs_key, targets_key: the fields of prompt and completion.
    tolerant: skip and count bad records instead of raising.
    limits: the size limits of the web form, which seeds obey too.

  Raises:
    ValueError: a bad record (without `tolerant`), naming its file, line and field.
  """
  if (language is None) == (language_key is None):
    raise ValueError("give the language of the pairs (--language sw) or the field that "
                     "holds it (--language_key language_code), one of the two")
  fixed = forms.check_language(language).code if language is not None else None
  seeds: list[tuple[str, str, str, str]] = []
  skipped: dict[str, str] = {}
  for location, record in readers.iter_records(path):
    try:
      if isinstance(record, readers.MalformedRecord):
        raise record
      inputs = _string_field(record, inputs_key, location)
      targets = _string_field(record, targets_key, location)
      code = fixed
      if code is None:
        name = _string_field(record, language_key, location)
        try:
          code = forms.check_language(name).code
        except ValueError as e:
          raise readers.MalformedRecord(location, language_key, str(e)) from None
      try:
        inputs, targets = forms.check_pair(inputs, targets, limits)
      except forms.SubmissionError as e:
        field, why = next(iter(e.problems.items()))
        raise readers.MalformedRecord(
            location, inputs_key if field == "prompt" else targets_key, why) from None
    except readers.MalformedRecord as bad:
      if not tolerant:
        raise ValueError(f"{bad} (pass --tolerant to skip and count such records)") from None
      skipped[str(bad.location)] = str(bad).removeprefix(f"{bad.location}: ")
      continue
    seeds.append((code, inputs, targets, str(location)))
  added, duplicates = store.add_seeds(seeds)
  return SeedReport(added=added, duplicates=duplicates, skipped=skipped)
