"""Growing a checkpoint to an extended vocabulary: new embedding rows and output columns.

`resize_checkpoint` is what `aya-t5x vocab resize-checkpoint` runs. The new vocabulary
must extend the old one (every old id keeps its piece, as `aya_t5x.vocab.extension`
writes it). `token_embedder/embedding` gains rows and `decoder/logits_dense/kernel`
columns; every other parameter, and every row and column of an old piece, is copied
bit for bit.

A new piece starts as the mean of the rows of the pieces the old vocabulary splits its
text into (the unknown piece left out when other pieces are there), and its output
column as the mean of the same pieces' columns. Rows past the last piece (padding, so
that the table stays a multiple of 128 for TPU-friendly shapes) start as the mean of the
old padding rows where the old table had some (mT5's 250,100 pieces sit in 250,112
rows), else as the unknown piece's row: ids a model should not write.

mT5's layout: the first new pieces fill the old padding rows (12 for mT5), and only more
pieces grow the table, to the next multiple of 128.

The checkpoint written holds parameters only: fine-tuning it (INITIAL_CHECKPOINT_PATH)
starts a fresh optimizer state, since the old moments have no entries for the new rows.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aya_t5x.model_config import MT5Config

ROW_MULTIPLE = 128


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resize:
  """What a resize read and wrote."""

  destination: Path
  fmt: str
  config: MT5Config  # the resized model
  old_rows: int
  old_pieces: int
  new_pieces: int


def resized_rows(old_rows: int, pieces: int, multiple: int = ROW_MULTIPLE) -> int:
  """Embedding rows for `pieces` pieces: the old table if they fit, else the next multiple."""
  if pieces <= old_rows:
    return old_rows
  return math.ceil(pieces / multiple) * multiple


def _raw_processor(path: str | os.PathLike):
  """The model at `path`, without the dummy prefix or whitespace clean-up, so that a piece's
  own text (word-initial or not) is what gets split."""
  import sentencepiece as spm

  from aya_t5x.vocab.extension import read_model_proto

  proto = read_model_proto(path)
  proto.normalizer_spec.add_dummy_prefix = False
  proto.normalizer_spec.remove_extra_whitespaces = False
  return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def check_extends(old_path: str | os.PathLike, new_path: str | os.PathLike) -> tuple[int, int]:
  """(old pieces, new pieces); raises when an old id's piece differs in the new model."""
  from aya_t5x.vocab.extension import read_model_proto

  old, new = read_model_proto(old_path), read_model_proto(new_path)
  if len(new.pieces) < len(old.pieces):
    raise ValueError(f"{new_path} has {len(new.pieces)} pieces, fewer than {old_path}'s "
                     f"{len(old.pieces)}: give the extended vocabulary as --new_vocabulary.")
  for i, (a, b) in enumerate(zip(old.pieces, new.pieces)):
    if a.piece != b.piece:
      raise ValueError(
          f"{new_path} does not extend {old_path}: id {i} is {b.piece!r} there and "
          f"{a.piece!r} here. Make it with `aya-t5x vocab extend --vocabulary {old_path}`.")
  return len(old.pieces), len(new.pieces)


def new_piece_sources(old_path: str | os.PathLike, new_path: str | os.PathLike
                      ) -> list[list[int]]:
  """For each piece past the old vocabulary, the old ids its text splits into (no unknown
  id unless the text is all unknown)."""
  from aya_t5x.vocab.extension import read_model_proto

  old_pieces, _ = check_extends(old_path, new_path)
  processor = _raw_processor(old_path)
  unk = processor.unk_id()
  sources = []
  for piece in read_model_proto(new_path).pieces[old_pieces:]:
    ids = processor.encode(piece.piece.replace("\u2581", " "))
    known = [i for i in ids if i != unk]
    sources.append(known or [unk])
  return sources


