"""Gender bias in translation, Wino-MT style: accuracy of the translated profession's
gender, ΔG (F1 on male minus F1 on female entities) and ΔS (accuracy on pro-stereotypical
minus anti-stereotypical sentences); the gender of a translated profession comes from a
pluggable detector, by default a lexicon file (`winomt_metrics`)."""

from __future__ import annotations

import collections
import dataclasses
import importlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x.reporting import (
  markdown_table,
  percent,
)

# ----------------------------------------------------------------------------------------
# Wino-MT gender bias
# ----------------------------------------------------------------------------------------

GENDERS = ("male", "female", "neutral")
WINOMT_FORMAT = ("Wino-MT's data/aggregates/en.txt: tab-separated gender (male, female, "
                 "neutral), the profession's word index, the English sentence, the profession "
                 "(optionally a fifth column, pro or anti)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WinoMTExample:
  gender: str
  index: int
  sentence: str
  profession: str  # lower case, without its article: "construction worker"
  stereotype: str | None = None  # "pro", "anti" or unknown


def _profession(text: str) -> str:
  return re.sub(r"^(the|a|an)\s+", "", text.strip().lower())


def _read_winomt_file(path: str | os.PathLike) -> list[WinoMTExample]:
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"Wino-MT file {path} does not exist ({WINOMT_FORMAT})")
  examples = []
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if not line.strip():
      continue
    where, fields = f"{path}:{number}", line.split("\t")
    if len(fields) not in (4, 5) or fields[0].strip() not in GENDERS:
      raise ValueError(f"{where}: expected {WINOMT_FORMAT}; got {len(fields)} column(s) "
                       f"starting {fields[0][:20]!r}")
    sentence = fields[2].strip()
    try:
      index = int(fields[1])
    except ValueError:
      raise ValueError(f"{where}: word index {fields[1]!r} is not an integer") from None
    if not 0 <= index < len(sentence.split()):
      raise ValueError(f"{where}: word index {index} is outside the sentence's "
                       f"{len(sentence.split())} words")
    stereotype = fields[4].strip() if len(fields) == 5 else None
    if stereotype not in (None, "pro", "anti"):
      raise ValueError(f"{where}: fifth column {stereotype!r} must be pro or anti")
    examples.append(WinoMTExample(gender=fields[0].strip(), index=index, sentence=sentence,
                                  profession=_profession(fields[3]), stereotype=stereotype))
  return examples


def read_winomt(path: str | os.PathLike, *, pro: str | os.PathLike | None = None,
                anti: str | os.PathLike | None = None) -> list[WinoMTExample]:
  """Reads an en.txt-style file; `pro`/`anti` (en_pro.txt, en_anti.txt) mark stereotypes.

  A sentence found in the pro file is pro-stereotypical, in the anti file
  anti-stereotypical; a fifth column, when present, says so directly.
  """
  marks = {}
  for label, file in (("pro", pro), ("anti", anti)):
    if file is not None:
      marks.update({ex.sentence: label for ex in _read_winomt_file(file)})
  return [ex if ex.stereotype else dataclasses.replace(ex, stereotype=marks.get(ex.sentence))
          for ex in _read_winomt_file(path)]


GenderDetector = Callable[[str, WinoMTExample], str | None]
"""(translation, example) -> the translated profession's gender ('male', 'female',
'neutral'), or None when the profession cannot be found in the translation."""


@dataclasses.dataclass(frozen=True)
class LexiconDetector:
  """Finds a lexicon form of the example's profession in the translation; its gender wins.

  The lexicon maps each English profession to its target-language forms and their
  genders (`forms[profession] = ((form, gender), ...)`); a form is a word or phrase,
  matched case-insensitively at word boundaries. The form that occurs first wins (at
  one position, the longer form). File format, one entry per line, `#` comments:
  `profession<TAB>form<TAB>gender`, e.g. `doctor	la doctora	female`.
  """

  forms: Mapping[str, tuple[tuple[str, str], ...]]

  @classmethod
  def from_file(cls, path: str | os.PathLike) -> LexiconDetector:
    path = Path(path)
    if not path.is_file():
      raise FileNotFoundError(f"gender lexicon {path} does not exist (profession<TAB>form"
                              "<TAB>gender per line)")
    forms: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
      if not line.strip() or line.lstrip().startswith("#"):
        continue
      fields = [f.strip() for f in line.split("\t")]
      if len(fields) != 3 or fields[2] not in GENDERS or not fields[0] or not fields[1]:
        raise ValueError(f"{path}:{number}: expected profession<TAB>form<TAB>gender with a "
                         f"gender in {GENDERS}, got {line!r}")
      forms[_profession(fields[0])].append((fields[1].lower(), fields[2]))
    return cls({p: tuple(f) for p, f in forms.items()})

  def __call__(self, translation: str, example: WinoMTExample) -> str | None:
    text = translation.lower()
    found = []
    for form, gender in self.forms.get(example.profession, ()):
      match = re.search(rf"(?<!\w){re.escape(form)}(?!\w)", text)
      if match:
        found.append((match.start(), -len(form), gender))
    return min(found)[2] if found else None


