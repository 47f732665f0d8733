"""Translating texts: sentences, length-sorted batches, output checks, and the model backends.

The Hugging Face backend runs a tiny random M2M100 built here (no download) and must
give what `generate` gives directly with the target language forced; the aya_t5x backend
must give what greedy decoding of its prompt gives.
"""

import json
import sys

import numpy as np
import pytest

from aya_t5x import cli
from aya_t5x.gathering import translation, translation_backends
from aya_t5x.gathering.translation import DictionaryBackend, output_problem, translate_texts
from aya_t5x.testing import translation_models as tiny_translation_models
from aya_t5x.testing.vocabularies import multilingual_sentences


class Recording(DictionaryBackend):
  """A dictionary backend that remembers every batch it was given."""

  def __init__(self, table):
    super().__init__(table)
    self.batches = []

  def translate(self, texts, source_language, target_language):
    self.batches.append(list(texts))
    return super().translate(texts, source_language, target_language)


TABLE = {("en", "sw"): {"Hello.": "Habari.", "How are you?": "Habari yako?",
                        "I read books every day.": "Ninasoma vitabu kila siku.",
                        "Thanks!": "Asante!"}}


def test_paragraphs_are_split_translated_once_per_sentence_and_joined_back():
  backend = Recording(TABLE)
  texts = ["Hello. How are you?\n\nI read books every day.", "Thanks! Hello.", "   "]
  result = translate_texts(backend, texts, "en", "sw", batch_size=2)
  assert result.texts == ["Habari. Habari yako?\n\nNinasoma vitabu kila siku.",
                          "Asante! Habari.", "   "]
  assert (result.sentences, result.unique_sentences) == (5, 4)
  sent = [s for batch in backend.batches for s in batch]
  assert sorted(sent) == sorted(TABLE[("en", "sw")]) and len(sent) == 4  # each once
  assert [len(s) for s in sent] == sorted(len(s) for s in sent)          # by length
  assert all(len(batch) <= 2 for batch in backend.batches)
  for batch_size in (1, 3, 64):  # batching does not change the result
    assert translate_texts(Recording(TABLE), texts, "en", "sw",
                           batch_size=batch_size).texts == result.texts
  whole = translate_texts(Recording(TABLE), ["Hello. How are you?"], "en", "sw", split=False)
  assert whole.texts == [""] and whole.unique_sentences == 1  # one unit, not in the table


@pytest.mark.parametrize("source,translation,problem", [
    ("The cat sleeps.", "Paka <unk> analala.", "unk"),
    ("The cat sleeps.", "  ", "empty"),
    ("The cat sleeps.", "the  CAT sleeps.", "copy"),
    ("Heartbreak Hotel", "Heartbreak Hotel", "copy"),
    ("42", "42", None),          # nothing to translate in numbers
    ("", "", None),              # an empty field stays empty
    ("The cat sleeps.", "Paka analala.", None),
])
def test_output_problems(source, translation, problem):
  assert output_problem(source, translation) == problem


def test_dictionary_file_errors_name_the_file(tmp_path):
  path = tmp_path / "d.json"
  path.write_text('{"en-sw": {"a": "b"}, "ensw": {}}')
  with pytest.raises(ValueError, match=r"d.json: key 'ensw'"):
    DictionaryBackend.from_file(path)
  path.write_text('{"english-swahili": {"Hi.": "Jambo."}}')  # names are languages too
  assert DictionaryBackend.from_file(path).translate(["Hi.", "Bye."], "en", "swh") == \
      ["Jambo.", ""]


def test_model_language_codes_for_m2m100_and_nllb():
  resolve = translation_backends.model_language_code
  assert resolve("Swahili", ["en", "sw", "fr"]) == "sw"
  nllb = ["eng_Latn", "swh_Latn", "arb_Arab", "ary_Arab", "arz_Arab", "hin_Deva", "zho_Hans",
          "zho_Hant", "yue_Hant", "pes_Arab", "prs_Arab"]
  assert [resolve(x, nllb) for x in ("en", "sw", "ar", "hi", "zh", "fa")] == \
      ["eng_Latn", "swh_Latn", "arb_Arab", "hin_Deva", "zho_Hans", "pes_Arab"]
  assert resolve("ar", nllb, {"arabic": "ary_Arab"}) == "ary_Arab"
  with pytest.raises(ValueError, match=r"candidates: ary_Arab, arz_Arab.*--language_code ar="):
    resolve("ar", ["ary_Arab", "arz_Arab"])