def resize_params(params: dict, config: MT5Config, *, old_vocabulary: str | os.PathLike,
                  new_vocabulary: str | os.PathLike) -> tuple[dict, MT5Config]:
  """The parameters and config of the model grown to `new_vocabulary` (see the docstring)."""
  old_pieces, new_pieces = check_extends(old_vocabulary, new_vocabulary)
  old_rows = config.vocab_size
  if old_pieces > old_rows:
    raise ValueError(f"{old_vocabulary} has {old_pieces} pieces but the checkpoint's "
                     f"embedding has {old_rows} rows: give the vocabulary the checkpoint "
                     "was trained with as --old_vocabulary.")
  rows = resized_rows(old_rows, new_pieces)
  sources = new_piece_sources(old_vocabulary, new_vocabulary)
  unk = _raw_processor(old_vocabulary).unk_id()

  def grow(table: np.ndarray) -> np.ndarray:  # [old_rows, d] -> [rows, d]
    table = np.asarray(table)
    grown = np.empty((rows, table.shape[1]), table.dtype)
    grown[:old_rows] = table
    def mean(rows) -> np.ndarray:  # in float32 whatever the stored dtype (bfloat16)
      return table[rows].astype(np.float32).mean(axis=0).astype(table.dtype)

    for offset, ids in enumerate(sources):
      grown[old_pieces + offset] = mean(ids)
    padding = mean(slice(old_pieces, old_rows)) if old_rows > old_pieces else table[unk]
    grown[max(new_pieces, old_rows):] = padding
    return grown

  embedder = dict(params["token_embedder"])
  embedder["embedding"] = grow(embedder["embedding"])
  decoder = dict(params["decoder"])
  logits = dict(decoder["logits_dense"])
  logits["kernel"] = grow(np.asarray(logits["kernel"]).T).T  # [d, vocab]: columns
  decoder["logits_dense"] = logits
  resized = {**params, "token_embedder": embedder, "decoder": decoder}
  return resized, dataclasses.replace(config, vocab_size=rows)


def resize_checkpoint(source: str | os.PathLike, destination: str | os.PathLike, *,
                      old_vocabulary: str | os.PathLike, new_vocabulary: str | os.PathLike,
                      source_format: str | None = None, target_format: str | None = None,
                      config: MT5Config | None = None) -> Resize:
  """Reads a checkpoint (aya_t5x, a training run, T5X or Hugging Face), grows it to
  `new_vocabulary` and writes it to `destination` in `target_format` (default: the
  source's; a training run gives an aya_t5x parameter checkpoint)."""
  from aya_t5x.checkpoints import conversion, formats

  source_format = source_format or formats.detect_format(source)
  target_format = target_format or source_format
  if target_format not in formats.FORMATS:
    raise ValueError(f"unknown target format {target_format!r}; choose from {formats.FORMATS}")
  destination = Path(destination)
  if destination.exists() and any(destination.iterdir()):
    raise FileExistsError(f"{destination} exists and is not empty; choose a new folder.")
  params, old_config, _ = conversion.read_checkpoint(
      source, source_format=source_format, config=config,
      example_command=f"aya-t5x vocab resize-checkpoint --checkpoint {source} --gin_file "
                      "models/mt5_small.gin ...")
  old_pieces, new_pieces = check_extends(old_vocabulary, new_vocabulary)
  params, new_config = resize_params(params, old_config, old_vocabulary=old_vocabulary,
                                     new_vocabulary=new_vocabulary)
  formats.save_params(params, new_config, str(destination), fmt=target_format)
  return Resize(destination=destination, fmt=target_format, config=new_config,
                old_rows=old_config.vocab_size, old_pieces=old_pieces, new_pieces=new_pieces)


def summary(resize: Resize) -> Sequence[str]:
  """Lines for the terminal: what grew and how to fine-tune the result."""
  added = resize.new_pieces - resize.old_pieces
  return (f"wrote {resize.fmt} checkpoint {resize.destination}: {added} new piece(s), "
          f"{resize.old_pieces} -> {resize.new_pieces} pieces, embedding rows "
          f"{resize.old_rows} -> {resize.config.vocab_size}",
          "fine-tune it with --gin.INITIAL_CHECKPOINT_PATH=... and a model whose vocab_size "
          f"is {resize.config.vocab_size} (--gin.MT5Config.vocab_size="
          f"{resize.config.vocab_size}); the optimizer state starts fresh.")
