"""Tiny random translation models built offline, for tests and benchmarks: M2M100 and aya_t5x.

Nothing is downloaded. `build_tiny_m2m100` trains a small SentencePiece model on the
given sentences, writes the `vocab.json` + `sentencepiece.bpe.model` pair that
`M2M100Tokenizer` reads (its ids: `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, then the
pieces, then one `__xx__` token per M2M100 language and 8 spare ids), and saves a
randomly initialised `M2M100ForConditionalGeneration` whose embedding covers all of them
(language tokens scaled down, so it writes pieces rather than language tokens);
`AutoTokenizer` / `AutoModelForSeq2SeqLM.from_pretrained` load the folder as they would
a real M2M100. `build_tiny_aya_t5x` writes an aya_t5x checkpoint of a tiny mT5 and a
SentencePiece vocabulary with T5's ids. Both translate into noise, quickly.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path


def _write_text(folder: Path, sentences: Sequence[str]) -> Path:
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / "text.txt"
  path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
  return path


def build_tiny_m2m100(folder: str | os.PathLike, sentences: Sequence[str], *,
                      vocab_size: int = 200, d_model: int = 16, layers: int = 1,
                      seed: int = 0) -> Path:
  """Writes a tiny random M2M100 model and its tokenizer into `folder`; returns it."""
  import sentencepiece as spm
  import torch
  import transformers

  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
      model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, unk_id=0,
      bos_id=-1, eos_id=-1, pad_id=-1, num_threads=1, minloglevel=2)
  spm_path = folder / "source.spm"
  spm_path.write_bytes(model.getvalue())
  processor = spm.SentencePieceProcessor(model_file=str(spm_path))
  vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
  for piece in (processor.id_to_piece(i) for i in range(processor.get_piece_size())):
    vocab.setdefault(piece, len(vocab))
  vocab_path = folder / "source_vocab.json"
  vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
  tokenizer = transformers.M2M100Tokenizer(str(vocab_path), str(spm_path))
  tokenizer.save_pretrained(folder)
  config = transformers.M2M100Config(
      vocab_size=tokenizer.encoder_size + len(tokenizer.lang_code_to_id)
      + tokenizer.num_madeup_words, d_model=d_model, encoder_layers=layers,
      decoder_layers=layers, encoder_attention_heads=2, decoder_attention_heads=2,
      encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model, max_position_embeddings=256,
      pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
  torch.manual_seed(seed)
  model = transformers.M2M100ForConditionalGeneration(config).eval()
  with torch.no_grad():
    # Language and spare tokens get near-zero (tied) output rows, so that the random model
    # writes pieces after the forced target-language token instead of more language tokens.
    model.model.shared.weight[tokenizer.encoder_size:] *= 0.01
  model.save_pretrained(folder)
  return folder


def build_tiny_aya_t5x(folder: str | os.PathLike, sentences: Sequence[str], *,
                       vocab_size: int = 256, seed: int = 0) -> tuple[Path, Path]:
  """Writes a tiny random mT5 checkpoint and its vocabulary; returns (checkpoint, spm)."""
  import jax
  import numpy as np

  from aya_t5x import model, testing
  from aya_t5x.checkpoints import native
  from aya_t5x.vocab import vocabulary

  folder = Path(folder)
  spm_path = vocabulary.train_sentencepiece([_write_text(folder, sentences)],
                                            folder / "vocabulary.model",
                                            vocab_size=vocab_size)
  pieces = vocabulary.sentencepiece_vocabulary(str(spm_path)).vocab_size
  config = dataclasses.replace(testing.TINY, vocab_size=pieces)
  checkpoint = folder / "checkpoint"
  # Drawn on the host from the shapes: no compiled initialiser, which costs more than the
  # model's whole use in a test.
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: rng.normal(0.0, 0.3, s.shape).astype(s.dtype),
                        model.param_shapes(config))
  native.save_params(params, config, checkpoint)
  return checkpoint, spm_path
