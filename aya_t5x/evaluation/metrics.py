"""SeqIO metric functions of the evaluation suite, and the postprocessors that feed them.

Metric functions follow SeqIO's contract: `fn(targets, scores)` for rank classification
and `fn(targets, predictions)` for generation, returning `{name: value}`. Every value is
on a 0-100 scale, as the Aya papers report them. An empty prediction scores 0 for its
example (no metric here fails on one); the suite counts them.

- `rank_classification`: per template, the option with the highest log-likelihood is the
  answer; accuracy per template and its median over templates (the reported score).
- `TranslationMetrics`: spBLEU (BLEU on FLORES-200 SentencePiece pieces, sacrebleu's
  `flores200` tokenizer, read from a local model file) and chrF++.
- `rouge_lsum`: RougeLsum with `text.words`, which tokenizes every script.
- `squad`: SQuAD-style F1 and exact match with `text.answer_tokens` (TyDiQA GoldP).
- `exact_match`, `chrf`: simple generation metrics (the demo suite).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aya_t5x.evaluation import text

# Fallback BLEU tokenizers without the FLORES-200 SentencePiece model: characters for the
# scripts without spaces between words, sacrebleu's default otherwise.
FALLBACK_TOKENIZER = "13a"
FALLBACK_UNSPACED_TOKENIZER = "char"


# ----------------------------------------------------------------------------- rank classification


class RankTarget(NamedTuple):
  """What a rank-classification row is: which example, which template, correct or not."""

  example: int
  template: int
  is_correct: bool


def rank_target(target: Any, example: Mapping[str, Any] | None = None,
                is_target: bool = False) -> Any:
  """SeqIO postprocess_fn of rank-classification rows (features idx, template, is_correct)."""
  if not is_target:
    return target
  return RankTarget(int(example["idx"]), int(example.get("template", 0)),
                    bool(example["is_correct"]))


def rank_choices(targets: Sequence[RankTarget], scores: Sequence[float]
                 ) -> dict[tuple[int, int], tuple[int, bool]]:
  """(example, template) -> (row of the highest-scoring option, whether it is correct).

  Ties go to the first option, as numpy's argmax does.
  """
  if len(targets) != len(scores):
    raise ValueError(f"{len(targets)} rank-classification targets but {len(scores)} scores")
  best: dict[tuple[int, int], tuple[float, int, bool]] = {}
  for row, (target, score) in enumerate(zip(targets, scores)):
    key = (target.example, target.template)
    if key not in best or float(score) > best[key][0]:
      best[key] = (float(score), row, bool(target.is_correct))
  return {key: (row, correct) for key, (_, row, correct) in best.items()}


def rank_classification(targets: Sequence[RankTarget], scores: Sequence[float]
                        ) -> dict[str, float]:
  """Accuracy of each prompt template, and their median (`accuracy`), in percent.

  `targets` come from `rank_target`; `scores` are the log-likelihoods of each row's
  option as the target (the sum of its token log-probabilities, EOS included).
  """
  per_template: dict[int, list[bool]] = collections.defaultdict(list)
  for (_, template), (_, correct) in sorted(rank_choices(targets, scores).items()):
    per_template[template].append(correct)
  if not per_template:
    return {"accuracy": 0.0}
  accuracies = {t: 100.0 * sum(c) / len(c) for t, c in sorted(per_template.items())}
  out = {"accuracy": float(statistics.median(accuracies.values()))}
  out.update({f"accuracy_template_{t}": value for t, value in accuracies.items()})
  return out


# ----------------------------------------------------------------------------- generation


def accuracy(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Share of predictions identical to their target (T5's `accuracy`), in percent."""
  if not targets:
    return {"accuracy": 0.0}
  return {"accuracy": 100.0 * sum(str(t) == str(p) for t, p in zip(targets, predictions))
          / len(targets)}


