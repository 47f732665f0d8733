"""Tiny models, vocabularies and translation models for tests, benchmarks and CPU smoke runs.

Modules:

- `models`: tiny `MT5Config`s (`TINY`, `TINY_UNEVEN`) and randomly initialised Hugging
  Face reference models of any config (needs torch and transformers).
- `vocabularies`: multilingual text in five scripts and small SentencePiece vocabularies
  trained on it.
- `translation_models`: tiny random M2M100 and aya_t5x translation models built offline.

`TINY` and `TINY_UNEVEN` are also importable from here (`testing.TINY`).
"""

from aya_t5x.testing.models import TINY, TINY_UNEVEN

__all__ = ["TINY", "TINY_UNEVEN"]
