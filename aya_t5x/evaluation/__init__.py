"""The Aya evaluation suite: benchmarks as SeqIO tasks, metrics, suites, reports.

Modules (import the one you need; none is imported here, so `import aya_t5x.evaluation`
is cheap):

- `formats`: readers for each benchmark's published file format, with errors that name
  the file, line and field.
- `text`: tokenization and normalisation that work for every script (metrics use it).
- `metrics`: SeqIO metric functions: rank classification (median over templates),
  spBLEU and chrF++, multi-script RougeLsum, SQuAD-style F1 and exact match.
- `eval_sets`: what a benchmark is (files, prompts, metrics) and how its SeqIO tasks
  are registered from a data folder the user gives.
- `predict`: runs the model over examples in fixed-shape batches (option
  log-likelihoods, generated text).
- `suite`: evaluation suites chosen by gin, and running them.
- `suite_evaluator`: the trainer hook that runs a suite every N steps.
- `report`: per task, per language and per resource group; JSON, markdown, PNG; the
  comparison of several runs.
- `commands`: `aya-t5x eval` and `aya-t5x eval report`.
"""
