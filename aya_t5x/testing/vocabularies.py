"""Small multilingual text and SentencePiece vocabularies trained on it, for tests.

Five scripts (Latin, Cyrillic, Devanagari, Arabic, Han), so that a vocabulary trained here
exercises the byte fallback and every script path of the tokenisers, in a second.
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

# A few words per language in five scripts, enough for SentencePiece to find pieces.
_WORDS = {
    "en": "the cat sees a small house near the river and the children read books".split(),
    "sw": "mtoto anasoma kitabu nyumbani na mama anapika chakula kizuri leo".split(),
    "fr": "le chat regarde une petite maison près de la rivière et les enfants lisent".split(),
    "ru": "кошка видит маленький дом у реки и дети читают книги сегодня".split(),
    "hi": "बिल्ली नदी के पास छोटा घर देखती है और बच्चे किताबें पढ़ते हैं".split(),
    "ar": "القطة ترى بيتا صغيرا قرب النهر والأطفال يقرؤون الكتب اليوم".split(),
    "zh": list("猫看见河边的小房子孩子们在读书今天天气很好"),
}


def multilingual_sentences(count: int = 350, seed: int = 0) -> list[str]:
  """Deterministic pseudo-sentences cycling through the languages above."""
  rng = random.Random(seed)
  sentences = []
  for language in itertools.islice(itertools.cycle(sorted(_WORDS)), count):
    words = rng.sample(_WORDS[language], k=min(8, len(_WORDS[language])))
    joiner = "" if language == "zh" else " "
    sentences.append(joiner.join(words) + ".")
  return sentences


def write_sentences(path: str | os.PathLike, count: int = 350, seed: int = 0) -> Path:
  """Writes `multilingual_sentences(count, seed)`, one a line; returns the path."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("\n".join(multilingual_sentences(count, seed)) + "\n", encoding="utf-8")
  return path


def train_vocabulary(text_file: str | os.PathLike, folder: str | os.PathLike, *,
                     vocab_size: int = 512, name: str = "small.model") -> Path:
  """A SentencePiece model with T5's ids and byte fallback, trained on `text_file`."""
  from aya_t5x.vocab import vocabulary

  return Path(vocabulary.train_sentencepiece([text_file], Path(folder) / name,
                                             vocab_size=vocab_size, byte_fallback=True))
