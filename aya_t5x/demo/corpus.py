"""The demo corpus: the recipe's six sources and its evaluation sets in miniature, from a seed.

`build_corpus(root, seed)` writes, deterministically:

- `sources/<source>/{train,validation}.<ext>`: the six training sources of RECIPE.md §3,
  each in its published record schema, so that the real scanners, filters, caps and
  weighting schemes read them exactly as they read the real data;
- `eval/<task>.<language>.jsonl`: held-out examples per task type and language
  (translation both ways, question answering, classification with answer options,
  generation), none of whose contents occur in any training file;
- `spm.model`: a SentencePiece vocabulary trained on all of it with T5's ids;
- `sources.json`: the value of the gin macro `AYA_SOURCES` for these files;
- `corpus.json`: what was written (counts per source, language and task, checksums).

The four task types are those of the recipe's taxonomy; every example is built from
the small lexicons of `aya_t5x.demo.lexicon`. What each source holds is chosen so that
the three weighting schemes move per-language scores the way they move the real model:

| source | tasks | languages |
|---|---|---|
| aya_dataset (human) | question answering, generation | the six MR and LR languages |
| aya_templated | classification | all ten |
| xp3x | translation (both ways) | the nine non-English |
| data_provenance | all four but translation | English |
| aya_translated | question answering, classification, generation (Dolly) | nine |
| sharegpt_command | generation | all ten |
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aya_t5x.data import languages
from aya_t5x.demo.lexicon import ANIMALS, COLOURS, LANGUAGES, LEXICONS, Lexicon

TASKS = ("translation", "question_answering", "classification", "generation")
# The taxonomy's names as the Aya Collection's `task_type` field writes them.
TASK_TYPES = {"translation": "translation", "question_answering": "question-answering",
              "classification": "classification", "generation": "generation"}
EVAL_PER_TASK = 40         # held-out examples per (task, language, direction)
VALIDATION_PER_TASK = 8    # per (source, task, language): the trainer's train-eval split
CHANCE = {"classification": 0.5}  # two answer options
VOCABULARY_SIZE = 1024  # BPE: on this small text, unigram stops short of whole words

# ISO 639-3 codes as the Aya Dataset and Aya Collection records carry them, and the
# FLORES-style codes of xP3x.
_ISO3 = {"en": "eng", "fr": "fra", "de": "deu", "id": "ind", "fil": "fil", "ta": "tam",
         "sw": "swh", "ht": "hat", "yo": "yor", "ha": "hau"}
_SCRIPT = {"ta": "Taml"}
_NON_ENGLISH = tuple(c for c in LANGUAGES if c != "en")
_MR_LR = tuple(c for c in LANGUAGES if languages.get_language(c).group != "HR")


# ----------------------------------------------------------------------------- things


@dataclasses.dataclass(frozen=True)
class Thing:
  """A counted, coloured animal: the unit every demo sentence is made of."""

  count: int   # 1..9
  colour: int  # index into COLOURS
  animal: int  # index into ANIMALS

  def say(self, lex: Lexicon) -> str:
    return lex.phrase.format(n=lex.numbers[self.count - 1], colour=lex.colours[self.colour],
                             animal=lex.animals[self.animal])


def _say_all(things: Sequence[Thing], lex: Lexicon) -> str:
  return f" {lex.and_word} ".join(t.say(lex) for t in things)


def _random_things(rng: np.random.Generator, n: int) -> tuple[Thing, ...]:
  animals = rng.choice(len(ANIMALS), size=n, replace=False)
  colours = rng.integers(0, len(COLOURS), size=n)
  counts = rng.integers(1, 10, size=n)
  return tuple(Thing(int(c), int(k), int(a)) for c, k, a in zip(counts, colours, animals))


def _name(code: str) -> str:
  return languages.get_language(code).name


# ----------------------------------------------------------------------------- examples


def _example(task: str, code: str, rng: np.random.Generator, direction: str = "") -> tuple[
    tuple, dict[str, Any]]:
  """(content key, example) for one task in one language; the key identifies the content."""
  lex, en = LEXICONS[code], LEXICONS["en"]
  if task == "translation":
    things = _random_things(rng, int(rng.integers(1, 3)))
    if direction == "to_english":
      return (task, code, direction, things), {
          "inputs": f"Translate to English: {_say_all(things, lex)}",
          "targets": _say_all(things, en)}
    return (task, code, direction, things), {
        "inputs": f"Translate to {_name(code)}: {_say_all(things, en)}",
        "targets": _say_all(things, lex)}
  if task == "question_answering":
    things = _random_things(rng, int(rng.integers(2, 4)))
    asked = things[int(rng.integers(len(things)))]
    question = lex.how_many.format(animal=lex.animals[asked.animal])
    return (task, code, things, asked), {
        "inputs": f"{lex.see.format(things=_say_all(things, lex))} {question}",
        "targets": lex.numbers[asked.count - 1]}
  if task == "classification":
    # One thing and a question with its colour and another: the answer is in the text,
    # which a tiny model learns in minutes in every language (chance is one in two).
    (thing,) = _random_things(rng, 1)
    other = (thing.colour + 1 + int(rng.integers(len(COLOURS) - 1))) % len(COLOURS)
    options = [lex.colours[thing.colour], lex.colours[other]]
    if rng.integers(2):
      options.reverse()
    question = lex.which_colour.format(animal=lex.animals[thing.animal], a=options[0],
                                       b=options[1])
    return (task, code, thing, other), {
        "inputs": f"{lex.see.format(things=thing.say(lex))} {question}",
        "targets": lex.colours[thing.colour], "options": options}
  if task == "generation":
    things = _random_things(rng, int(rng.integers(1, 3)))
    words = "; ".join(f"{ANIMALS[t.animal]}, {t.count}, {COLOURS[t.colour]}" for t in things)
    return (task, code, things), {
        "inputs": f"Write a sentence in {_name(code)} about: {words}",
        "targets": lex.see.format(things=_say_all(things, lex))}
  raise ValueError(f"unknown demo task {task!r}; tasks: {', '.join(TASKS)}")


def _directions(task: str, code: str) -> tuple[str, ...]:
  if task != "translation":
    return ("",)
  return () if code == "en" else ("from_english", "to_english")


class _Drawer:
  """Draws examples whose content was never drawn before, so splits never overlap."""

  def __init__(self, seed: int):
    self._seed = seed
    self._seen: set[tuple] = set()

  def draw(self, task: str, code: str, n: int, direction: str = "", *, stream: str
           ) -> list[dict[str, Any]]:
    digest = hashlib.sha256(f"{self._seed}/{stream}/{task}/{code}/{direction}".encode())
    rng = np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))
    rows: list[dict[str, Any]] = []
    for _ in range(200 * n):
      if len(rows) == n:
        return rows
      key, example = _example(task, code, rng, direction)
      if key not in self._seen:
        self._seen.add(key)
        rows.append(example)
    raise ValueError(f"demo corpus: only {len(rows)} distinct {task} examples for {code}; "
                     f"lower the count ({n})")


# ----------------------------------------------------------------------------- sources

# (source, task, languages, train examples per language and direction)
_PLAN: tuple[tuple[str, str, tuple[str, ...], int], ...] = (
    ("aya_dataset", "question_answering", _MR_LR, 160),
    ("aya_dataset", "generation", _MR_LR, 160),
    ("aya_templated", "classification", LANGUAGES, 300),
    ("xp3x", "translation", _NON_ENGLISH, 300),
    ("data_provenance", "question_answering", ("en",), 400),
    ("data_provenance", "classification", ("en",), 400),
    ("data_provenance", "generation", ("en",), 400),
    ("aya_translated", "question_answering", _NON_ENGLISH, 200),
    ("aya_translated", "classification", _NON_ENGLISH, 200),
    ("aya_translated", "generation", _NON_ENGLISH, 200),
    ("sharegpt_command", "generation", LANGUAGES, 150),
)
SOURCES = tuple(dict.fromkeys(source for source, *_ in _PLAN))
_COLLECTION_DATASETS = {"classification": "DemoCompare", "question_answering": "DemoCount",
                        "generation": "Dolly-v2"}
_XP3X_TEMPLATES = {"from_english": ("translate_to", "Translate to {lang}: {text}"),
                   "to_english": ("translate_to_en", "Translate to English: {text}")}


def _record(source: str, task: str, code: str, example: dict[str, Any], index: int,
            split: str, direction: str) -> dict[str, Any]:
  """An example in the published record schema of its source (RECIPE.md §3)."""
  inputs, targets = example["inputs"], example["targets"]
  if source == "aya_dataset":
    return {"inputs": inputs, "targets": targets, "language": _name(code),
            "language_code": _ISO3[code], "annotation_type": "original-annotations",
            "user_id": f"demo-{code}-{index % 5}"}
  if source in ("aya_templated", "aya_translated"):
    dataset = _COLLECTION_DATASETS[task] + ("-inst" if source == "aya_templated" else " (T)")
    return {"id": index, "inputs": inputs, "targets": targets, "dataset_name": dataset,
            "sub_dataset_name": "-", "task_type": TASK_TYPES[task], "template_id": 1,
            "language": _ISO3[code], "script": _SCRIPT.get(code, "Latn"), "split": split}
  if source == "xp3x":
    return {"inputs": inputs, "targets": targets,
            "language": f"{_ISO3[code]}_{_SCRIPT.get(code, 'Latn')}", "split": split,
            "template": _XP3X_TEMPLATES[direction][0], "dataset": "demo_phrases",
            "config": code}
  if source == "data_provenance":
    return {"inputs": inputs, "targets": targets, "task_name": f"demo_{task}",
            "task_type": TASK_TYPES[task], "language": code}
  if source == "sharegpt_command":
    record = {"id": f"{code}-{index}", "inputs": inputs, "targets": targets, "language": code}
    if code != "en":
      record["original_inputs"] = inputs  # the prompt is the English one, kept as such
    return record
  raise ValueError(f"unknown demo source {source!r}")


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_parquet(path: Path, rows: Sequence[dict[str, Any]]) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq

  path.parent.mkdir(parents=True, exist_ok=True)
  pq.write_table(pa.Table.from_pylist(list(rows)), path)


# Formats as the sources are published: the Aya Dataset and Collection as parquet.
_PARQUET = ("aya_dataset", "aya_templated", "aya_translated")


def _source_rows(drawer: _Drawer) -> Iterator[tuple[str, str, str, str, str, dict]]:
  """(source, split, task, language, direction, record) for every training record."""
  for split, scale in (("train", None), ("validation", VALIDATION_PER_TASK)):
    for source, task, codes, per_language in _PLAN:
      for code in codes:
        for direction in _directions(task, code):
          n = per_language if scale is None else scale
          rows = drawer.draw(task, code, n, direction, stream=f"{source}/{split}")
          for i, example in enumerate(rows):
            yield source, split, task, code, direction, _record(
                source, task, code, example, i, split, direction)


# ----------------------------------------------------------------------------- the corpus


@dataclasses.dataclass(frozen=True, kw_only=True)
class Corpus:
  """Where a built corpus lies, for gin (`AYA_SOURCES`, `VOCABULARY_PATH`) and the evals."""

  root: Path

  @property
  def vocabulary_path(self) -> Path:
    return self.root / "spm.model"

  @property
  def eval_dir(self) -> Path:
    return self.root / "eval"

  def source_paths(self) -> dict[str, dict[str, str]]:
    """{source: {split: file}}, the value of the gin macro AYA_SOURCES."""
    paths = {}
    for source in SOURCES:
      ext = "parquet" if source in _PARQUET else "jsonl"
      paths[source] = {split: str(self.root / "sources" / source / f"{split}.{ext}")
                       for split in ("train", "validation")}
    return paths

  def eval_files(self) -> dict[tuple[str, str], Path]:
    """{(task, language): file} of the held-out sets (translation: `task` names the way)."""
    found = {}
    for path in sorted(self.eval_dir.glob("*.jsonl")):
      task, code = path.stem.rsplit(".", 1)
      found[(task, code)] = path
    return found

  def summary(self) -> dict[str, Any]:
    return json.loads((self.root / "corpus.json").read_text())


def eval_task_name(task: str, direction: str = "") -> str:
  """`translation` splits by direction (`translation_to_english`), the others keep their name."""
  return f"{task}_{direction}" if direction else task


def _checksum(root: Path) -> str:
  digest = hashlib.sha256()
  # The two listings name the corpus's own location, which must not change the checksum.
  for path in sorted(p for p in root.rglob("*") if p.is_file()
                     and p.name not in ("corpus.json", "sources.json")):
    digest.update(path.relative_to(root).as_posix().encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()


def build_corpus(root: str | Path, *, seed: int = 0) -> Corpus:
  """Writes the demo corpus under `root` (see the module docstring); the same seed, the
  same bytes. Reuses a complete corpus already there for this seed."""
  from aya_t5x.vocab import vocabulary

  root = Path(root)
  summary_path = root / "corpus.json"
  if summary_path.is_file():
    summary = json.loads(summary_path.read_text())
    if summary.get("seed") == seed and summary.get("checksum") == _checksum(root):
      return Corpus(root=root)
  drawer = _Drawer(seed)
  # Held-out sets first, so that no training record can repeat their contents.
  eval_counts: dict[str, int] = {}
  texts: list[str] = []
  for task in TASKS:
    for code in LANGUAGES:
      for direction in _directions(task, code):
        rows = drawer.draw(task, code, EVAL_PER_TASK, direction, stream="eval")
        name = f"{eval_task_name(task, direction)}.{code}"
        _write_jsonl(root / "eval" / f"{name}.jsonl",
                     [{**row, "language": code, "task": eval_task_name(task, direction)}
                      for row in rows])
        eval_counts[name] = len(rows)
        texts += [t for row in rows for t in (row["inputs"], row["targets"])]
  grouped: dict[tuple[str, str], list[dict]] = {}
  counts: dict[str, dict[str, dict[str, int]]] = {}
  for source, split, task, code, _, record in _source_rows(drawer):
    grouped.setdefault((source, split), []).append(record)
    per_task = counts.setdefault(source, {}).setdefault(f"{split}/{task}", {})
    per_task[code] = per_task.get(code, 0) + 1
    texts += [record["inputs"], record["targets"]]
  corpus = Corpus(root=root)
  for source, splits in corpus.source_paths().items():
    for split, path in splits.items():
      rows = grouped[(source, split)]
      (_write_parquet if source in _PARQUET else _write_jsonl)(Path(path), rows)
  text_file = root / "vocabulary_text.txt"
  text_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
  vocabulary.train_sentencepiece([text_file], corpus.vocabulary_path,
                                 vocab_size=VOCABULARY_SIZE, model_type="bpe")
  (root / "sources.json").write_text(json.dumps(corpus.source_paths()))
  summary_path.write_text(json.dumps({
      "seed": seed, "languages": {c: languages.get_language(c).group for c in LANGUAGES},
      "sources": counts, "eval": eval_counts, "chance": CHANCE,
      "checksum": _checksum(root)}, indent=1, ensure_ascii=False))
  return corpus
