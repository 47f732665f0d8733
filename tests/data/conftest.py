"""Fixtures for the data tests: multilingual text, a trained vocabulary, clean registries."""

import itertools
import random

import pytest

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


@pytest.fixture(scope="session")
def sentences_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("text") / "sentences.txt"
  path.write_text("\n".join(multilingual_sentences()) + "\n", encoding="utf-8")
  return path


@pytest.fixture(scope="session")
def small_vocabulary(sentences_file, tmp_path_factory):
  """A 512-piece SentencePiece vocabulary trained on the sentences (T5 ids)."""
  from aya_t5x.data import vocabulary

  path = vocabulary.train_sentencepiece(
      [sentences_file], tmp_path_factory.mktemp("spm") / "small.model", vocab_size=512,
      byte_fallback=True)
  return vocabulary.sentencepiece_vocabulary(str(path))