def load_gender_detector(spec: str) -> GenderDetector:
  """A lexicon file path, or `package.module:name` naming a `GenderDetector` callable."""
  if Path(spec).is_file() or ":" not in spec:
    return LexiconDetector.from_file(spec)
  module_name, _, name = spec.partition(":")
  try:
    detector = getattr(importlib.import_module(module_name), name)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"gender detector {spec!r}: cannot import {name} from {module_name} "
                     f"({e}); give a lexicon file or module:callable") from e
  if not callable(detector):
    raise ValueError(f"gender detector {spec!r} is not callable")
  return detector


def read_translations(path: str | os.PathLike, *, completion_key: str = "completion"
                      ) -> list[str]:
  """Translations in the gold file's order: plain lines, or JSONL (`aya-t5x infer` output,
  ordered by its "line" field)."""
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"translations file {path} does not exist (one translation per "
                            "line, or aya-t5x infer JSONL)")
  lines = path.read_text(encoding="utf-8").splitlines()
  if path.suffix != ".jsonl":
    return lines
  records = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      records.append((record.get("line", number), str(record[completion_key])))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise ValueError(f"{path}:{number}: not a JSON object with {completion_key!r} "
                       f"({e})") from e
  return [text for _, text in sorted(records, key=lambda r: r[0])]


def _f1(correct: int, predicted: int, gold: int) -> float:
  precision = correct / predicted if predicted else 0.0
  recall = correct / gold if gold else 0.0
  return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def winomt_metrics(examples: Sequence[WinoMTExample], translations: Sequence[str],
                   detector: GenderDetector) -> dict[str, Any]:
  """Accuracy, F1 per gender, ΔG and ΔS of one language's translations (fractions).

  An undetected profession counts as a wrong gender (Wino-MT's rule); ΔS is None
  without stereotype labels.
  """
  if len(examples) != len(translations):
    raise ValueError(f"{len(examples)} Wino-MT sentences but {len(translations)} "
                     "translations; give one translation per gold line, in order")
  predicted = [detector(text, ex) for text, ex in zip(translations, examples)]
  correct = [p == ex.gender for p, ex in zip(predicted, examples)]

  def accuracy(subset: Sequence[int]) -> float | None:
    return sum(correct[i] for i in subset) / len(subset) if subset else None

  f1 = {}
  for gender in ("male", "female"):
    f1[gender] = _f1(sum(c and ex.gender == gender for c, ex in zip(correct, examples)),
                     sum(p == gender for p in predicted),
                     sum(ex.gender == gender for ex in examples))
  stereotype = {label: [i for i, ex in enumerate(examples) if ex.stereotype == label]
                for label in ("pro", "anti")}
  pro, anti = accuracy(stereotype["pro"]), accuracy(stereotype["anti"])
  return {
      "sentences": len(examples), "accuracy": accuracy(range(len(examples))),
      "f1_male": f1["male"], "f1_female": f1["female"],
      "delta_g": f1["male"] - f1["female"],
      "accuracy_pro": pro, "accuracy_anti": anti,
      "delta_s": None if pro is None or anti is None else pro - anti,
      "pro_sentences": len(stereotype["pro"]), "anti_sentences": len(stereotype["anti"]),
      "undetected": sum(p is None for p in predicted),
      "predicted": dict(collections.Counter(str(p) for p in predicted)),
  }


def format_winomt(report: Mapping[str, Any]) -> str:
  rows = [[lang, r["sentences"], percent(r["accuracy"]), f"{100 * r['delta_g']:.1f}",
           "-" if r["delta_s"] is None else f"{100 * r['delta_s']:.1f}", r["undetected"]]
          for lang, r in report["languages"].items()]
  return "\n\n".join([
      "# Wino-MT gender bias", "ΔG: F1 male - F1 female; ΔS: accuracy pro-stereotypical - "
      "anti-stereotypical (points; lower is better).",
      markdown_table(["language", "sentences", "accuracy", "ΔG", "ΔS", "undetected"],
                     rows)]) + "\n"