def exact_match(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Share of predictions equal to their target after SQuAD v1.1's answer normalisation
  (`text.answer_tokens`: case, punctuation, English articles and spacing ignored), in
  percent; `squad` is the same with several gold answers per example."""
  if not targets:
    return {"exact_match": 0.0}
  hits = sum(text.answer_tokens(str(t)) == text.answer_tokens(str(p))
             for t, p in zip(targets, predictions))
  return {"exact_match": 100.0 * hits / len(targets)}


def chrf(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """sacrebleu's corpus chrF (character 6-grams, beta 2)."""
  from sacrebleu.metrics import CHRF

  return {"chrf": CHRF().corpus_score(list(predictions), [list(targets)]).score}


def bleu_tokenizer(language: str, spm_model: str | os.PathLike | None) -> str:
  """The BLEU tokenizer for texts in `language`: 'flores200' with the FLORES-200 model,
  else sacrebleu's `char` for scripts without spaces between words and `13a` otherwise."""
  if spm_model:
    return "flores200"
  from aya_t5x.data import languages

  found = languages.find_language(language)
  unspaced = found is not None and found.script in text.UNSPACED_SCRIPTS
  return FALLBACK_UNSPACED_TOKENIZER if unspaced else FALLBACK_TOKENIZER


@functools.lru_cache(maxsize=4)
def flores200_pieces(spm_model: str):
  """The FLORES-200 SentencePiece model (sacrebleu's `flores200sacrebleuspm`) from a local
  path, or FileNotFoundError naming it and the fallback."""
  import sentencepiece as spm

  path = Path(spm_model)
  if not path.is_file():
    raise FileNotFoundError(
        f"FLORES-200 SentencePiece model {path} not found (sacrebleu's "
        "flores200sacrebleuspm, from https://tinyurl.com/flores200sacrebleuspm); give "
        "its local path with --spbleu_model, or leave it out to fall back to "
        f"{FALLBACK_TOKENIZER!r}/{FALLBACK_UNSPACED_TOKENIZER!r}.")
  processor = spm.SentencePieceProcessor()
  processor.Load(str(path))
  return processor


@dataclasses.dataclass(frozen=True, kw_only=True)
class TranslationMetrics:
  """spBLEU and chrF++ of translations into `target_language` (FLORES-200).

  spBLEU is BLEU on the pieces of the FLORES-200 SentencePiece model, exactly what
  sacrebleu's `flores200` tokenizer computes; sacrebleu would download that model, so
  it is read from `spm_model` (a local copy of sacrebleu's `flores200sacrebleuspm`).
  Without it the BLEU falls back to sacrebleu's `char` tokenizer for scripts without
  spaces and `13a` otherwise, with a warning; `spbleu_tokenizer` in the results says
  which was used, so that reports never mix the two silently.
  """

  target_language: str
  spm_model: str | None = None

  def tokenizer(self) -> str:
    """The name of the BLEU tokenizer these metrics use."""
    return bleu_tokenizer(self.target_language, self.spm_model)

  def __call__(self, targets: Sequence[str], predictions: Sequence[str]) -> dict[str, Any]:
    import seqio
    from sacrebleu.metrics import BLEU, CHRF

    hypotheses, references = [str(p) for p in predictions], [str(t) for t in targets]
    tokenizer = self.tokenizer()
    if self.spm_model:
      pieces = flores200_pieces(str(self.spm_model))

      def split(line: str) -> str:
        return " ".join(pieces.EncodeAsPieces(line))

      hypotheses, references = [split(h) for h in hypotheses], [split(r) for r in references]
      bleu = BLEU(tokenize="none")
    else:
      logging.warning("spBLEU for %s: no FLORES-200 SentencePiece model given "
                      "(--spbleu_model); BLEU uses sacrebleu's %r tokenizer instead, which "
                      "is not comparable with published spBLEU.", self.target_language,
                      tokenizer)
      bleu = BLEU(tokenize=tokenizer)
    return {
        "spbleu": bleu.corpus_score(hypotheses, [references]).score,
        "chrf++": CHRF(word_order=2).corpus_score([str(p) for p in predictions],
                                                  [[str(t) for t in targets]]).score,
        "spbleu_tokenizer": seqio.metrics.Text(textdata=tokenizer),
    }


class _ScriptTokenizer:
  """rouge-score's tokenizer interface over `text.words`."""

  def tokenize(self, sentence: str) -> list[str]:
    return text.words(sentence)


def rouge_lsum(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
  """Mean RougeLsum F-measure in percent, tokenized for every script.

  Summaries are split into sentences (`text.sentences`) before RougeLsum's
  summary-level LCS, which is what the 'sum' in its name needs.
  """
  from rouge_score import rouge_scorer

  scorer = rouge_scorer.RougeScorer(["rougeLsum"], tokenizer=_ScriptTokenizer())
  scores = [scorer.score("\n".join(text.sentences(str(t))),
                         "\n".join(text.sentences(str(p))))["rougeLsum"].fmeasure
            for t, p in zip(targets, predictions)]
  return {"rougeLsum": 100.0 * sum(scores) / len(scores) if scores else 0.0}


def answers_target(target: Any, example: Mapping[str, Any] | None = None,
                   is_target: bool = False) -> Any:
  """SeqIO postprocess_fn of QA rows: the target is the list of gold answers."""
  if not is_target:
    return target
  return [a.decode("utf-8") if isinstance(a, bytes) else str(a) for a in example["answers"]]


def _f1(gold: list[str], predicted: list[str]) -> float:
  common = collections.Counter(gold) & collections.Counter(predicted)
  overlap = sum(common.values())
  if not gold or not predicted:
    return float(gold == predicted)
  if overlap == 0:
    return 0.0
  precision, recall = overlap / len(predicted), overlap / len(gold)
  return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
  """SQuAD F1 and exact match in percent, the best over each example's gold answers."""
  f1 = em = 0.0
  for golds, prediction in zip(targets, predictions):
    predicted = text.answer_tokens(str(prediction))
    gold_tokens = [text.answer_tokens(g) for g in ([golds] if isinstance(golds, str) else golds)]
    f1 += max((_f1(g, predicted) for g in gold_tokens), default=0.0)
    em += max((float(g == predicted) for g in gold_tokens), default=0.0)
  count = max(len(predictions), 1)
  return {"f1": 100.0 * f1 / count, "exact_match": 100.0 * em / count}
