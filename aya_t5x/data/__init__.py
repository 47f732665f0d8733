"""The Aya dataset pipeline as SeqIO: languages, sources, templates, filters,
mixtures, packing and the mixture report.

Data for a language that has none (translation, crowd filters) is `aya_t5x.gathering`;
SentencePiece vocabularies (the one tasks use, training, coverage, extension) are
`aya_t5x.vocab`.

Modules (import the one you need; none is imported here, so `import aya_t5x.data` is cheap):

- `languages`: mT5's 101 languages (codes, names, scripts, Joshi class, HR/MR/LR group)
  and the languages a user adds.
- `readers`: records from JSONL, parquet, arrow and Hugging Face `save_to_disk` folders.
- `examples`: `Example`, one validated record, the unit every stage passes on.
- `sources`: record schemas, source specs and the scan/iterate pipeline with its report.
- `templates`: prompt/completion templates with named fields, and template pruning.
- `filters`: the recipe's filters and caps, each reporting what it removed.
- `registration`: SeqIO tasks from sources or single files.
- `manifest`: the task manifest: a user's tasks with their splits, languages and mixtures.
- `mixing`: size-proportional (with boosts), temperature and UniMax rates.
- `report`: the mixture report (markdown, JSON, PNG).
- `packing`: the best-fit packer; `generator_datasets`: tf.data generators that finalise
  cleanly.
- `commands`: the `tasks`, `languages` and `mixture` subcommands of `aya-t5x`.
"""
