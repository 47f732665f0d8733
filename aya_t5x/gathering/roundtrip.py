"""Retranslation and round-trip scores (chrF++, spBLEU) that rank translated examples for review.

Filtering II of the Swahili use case (RECIPE.md section 7): each translated example is
machine-translated back into its source language, and the retranslation is compared with
the original. A low score flags a likely bad translation, so the lowest-ranked examples
go to assessors first; a high score proves little ("Heartbreak Hotel" comes back
perfectly from a translation that should not have been made), which is why the
assessors decide.

Scores are sacrebleu's sentence-level chrF++ (`word_order=2`) and spBLEU (BLEU on
SentencePiece pieces of the FLORES-200 model), with the evaluation suite's rule for the
tokenizer (`aya_t5x.evaluation.metrics.TranslationMetrics`): the FLORES-200 model is read
from a local path (`--spbleu_model`, a copy of sacrebleu's `flores200sacrebleuspm`; it
cannot be downloaded here); without it BLEU falls back, with a warning, to sacrebleu's
`char` tokenizer for scripts written without spaces between words and `13a` otherwise.
Every record and report names the tokenizer used, since scores from different tokenizers
do not compare.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aya_t5x import reporting
from aya_t5x.data import languages, readers
from aya_t5x.evaluation import metrics
from aya_t5x.gathering import translation_runs as runs
from aya_t5x.gathering.translation import Backend
from aya_t5x.gathering.translation_runs import Record, ShardResult, Unit, Worker, translate_units

REQUIRED_FIELDS = ("id", "language", "source_language", "original")
class RoundTripScorer:
  """Sentence-level chrF++ and spBLEU of a retranslation against its original."""

  def __init__(self, spm_model: str | os.PathLike | None = None):
    from sacrebleu.metrics import CHRF

    self.spm_model = os.fspath(spm_model) if spm_model else None
    # The evaluation suite's spBLEU: the FLORES-200 pieces, or its named fallbacks.
    self._pieces = metrics.flores200_pieces(self.spm_model) if self.spm_model else None
    self._chrf = CHRF(word_order=2)
    self._bleu: dict[tuple[str, bool], Any] = {}
    self._warned: set[str] = set()

  def tokenizer(self, language: str) -> str:
    """The BLEU tokenizer for texts in `language`: 'flores200', or a fallback."""
    return metrics.bleu_tokenizer(languages.get_language(language).code, self.spm_model)

  def _metric(self, language: str, sentence: bool):
    from sacrebleu.metrics import BLEU

    name = self.tokenizer(language)
    if name != "flores200" and language not in self._warned:
      self._warned.add(language)
      logging.warning("spBLEU for %s: no FLORES-200 SentencePiece model given "
                      "(--spbleu_model); BLEU uses sacrebleu's %r tokenizer instead, which "
                      "is not comparable with published spBLEU.", language, name)
    key = (name, sentence)
    if key not in self._bleu:
      # What sacrebleu's flores200 tokenizer does, with the model read from a local path.
      self._bleu[key] = BLEU(tokenize="none" if name == "flores200" else name,
                             effective_order=sentence)
    return self._bleu[key]

  def _tokenized(self, text: str) -> str:
    return " ".join(self._pieces.encode(text, out_type=str)) if self._pieces else text

  def score(self, original: str, retranslation: str, language: str) -> dict[str, Any]:
    """chrF++ and spBLEU (0-100, higher is closer) of one retranslation into `language`."""
    bleu = self._metric(language, sentence=True)
    return {"chrf": self._chrf.sentence_score(retranslation, [original]).score,
            "spbleu": bleu.sentence_score(self._tokenized(retranslation),
                                          [self._tokenized(original)]).score,
            "tokenizer": self.tokenizer(language)}

  def corpus(self, originals: Sequence[str], retranslations: Sequence[str], language: str
             ) -> dict[str, float]:
    """Corpus-level chrF++ and spBLEU over many retranslations into `language`."""
    bleu = self._metric(language, sentence=False)
    return {"chrf": self._chrf.corpus_score(list(retranslations), [list(originals)]).score,
            "spbleu": bleu.corpus_score([self._tokenized(t) for t in retranslations],
                                        [[self._tokenized(t) for t in originals]]).score}


def _joined(texts: Mapping[str, str], fields: Sequence[str]) -> str:
  return "\n".join(texts[f] for f in fields)


# ----------------------------------------------------------------------------- retranslation


def retranslation_units(records: Sequence[tuple[str, Record]]) -> list[Unit]:
  """One unit per translated record (the output of `aya-t5x translate`), back to its source."""
  units = []
  for location, record in records:
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing or not isinstance(record["original"], dict):
      raise ValueError(f"{location}: not a translated record (needs fields "
                       f"{', '.join(REQUIRED_FIELDS)}, with 'original' an object); give the "
                       "data folder `aya-t5x translate` wrote")
    units.append(Unit(key=str(record["id"]), source_id=str(record.get("source_id", "")),
                      record=record, source_language=record["language"],
                      target_language=record["source_language"]))
  return units


def retranslation_worker(backend: Backend, scorer: RoundTripScorer, *, batch_size: int = 32,
                         split: bool = True) -> Worker:
  """Translates each record's fields back and scores the round trip; drops nothing."""

  def work(units: Sequence[Unit]) -> ShardResult:
    back, sentences = translate_units(backend, units, lambda unit: list(unit.record["original"]),
                                      batch_size=batch_size, split=split)
    records = []
    for unit, retranslation in zip(units, back):
      fields = list(unit.record["original"])
      scores = scorer.score(_joined(unit.record["original"], fields),
                            _joined(retranslation, fields), unit.target_language)
      records.append({**unit.record, "retranslation": retranslation, "roundtrip": scores})
    return ShardResult(records=records, sentences=sentences)

  return work


