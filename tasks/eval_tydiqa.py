"""TyDiQA GoldP: extractive QA from a gold passage in 11 languages, F1 and exact match.

Published as SQuAD-style JSON, `tydiqa-goldp-v1.1-dev.json` (all languages; the
language is the prefix of each question id, `swahili-...`) or one file per language in
`tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-<language>.json`. Put either under
`<eval data>/tydiqa/`. Scored by SQuAD F1 (the recipe's number) and exact match with
normalisation for every script (`text.answer_tokens`).
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.evaluation import eval_sets, formats, metrics

LANGUAGE_NAMES = {"ar": "arabic", "bn": "bengali", "en": "english", "fi": "finnish",
                  "id": "indonesian", "ja": "japanese", "ko": "korean", "ru": "russian",
                  "sw": "swahili", "te": "telugu", "th": "thai"}
COMBINED = "tydiqa-goldp-v1.1-dev.json"


class TyDiQaGoldP(eval_sets.Benchmark):
  def files(self, root: Path, key: str) -> dict[str, Path]:
    per_language = (root / "tydiqa-goldp-v1.1-dev" /
                    f"tydiqa-goldp-dev-{LANGUAGE_NAMES[key]}.json")
    return {"examples": eval_sets.first_existing(per_language, root / COMBINED)}

  def rows(self, files, key):
    prefix = f"{LANGUAGE_NAMES[key]}-"
    records = [r for r in formats.read_squad(files["examples"]) if r["id"].startswith(prefix)]
    # The question comes first, so that cutting a long passage never cuts the question.
    return [{"inputs": f"Question: {r['question']}\nAnswer it with a span of the passage "
                       f"below.\nPassage: {r['context']}",
             "targets": r["answers"][0], "answers": r["answers"]} for r in records]

  def metric_fns(self, key, *, spbleu_model=None):
    return [metrics.squad]

  def postprocess_fn(self):
    return metrics.answers_target


TYDIQA = eval_sets.add_benchmark(TyDiQaGoldP(
    name="tydiqa", title="TyDiQA GoldP", kind="generate", split="validation", folder="tydiqa",
    data_format=formats.SQUAD, languages=tuple(LANGUAGE_NAMES), primary_metric="f1",
    max_input_length=1024, max_target_length=64))
