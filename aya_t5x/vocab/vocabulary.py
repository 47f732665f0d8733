"""SentencePiece vocabularies for tasks and models: mT5's from a path, small ones trained here.

mT5 uses `mc4.250000.100extra/sentencepiece.model`, whose 100 sentinel ids are already
inside the model, so it is read with `extra_ids=0` (adding 100 more would shift every id
past the model's 250,112 rows). gin selects the vocabulary with a `VOCABULARY` macro, as
in T5X (see `gin/mixtures/vocabulary.gin`):

    VOCABULARY = @aya_t5x.vocab.vocabulary.sentencepiece_vocabulary()
    aya_t5x.vocab.vocabulary.sentencepiece_vocabulary.path = %VOCABULARY_PATH

`train_sentencepiece` builds a small vocabulary with T5's id conventions (pad 0, eos 1,
unk 2, no bos) for demos and tests.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import gin

MT5_VOCABULARY_URL = "gs://t5-data/vocabs/mc4.250000.100extra/sentencepiece.model"
MT5_VOCABULARY_SIZE = 250100  # pieces in the model file; MT5Config pads rows to 250,112

# T5's conventions; the feature converters and the loss rely on them.
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2


def _exists(path: str) -> bool:
  if "://" in path:
    import tensorflow as tf

    return tf.io.gfile.exists(path)
  return Path(path).is_file()


@gin.configurable(module="aya_t5x.vocab.vocabulary")
def sentencepiece_vocabulary(path: str = gin.REQUIRED, extra_ids: int = 0):
  """A `seqio.SentencePieceVocabulary` read from `path` (local or a bucket path).

  `extra_ids` stays 0 for mT5's `mc4.250000.100extra` and for vocabularies trained with
  `train_sentencepiece`; it exists for T5-style models whose sentinels live outside the
  model file.
  """
  import seqio

  path = os.fspath(path)
  if not _exists(path):
    raise FileNotFoundError(
        f"SentencePiece model {path!r} not found. For mT5 give the local copy of "
        f"{MT5_VOCABULARY_URL} (--gin.VOCABULARY_PATH=...), or train a small one with "
        "aya_t5x.vocab.vocabulary.train_sentencepiece for a demo.")
  vocabulary = seqio.SentencePieceVocabulary(path, extra_ids=extra_ids)
  if (vocabulary.pad_id, vocabulary.eos_id, vocabulary.unk_id) != (PAD_ID, EOS_ID, UNK_ID):
    raise ValueError(
        f"SentencePiece model {path}: ids pad={vocabulary.pad_id}, eos={vocabulary.eos_id}, "
        f"unk={vocabulary.unk_id}; T5 models need pad=0, eos=1, unk=2. Retrain it with "
        "train_sentencepiece (or --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1).")
  return vocabulary


def mt5_vocabulary(path: str):
  """mT5's vocabulary (`mc4.250000.100extra`) from a local or bucket path, checked for size."""
  vocabulary = sentencepiece_vocabulary(path, extra_ids=0)
  if vocabulary.vocab_size != MT5_VOCABULARY_SIZE:
    raise ValueError(
        f"{path} has {vocabulary.vocab_size} pieces; mT5's mc4.250000.100extra has "
        f"{MT5_VOCABULARY_SIZE}. Give the mT5 model file ({MT5_VOCABULARY_URL}), or use "
        "sentencepiece_vocabulary for another vocabulary.")
  return vocabulary


def check_fits_model(vocabulary, model_vocab_size: int) -> None:
  """Raises when token ids could exceed the model's embedding rows."""
  if vocabulary.vocab_size > model_vocab_size:
    raise ValueError(
        f"vocabulary has {vocabulary.vocab_size} ids but the model has {model_vocab_size} "
        "embedding rows; set MT5Config.vocab_size to at least the vocabulary size.")


def _sentences(text_files: Sequence[str | os.PathLike]) -> Iterable[str]:
  for name in text_files:
    with open(name, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if line:
          yield line


def train_sentencepiece(text_files: Sequence[str | os.PathLike], model_path: str | os.PathLike,
                        *, vocab_size: int = 512, model_type: str = "unigram",
                        character_coverage: float = 1.0, byte_fallback: bool = False,
                        seed_sentencepiece_size: int = 100_000) -> Path:
  """Trains a SentencePiece model on UTF-8 text files (one sentence a line) and writes it.

  Ids follow T5: pad 0, eos 1, unk 2, no bos, so a model trained here reads back with
  `sentencepiece_vocabulary(path)` and feeds the T5 feature converters. The vocabulary
  is a hard limit only when the text has enough distinct pieces: on a few hundred
  sentences SentencePiece may stop below `vocab_size`, which is fine for a model whose
  embedding has `vocab_size` rows. `byte_fallback` spells unseen characters as bytes
  instead of `<unk>` (it costs 256 ids). Deterministic for the same files.
  """
  import sentencepiece as spm

  files = [os.fspath(f) for f in text_files]
  for name in files:
    if not Path(name).is_file():
      raise FileNotFoundError(f"training text {name!r} not found (one sentence a line).")
  sentences = list(_sentences(files))
  if not sentences:
    raise ValueError(f"no text in {files}: the training files are empty.")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
      model_type=model_type, character_coverage=character_coverage,
      byte_fallback=byte_fallback, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      hard_vocab_limit=False, seed_sentencepiece_size=seed_sentencepiece_size,
      # One thread and no sampling of the input keep the result identical run to run.
      num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
      minloglevel=2)
  out = Path(model_path)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_bytes(model.getvalue())
  return out