def test_decode_keeping_unk_spells_unknown_tokens():
  decode = lambda ids: "".join(chr(96 + i) for i in ids)
  assert translation.decode_keeping_unk([1, 2, 9, 3, 0, 4], unk_id=9, skip_ids=frozenset({0}),
                                        decode=decode) == "ab<unk>cd"


def test_hf_backend_that_is_not_installed_says_what_to_install(monkeypatch, tmp_path, capsys):
  monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if absent
  with pytest.raises(ImportError, match="pip install .*transformers torch"):
    translation_backends.import_hf()
  (tmp_path / "in.jsonl").write_text(json.dumps({"inputs": "Hi.", "targets": "Hello."}) + "\n")
  code = cli.main(["translate", "--input", str(tmp_path / "in.jsonl"), "--target_languages",
                   "sw", "--output", str(tmp_path / "out"), "--backend", "hf", "--model",
                   str(tmp_path)])
  assert code == 2 and "pip install" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_m2m100(tmp_path_factory):
  return tiny_translation_models.build_tiny_m2m100(tmp_path_factory.mktemp("m2m100"),
                                                   multilingual_sentences(200))


def test_hf_backend_matches_generate_with_the_target_language_forced(tiny_m2m100):
  import torch
  import transformers

  backend = translation_backends.HuggingFaceBackend(tiny_m2m100, max_new_tokens=8)
  texts = ["the cat sees a small house.", "mtoto anasoma kitabu", "le chat"]
  got = backend.translate(texts, "en", "sw")
  tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_m2m100, src_lang="en")
  model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tiny_m2m100).eval()
  for text, output in zip(texts, got):  # one at a time: no padding in the reference
    with torch.no_grad():
      ids = model.generate(**tokenizer([text], return_tensors="pt"), max_new_tokens=8,
                           forced_bos_token_id=tokenizer.get_lang_id("sw"), do_sample=False)
    assert ids[0, 1].item() == tokenizer.get_lang_id("sw")  # then pieces, up to EOS
    assert output == tokenizer.decode(ids[0, 2:], skip_special_tokens=True) and output
  assert backend.model_language("Swahili") == "sw"
  assert backend.description == f"hf:{tiny_m2m100}"


def test_aya_t5x_backend_matches_greedy_decoding_of_its_prompt(tmp_path):
  from aya_t5x import decoding

  checkpoint, spm = tiny_translation_models.build_tiny_aya_t5x(tmp_path,
                                                               multilingual_sentences(120))
  options = decoding.DecodingOptions(method="greedy", max_decode_length=6)
  backend = translation_backends.AyaT5XBackend.from_checkpoint(
      checkpoint, str(spm), options=options, batch_size=4)
  texts = ["the cat sees a small house", "kitabu"]
  got = backend.translate(texts, "en", "sw")
  prompts = [list(backend.vocabulary.encode(f"Translate from English to Swahili: {text}")) + [1]
             for text in texts]
  tokens = np.zeros((4, -(-max(map(len, prompts)) // 32) * 32), np.int32)  # the backend's
  for row, ids in enumerate(prompts):                                      # shape: one compile
    tokens[row, :len(ids)] = ids
  out = np.asarray(decoding.greedy_decode(backend.params, backend.config, tokens,
                                          max_decode_length=6))
  for row, output in enumerate(got):
    ids = [int(t) for t in out[row]]
    ids = ids[:ids.index(1)] if 1 in ids else ids
    if 2 not in ids:  # no unknown token: exactly the vocabulary's decoding
      assert output == backend.vocabulary.decode(ids) and output
    else:
      expected = "".join(backend.vocabulary.decode([t]) if t != 2 else "<unk>" for t in ids)
      assert output.replace(" ", "") == expected.replace(" ", "")
