"""Small multilingual text and SentencePiece vocabularies trained on it, for tests.

Five scripts (Latin, Cyrillic, Devanagari, Arabic, Han), so that a vocabulary trained here
exercises the byte fallback and every script path of the tokenisers, in a second. A
sixth language, Dhivehi in Thaana (`new_script_sentences`), is kept out of that text: a
script such a vocabulary lacks, for the vocabulary extension's tests and tutorial.
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

# Dhivehi words (from the Universal Declaration of Human Rights), in the Thaana script.
NEW_SCRIPT_LANGUAGE = "dv"
_NEW_SCRIPT_WORDS = ("މިނިވަން ކަމާއި ޢަދުލުވެރި ދުނިޔޭގައި ޤާއިމުވެ އަސާސަކީ އިންސާނީ ޙައްޤުތަކަށް "
                     "ފަރުދުންނަށް ލިބިގެންވާ ދަރަޖައަކާއި ހަމަހަމަ ޤަބޫލުކުރުން ކަމުގައިވީ "
                     "ހިނދު ސަމާލުކަމެއް ދިނުމެއް ނެތި ޙުރުމަތް ކެނޑުމުގެ").split()


def multilingual_sentences(count: int = 350, seed: int = 0) -> list[str]:
  """Deterministic pseudo-sentences cycling through the languages above."""
  rng = random.Random(seed)
  sentences = []
  for language in itertools.islice(itertools.cycle(sorted(_WORDS)), count):
    words = rng.sample(_WORDS[language], k=min(8, len(_WORDS[language])))
    joiner = "" if language == "zh" else " "
    sentences.append(joiner.join(words) + ".")
  return sentences


def new_script_sentences(count: int = 120, seed: int = 0) -> list[str]:
  """Deterministic pseudo-sentences in Dhivehi (Thaana), a script the text above lacks."""
  rng = random.Random(seed)
  return [" ".join(rng.sample(_NEW_SCRIPT_WORDS, k=6)) + "." for _ in range(count)]


def write_sentences(path: str | os.PathLike, count: int = 350, seed: int = 0, *,
                    new_script: bool = False) -> Path:
  """Writes `multilingual_sentences(count, seed)` (or, with `new_script`,
  `new_script_sentences`), one a line; returns the path."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  sentences = (new_script_sentences if new_script else multilingual_sentences)(count, seed)
  path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
  return path


def train_vocabulary(text_file: str | os.PathLike, folder: str | os.PathLike, *,
                     vocab_size: int = 512, name: str = "small.model") -> Path:
  """A SentencePiece model with T5's ids and byte fallback, trained on `text_file`."""
  from aya_t5x.vocab import vocabulary

  return Path(vocabulary.train_sentencepiece([text_file], Path(folder) / name,
                                             vocab_size=vocab_size, byte_fallback=True))
