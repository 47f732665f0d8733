"""SentencePiece vocabularies, one home: the SeqIO vocabulary tasks use, training, coverage
reports and extension (the `aya-t5x vocab` command; docs/vocabulary.md).

Modules (import the one you need; none is imported here):

- `vocabulary`: the SeqIO vocabulary from a path (mT5's `extra_ids=0`), its id checks, and
  `train_sentencepiece` (T5 ids: pad 0, eos 1, unk 2, no bos).
- `coverage`: pieces per word and per character, unknown share and uncovered characters
  per language, and the `vocab_report.{md,json,png}` files.
- `extension`: new pieces learnt from new text appended to a model's proto, old ids kept.
- `commands`: the `vocab` subcommands.

Growing a checkpoint to an extended vocabulary is `aya_t5x.checkpoints.resize`.
"""
