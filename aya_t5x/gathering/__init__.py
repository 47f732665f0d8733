"""Data for a language that has none: translation, round trips and crowd quality filters.

The second product beside the Aya dataset pipeline (`aya_t5x.data`): what the recipe did
to bring a language into the mixture (RECIPE.md §5-6), as library functions and the
`translate`, `retranslate`, `assessors` and `review` commands
(docs/new_language_data.md).

Modules (import the one you need; none is imported here):

- `sentences`: sentence splitting per language and script that joins back.
- `translation`: translating texts with any sequence-to-sequence backend, with output
  checks.
- `translation_backends`: aya_t5x checkpoints, Hugging Face NLLB and M2M100 as backends.
- `translation_runs`: whole datasets in resumable shards, per-language caps, hosts, the
  report; `translate_dataset` and `retranslate_dataset` chain a run end to end.
- `roundtrip`: retranslation and round-trip chrF++/spBLEU that rank examples for review.
- `crowd_files`: assessor task and answer files (JSONL, CSV, TSV, Toloka, Mechanical Turk).
- `qualification`: Filtering I, assessors scored on a golden task.
- `review`: Filtering II, votes weighed by assessor skill, what is kept and dropped.
- `commands`: the command-line handlers.
"""