# ----------------------------------------------------------------------------- ranking


def read_scored(path: str | os.PathLike) -> list[Record]:
  """The records `retranslate` wrote (any file or folder `readers` reads)."""
  records = []
  for location, record in readers.iter_records(path):
    if isinstance(record, readers.MalformedRecord):
      raise ValueError(str(record))
    if "roundtrip" not in record or "retranslation" not in record:
      raise ValueError(f"{location}: no round-trip scores; give the data folder "
                       "`aya-t5x retranslate` wrote")
    records.append(record)
  return records


def ranked(records: Sequence[Record], by: str = "chrf") -> list[Record]:
  """Records from the worst round trip to the best (the order to review them in)."""
  if by not in ("chrf", "spbleu"):
    raise ValueError(f"rank by 'chrf' or 'spbleu', not {by!r}")
  other = "spbleu" if by == "chrf" else "chrf"
  return sorted(records, key=lambda r: (r["roundtrip"][by], r["roundtrip"][other], r["id"]))


def roundtrip_report(records: Sequence[Record], scorer: RoundTripScorer, *,
                     show: int = 10) -> tuple[dict[str, Any], str]:
  """Per-language round-trip scores and the lowest-ranked examples: JSON facts and markdown."""
  by_language: dict[tuple[str, str], list[Record]] = defaultdict(list)
  for record in records:
    by_language[(record["language"], record["source_language"])].append(record)
  rows, facts = [], []
  for (language, source), members in sorted(by_language.items()):
    fields = [list(r["original"]) for r in members]
    corpus = scorer.corpus([_joined(r["original"], f) for r, f in zip(members, fields)],
                           [_joined(r["retranslation"], f) for r, f in zip(members, fields)],
                           source)
    chrf = [r["roundtrip"]["chrf"] for r in members]
    facts.append({"language": language, "source_language": source, "examples": len(members),
                  "corpus_chrf": corpus["chrf"], "corpus_spbleu": corpus["spbleu"],
                  "median_chrf": statistics.median(chrf), "tokenizer": scorer.tokenizer(source)})
    rows.append([f"{source}->{language}->{source}", len(members), corpus["chrf"],
                 corpus["spbleu"], statistics.median(chrf), scorer.tokenizer(source)])
  worst = ranked(records)[:show]
  report = {"spbleu_model": scorer.spm_model, "examples": len(records), "languages": facts,
            "lowest": [{"id": r["id"], **{k: r["roundtrip"][k] for k in ("chrf", "spbleu")}}
                       for r in worst]}
  lines = ["# Round-trip scores", "",
           "chrF++ (word_order=2) and spBLEU of each retranslation against its original; "
           "low scores are reviewed first. spBLEU tokenizer per language below ('flores200' "
           f"is the FLORES-200 model{f' at {scorer.spm_model}' if scorer.spm_model else ''}; "
           "'13a' and 'char' are fallbacks that do not compare with published spBLEU).", ""]
  lines.append(reporting.data_table(
      ["round trip", "examples", "corpus chrF++", "corpus spBLEU", "median chrF++",
       "tokenizer"], rows))
  lines += ["", f"Lowest {len(worst)}:", ""]
  lines.append(reporting.data_table(
      ["id", "chrF++", "spBLEU", "original", "retranslation"],
      [[r["id"], r["roundtrip"]["chrf"], r["roundtrip"]["spbleu"],
        _joined(r["original"], list(r["original"])),
        _joined(r["retranslation"], list(r["original"]))] for r in worst]))
  return report, "\n".join(lines)


def retranslate_dataset(backend: Backend, translated: str | os.PathLike,
                        output_dir: str | os.PathLike, *, scorer: RoundTripScorer,
                        tolerant: bool = False, batch_size: int = 32,
                        split_sentences: bool = True,
                        shards: runs.ShardPlan = runs.ShardPlan()) -> runs.StepResult:
  """Translates a translation step's output back into its source language, resumably.

  `translated` is a translate step's output folder (its `data/`) or data file. Writes
  `retranslation_report.{md,json}` and, once every shard is done, the round-trip scores'
  `roundtrip_report.{md,json}`; the records carry their scores for `review build-task`.
  """
  data = Path(translated)
  if (data / runs.DATA_DIR).is_dir():
    data = data / runs.DATA_DIR
  if data.resolve().is_relative_to(Path(output_dir).resolve()):
    raise ValueError(f"--output {output_dir} contains the input {data}; write elsewhere")
  records, skipped = runs.read_input(data, tolerant=tolerant)
  settings = {"step": "retranslate", "input": str(data), "backend": backend.description,
              "split_sentences": split_sentences, "spbleu_model": scorer.spm_model}
  summary = runs.run_shards(
      retranslation_units(records), output_dir,
      retranslation_worker(backend, scorer, batch_size=batch_size, split=split_sentences),
      settings=settings, examples_per_shard=shards.examples_per_shard,
      num_shards=shards.num_shards, host_index=shards.host_index,
      host_count=shards.host_count)
  reports = {"retranslation": runs.format_summary(
      summary, title="Retranslation", backend=backend.description, skipped=skipped)}
  if summary.complete:
    reports["roundtrip"] = roundtrip_report(read_scored(summary.data_dir), scorer)
  paths = {}
  for name, report in reports.items():
    paths.update({f"{name}_{kind}": path for kind, path in
                  runs.write_step_report(output_dir, name, report).items()})
  return runs.StepResult(summary=summary, reports=reports, report_paths=paths)
