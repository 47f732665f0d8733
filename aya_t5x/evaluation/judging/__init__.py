"""LLM judges and the recipe's judged and safety evaluations (RECIPE.md §5), one module each.

- `backends`: the `Judge` protocol, `HttpJudge` (any OpenAI-compatible endpoint),
  `LocalJudge` (an aya_t5x model), and `run_judge` (resumable, one JSONL line per item).
- `generation`: reading generation files and joining two models' by prompt.
- `pairwise`: pairwise win rates by the recipe's rules.
- `harmful`: the judge-rated harmful-answer rate per language.
- `toxicity`: expected maximum toxicity and toxicity probability from supplied scores.
- `gender_bias`: Wino-MT gender accuracy, ΔG and ΔS of translations.
- `detection`: toxicity detection by log P(yes) - log P(no), and its AUC.

The context-distillation filter on a teacher's answers is `aya_t5x.data.filters`'
(`SafetyDistillationFilter`, `filter_distillation_answers`), beside the other filters.
"""
