"""The vocabulary module: T5 id conventions, round trips, errors that name the fix."""

import sentencepiece as spm

from aya_t5x.testing.vocabularies import multilingual_sentences
from aya_t5x.vocab import vocabulary


def test_trained_vocabulary_follows_t5_ids(small_vocabulary):
  model = spm.SentencePieceProcessor(model_file=small_vocabulary.sentencepiece_model_file)
  assert (model.pad_id(), model.eos_id(), model.unk_id(), model.bos_id()) == (0, 1, 2, -1)
  assert model.id_to_piece(0) == "<pad>" and model.id_to_piece(1) == "</s>"
  assert small_vocabulary.extra_ids == 0
  assert small_vocabulary.vocab_size <= 512


def test_round_trip_in_every_script(small_vocabulary):
  for sentence in multilingual_sentences(count=14, seed=3):
    ids = small_vocabulary.encode(sentence)
    assert ids and 0 not in ids and 1 not in ids  # pad and eos never come out of encode
    assert small_vocabulary.decode(ids) == sentence


def test_training_is_deterministic(sentences_file, tmp_path):
  a = vocabulary.train_sentencepiece([sentences_file], tmp_path / "a.model", vocab_size=300)
  b = vocabulary.train_sentencepiece([sentences_file], tmp_path / "b.model", vocab_size=300)
  assert a.read_bytes() == b.read_bytes()


def test_missing_model_names_the_path_and_the_fix(tmp_path):
  missing = str(tmp_path / "nope.model")
  try:
    vocabulary.sentencepiece_vocabulary(missing)
  except FileNotFoundError as e:
    assert missing in str(e) and "VOCABULARY_PATH" in str(e)
  else:
    raise AssertionError("expected FileNotFoundError")


def test_wrong_ids_are_rejected(sentences_file, tmp_path):
  prefix = tmp_path / "llama_style"
  spm.SentencePieceTrainer.train(input=str(sentences_file), model_prefix=str(prefix),
                                 vocab_size=300, hard_vocab_limit=False, minloglevel=2)
  try:
    vocabulary.sentencepiece_vocabulary(f"{prefix}.model")
  except ValueError as e:
    assert "pad=0, eos=1, unk=2" in str(e)
  else:
    raise AssertionError("expected ValueError")


def test_mt5_vocabulary_checks_its_size(small_vocabulary):
  try:
    vocabulary.mt5_vocabulary(small_vocabulary.sentencepiece_model_file)
  except ValueError as e:
    assert str(vocabulary.MT5_VOCABULARY_SIZE) in str(e)
  else:
    raise AssertionError("expected ValueError")


def test_vocabulary_macro_in_gin(small_vocabulary):
  import gin
  from aya_t5x import gin_config

  gin_config.parse_gin(["mixtures/vocabulary.gin"],
                       [f"VOCABULARY_PATH = '{small_vocabulary.sentencepiece_model_file}'"])
  try:
    chosen = gin.query_parameter("%VOCABULARY")
    built = chosen.scoped_configurable_fn()
    assert built == small_vocabulary
  finally:
    gin.clear_config()


def test_check_fits_model(small_vocabulary):
  vocabulary.check_fits_model(small_vocabulary, 512)
  try:
    vocabulary.check_fits_model(small_vocabulary, 8)
  except ValueError as e:
    assert "MT5Config.vocab_size" in str(e)
  else:
    raise AssertionError("expected ValueError")
