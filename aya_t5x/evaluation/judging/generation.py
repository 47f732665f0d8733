"""Generation files the judges read: one JSON object per line with a prompt and a
completion (`aya-t5x infer`'s output too), read with counted skips, and two models' files
joined by prompt for pairwise judging."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

# ----------------------------------------------------------------------------------------
# Generations
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Generation:
  id: str
  prompt: str
  completion: str
  language: str
  where: str  # file:line


@dataclasses.dataclass(frozen=True, kw_only=True)
class GenerationFile:
  path: str
  generations: list[Generation]
  skipped: dict[str, str]  # file:line -> why


PROMPT_KEYS = ("prompt", "inputs")  # `aya-t5x infer` writes "inputs"
ID_KEYS = ("id", "line")            # and "line", the prompt's line in its input file


def read_generations(path: str | os.PathLike, *, language: str | None = None,
                     completion_key: str = "completion", language_key: str = "language"
                     ) -> GenerationFile:
  """Reads JSONL generations: {"id" or "line", "prompt" or "inputs", "completion", "language"}.

  `language` is used for records without a language field. Unreadable lines and records
  without a prompt or completion are skipped and listed; a record without a language
  (when `language` is None) or a repeated id is an error naming the line.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"generations file {path} does not exist (JSONL: id, prompt, "
                            "completion, language per line, e.g. from aya-t5x infer)")
  generations, skipped, seen = [], {}, {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      where = f"{path}:{number}"
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        if not isinstance(record, dict):
          raise ValueError("not an object")
      except ValueError as e:
        skipped[where] = f"not a JSON object ({e})"
        continue
      prompt = next((record[k] for k in PROMPT_KEYS if isinstance(record.get(k), str)), None)
      completion = record.get(completion_key)
      if prompt is None or not isinstance(completion, str):
        skipped[where] = (f"needs a string {' or '.join(PROMPT_KEYS)} field and a string "
                          f"{completion_key!r} field")
        continue
      lang = record.get(language_key, language)
      if not isinstance(lang, str) or not lang:
        raise ValueError(f"{where}: no {language_key!r} field; add one to every record or "
                         "give the file's language (--language)")
      key = next((record[k] for k in ID_KEYS if k in record), number)
      key = str(key)
      if key in seen:
        raise ValueError(f"{where}: id {key!r} repeats {seen[key]}; ids must be unique to "
                         "join two models' generations")
      seen[key] = where
      generations.append(Generation(id=key, prompt=prompt, completion=completion,
                                    language=lang, where=where))
  return GenerationFile(path=str(path), generations=generations, skipped=skipped)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pairs:
  pairs: list[tuple[Generation, Generation]]
  only_a: list[str]  # ids without a partner
  only_b: list[str]
  skipped: dict[str, str]


def join_generations(a: GenerationFile, b: GenerationFile) -> Pairs:
  """Pairs the two models' answers to the same prompt by id (in A's order).

  The same id with a different prompt or language means the files come from different
  prompt sets: that is an error, not a silent mismatch.
  """
  by_id = {g.id: g for g in b.generations}
  pairs, only_a = [], []
  for ga in a.generations:
    gb = by_id.pop(ga.id, None)
    if gb is None:
      only_a.append(ga.id)
      continue
    if ga.prompt.strip() != gb.prompt.strip() or ga.language != gb.language:
      raise ValueError(f"id {ga.id!r}: {ga.where} and {gb.where} differ in prompt or "
                       "language; both files must answer the same prompts (same ids)")
    pairs.append((ga, gb))
  return Pairs(pairs=pairs, only_a=only_a, only_b=list(by_id),
               skipped={**a.skipped, **b.skipped})
