"""Translating texts with any sequence-to-sequence backend: sentences, batches, output checks.

A backend is anything with `translate(texts, source_language, target_language) ->
list[str]` and a `description` (what model it runs, for reports and resume checks):
`translation_backends` has aya_t5x checkpoints and Hugging Face NLLB / M2M100 models;
`DictionaryBackend` here translates by exact lookup (a translation memory, or a
deterministic stand-in for tests).

`translate_texts` does what the Aya collection's translation did (RECIPE.md section 3):
paragraphs are split into sentences (`sentences`), each distinct sentence is translated
once, in batches of similar length (less padding), and the translations are joined back
between the original separators. `output_problem` says why a translation must be
dropped: it contains `<unk>`, is empty, or merely copies the source.
"""

from __future__ import annotations

import dataclasses
import json
import os
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from aya_t5x.data import languages
from aya_t5x.gathering.sentences import Segmented, split_sentences

UNK = "<unk>"
DROP_REASONS = ("unk", "empty", "copy")


@runtime_checkable
class Backend(Protocol):
  """What `translate_texts` needs from a translation model."""

  description: str  # e.g. "hf:/models/nllb-200-distilled-600M"; resumed runs must match

  def translate(self, texts: Sequence[str], source_language: str, target_language: str
                ) -> list[str]:
    """Translates a batch of sentences; one output per input, in order."""
    ...


def language_code(language: str) -> str:
  """aya_t5x's code for any language code or name (`sw` for `swh`, `Swahili`, `sw_Latn`)."""
  try:
    return languages.get_language(language).code
  except KeyError as e:  # UnknownLanguageError: its message names the closest languages
    raise ValueError(str(e)) from None


# ----------------------------------------------------------------------------- dictionary


class DictionaryBackend:
  """Translates sentences by exact lookup; a sentence not in the table becomes ''.

  The table maps a language pair to {source sentence: translation}. A JSON file holds it
  as `{"en-sw": {"Heartbreak Hotel": "Hoteli ya Moyo", ...}, "sw-en": {...}}`; language
  codes may be any code or name `languages` knows.
  """

  def __init__(self, table: Mapping[tuple[str, str], Mapping[str, str]], *,
               description: str = "dictionary"):
    self.table = {(language_code(s), language_code(t)): dict(entries)
                  for (s, t), entries in table.items()}
    self.description = description

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> DictionaryBackend:
    path = Path(path)
    if not path.is_file():
      raise FileNotFoundError(f"dictionary {path} not found (JSON: {{\"en-sw\": {{\"source "
                              "sentence\": \"translation\"}}}})")
    try:
      data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}:{e.lineno}: broken JSON ({e.msg})") from None
    table = {}
    for pair, entries in (data.items() if isinstance(data, dict) else []):
      source, sep, target = pair.partition("-")
      if not sep or not isinstance(entries, dict):
        raise ValueError(f"{path}: key {pair!r}: write language pairs as \"en-sw\" mapping to "
                         "{\"source sentence\": \"translation\"}")
      table[(source, target)] = entries
    if not table:
      raise ValueError(f"{path}: no language pairs; the file is {{\"en-sw\": {{...}}}}")
    return cls(table, description=f"dictionary:{path}")

  def translate(self, texts: Sequence[str], source_language: str, target_language: str
                ) -> list[str]:
    pair = (language_code(source_language), language_code(target_language))
    entries = self.table.get(pair, {})
    return [entries.get(text, "") for text in texts]


# ----------------------------------------------------------------------------- engine


@dataclasses.dataclass(frozen=True, kw_only=True)
class Translated:
  """The translations of `translate_texts`, with what it took."""

  texts: list[str]
  sentences: int          # sentences in the inputs
  unique_sentences: int   # sentences sent to the backend (each distinct one once)


def _whole(text: str) -> Segmented:
  body = text.strip()
  if not body:
    return Segmented(sentences=(), separators=(text,))
  lead = text[:len(text) - len(text.lstrip())]
  return Segmented(sentences=(body,), separators=(lead, text[len(lead) + len(body):]))


def translate_texts(backend: Backend, texts: Sequence[str], source_language: str,
                    target_language: str, *, batch_size: int = 32,
                    split: bool = True) -> Translated:
  """Translates texts sentence by sentence and joins the sentences back.

  Args:
    backend: the model (see `Backend`).
    texts: paragraphs or whole documents.
    source_language, target_language: any code or name `languages` knows.
    batch_size: sentences per backend call; batches hold sentences of similar length.
    split: cut texts into sentences first (otherwise each text is one unit).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size={batch_size}: give at least 1")
  segmented = [split_sentences(t, source_language) if split else _whole(t) for t in texts]
  unique = list(dict.fromkeys(s for seg in segmented for s in seg.sentences))
  # Similar lengths in one batch waste less on padding; the sort is stable, so equal
  # lengths keep their order and the result does not depend on the batch size.
  unique.sort(key=len)
  translated: dict[str, str] = {}
  for start in range(0, len(unique), batch_size):
    batch = unique[start:start + batch_size]
    outputs = backend.translate(batch, source_language, target_language)
    if len(outputs) != len(batch):
      raise ValueError(f"backend {backend.description} returned {len(outputs)} translations "
                       f"for {len(batch)} sentences")
    translated.update(zip(batch, outputs))
  joined = [seg.join([translated[s].strip() for s in seg.sentences], target_language)
            for seg in segmented]
  return Translated(texts=joined, sentences=sum(len(seg.sentences) for seg in segmented),
                    unique_sentences=len(unique))


def _normalised(text: str) -> str:
  return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def output_problem(source: str, translation: str) -> str | None:
  """Why a translation must be dropped ('unk', 'empty', 'copy'), or None when it may stay.

  A copy is a translation equal to its source up to case and spacing; sources without
  letters (numbers, code) may be copied.
  """
  if not source.strip():
    return None
  if UNK in translation:
    return "unk"
  if not translation.strip():
    return "empty"
  if _normalised(translation) == _normalised(source) and any(c.isalpha() for c in source):
    return "copy"
  return None


def decode_keeping_unk(ids: Iterable[int], *, unk_id: int, skip_ids: frozenset[int],
                       decode: Callable[[list[int]], str]) -> str:
  """Decodes token ids with every unknown token spelled `<unk>`.

  Tokenizers print the unknown token as ' ⁇ ' (SentencePiece) or drop it with the other
  special tokens; spelling it out lets `output_problem` find it.
  """
  pieces: list[str] = []
  run: list[int] = []
  for token in ids:
    if token == unk_id:
      pieces += [decode(run), UNK]
      run = []
    elif token not in skip_ids:
      run.append(token)
  pieces.append(decode(run))
  return "".join(pieces)
