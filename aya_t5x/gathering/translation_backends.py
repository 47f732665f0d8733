"""Translation models for `translation.Backend`: aya_t5x checkpoints, Hugging Face NLLB or M2M100.

`AyaT5XBackend` prompts an mT5 model trained with aya_t5x (any checkpoint
`checkpoints.loading` or `checkpoints.formats` reads) with an instruction such as
"Translate from English to Swahili: ..." and decodes with `aya_t5x.decoding`.

`HuggingFaceBackend` runs a local Hugging Face sequence-to-sequence translation model
(NLLB-200, M2M100) with the tokenizer's source language set and the target language
forced as the first generated token, as those models were trained. transformers and
torch are imported only when this backend is built; without them the error says what to
install. Language codes are resolved from aya_t5x's table: M2M100 uses ISO 639-1 codes
(`sw`), NLLB uses `swh_Latn`-style codes (macrolanguages map to the variety NLLB
trained on, e.g. Arabic to `arb_Arab`); `language_codes={"sw": "swh_Latn"}` overrides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from aya_t5x.data import languages
from aya_t5x.gathering.translation import decode_keeping_unk, language_code

DEFAULT_PROMPT = "Translate from {source} to {target}: {text}"
HF_INSTALL = "pip install -c requirements/constraints.txt transformers torch"

# NLLB-200 codes for mT5 languages that are macrolanguages in ISO 639: the variety NLLB
# was trained on (Standard Arabic, Iranian Persian, Standard Malay, ...).
NLLB_PREFERRED = {
    "ar": "arb_Arab", "fa": "pes_Arab", "ms": "zsm_Latn", "sw": "swh_Latn", "lv": "lvs_Latn",
    "uz": "uzn_Latn", "ne": "npi_Deva", "mn": "khk_Cyrl", "sq": "als_Latn", "ps": "pbt_Arab",
    "mg": "plt_Latn", "yi": "ydd_Hebr", "no": "nob_Latn", "az": "azj_Latn", "ku": "kmr_Latn",
    "et": "est_Latn", "zh": "zho_Hans", "fil": "tgl_Latn",
}
_NLLB_TOKEN = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


# ----------------------------------------------------------------------------- aya_t5x


class AyaT5XBackend:
  """An aya_t5x mT5 model prompted to translate; greedy or beam decoding."""

  def __init__(self, params: Any, config, vocabulary, *, options=None,
               prompt: str = DEFAULT_PROMPT, batch_size: int = 16,
               max_input_length: int = 512, description: str = "aya_t5x"):
    from aya_t5x import decoding

    self.params, self.config, self.vocabulary = params, config, vocabulary
    self.options = options or decoding.DecodingOptions(method="greedy",
                                                       max_decode_length=256)
    if "{text}" not in prompt:
      raise ValueError(f"prompt {prompt!r} has no {{text}} placeholder (it may also use "
                       "{source} and {target}, the language names)")
    self.prompt = prompt
    self.batch_size = batch_size
    self.max_input_length = max_input_length
    self.description = description

  @classmethod
  def from_checkpoint(cls, checkpoint: str | os.PathLike, vocabulary_path: str, *,
                      config=None, **kwargs) -> AyaT5XBackend:
    """Loads a checkpoint (a training run, a step, or aya_t5x / T5X / HF parameters).

    Without `config` the model configuration is read from the checkpoint (a training
    run's saved model, aya_t5x and Hugging Face checkpoints carry it; T5X's is read off
    its parameter shapes).
    """
    from aya_t5x.checkpoints import formats, loading
    from aya_t5x.vocab import vocabulary as vocab_lib

    vocabulary = vocab_lib.sentencepiece_vocabulary(vocabulary_path)
    config = config or loading.stored_config(checkpoint)
    if config is None:
      params, config = formats.load_params(checkpoint)
    else:
      params = loading.load_params(checkpoint, config)
    vocab_lib.check_fits_model(vocabulary, config.vocab_size)
    return cls(params, config, vocabulary, description=f"aya_t5x:{os.fspath(checkpoint)}",
               **kwargs)

  def translate(self, texts: Sequence[str], source_language: str, target_language: str
                ) -> list[str]:
    import jax

    from aya_t5x import decoding

    names = {"source": languages.get_language(source_language).name,
             "target": languages.get_language(target_language).name}
    outputs: list[str] = []
    for start in range(0, len(texts), self.batch_size):
      chunk = texts[start:start + self.batch_size]
      encoded = [self.vocabulary.encode(self.prompt.format(text=t, **names))
                 [:self.max_input_length - 1] for t in chunk]
      # A fixed number of rows and widths rounded up to 32: few shapes, few compilations.
      width = min(-(-(max(len(ids) for ids in encoded) + 1) // 32) * 32, self.max_input_length)
      tokens = np.zeros((self.batch_size, width), np.int32)
      for row, ids in enumerate(encoded):
        tokens[row, :len(ids)] = ids
        tokens[row, len(ids)] = decoding.EOS_ID
      out = np.asarray(decoding.decode(self.params, self.config, tokens, self.options,
                                       rng=jax.random.key(0)))
      for row in range(len(chunk)):
        ids = [int(t) for t in out[row]]
        ids = ids[:ids.index(decoding.EOS_ID)] if decoding.EOS_ID in ids else ids
        outputs.append(decode_keeping_unk(
            ids, unk_id=self.vocabulary.unk_id, skip_ids=frozenset({decoding.PAD_ID}),
            decode=lambda run: self.vocabulary.decode(run) if run else ""))
    return outputs


# ----------------------------------------------------------------------------- Hugging Face


def model_language_code(language: str, available: Collection[str],
                        overrides: Mapping[str, str] | None = None, *, where: str = "model"
                        ) -> str:
  """A translation model's code for a language, among the codes it has (`available`).

  In order: an override for the language; one of its own codes (M2M100's `sw`); its
  ISO 639-3 code and script (NLLB's `hin_Deva`); NLLB's variety of a macrolanguage
  (`NLLB_PREFERRED`); the only available code that stands for the language.
  """
  lang = languages.get_language(language)
  overrides = {language_code(k): v for k, v in (overrides or {}).items()}
  if lang.code in overrides:
    return overrides[lang.code]
  for candidate in (*lang.codes, f"{lang.iso639_3}_{lang.script}",
                    NLLB_PREFERRED.get(lang.code, "")):
    if candidate in available:
      return candidate
  matching = sorted(c for c in available if languages.find_language(c) is lang)
  if len(matching) == 1:
    return matching[0]
  found = f"candidates: {', '.join(matching)}" if matching else "none of its codes is there"
  raise ValueError(f"{where}: which language token is {lang.name} ({lang.code})? {found}; "
                   f"choose with --language_code {lang.code}=CODE")



def import_hf() -> tuple[Any, Any]:
  """(transformers, torch), or an ImportError that says what to install."""
  try:
    import torch
    import transformers
  except ImportError as e:
    raise ImportError(f"the Hugging Face translation backend needs transformers and torch "
                      f"({e.name or e} is missing): {HF_INSTALL}") from e
  return transformers, torch


class HuggingFaceBackend:
  """A local NLLB or M2M100 model (any `AutoModelForSeq2SeqLM` with language tokens)."""

  def __init__(self, model_path: str | os.PathLike, *, num_beams: int = 1,
               max_new_tokens: int = 256, max_input_length: int = 512,
               language_codes: Mapping[str, str] | None = None, device: str = "cpu"):
    transformers, torch = import_hf()
    self._torch = torch
    path = os.fspath(model_path)
    if not os.path.isdir(path):
      raise FileNotFoundError(f"Hugging Face model folder {path!r} not found; give a local "
                              "copy (save_pretrained / a downloaded snapshot), nothing is "
                              "downloaded here")
    self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    self.model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path).eval().to(device)
    self.device = device
    self.num_beams, self.max_new_tokens = num_beams, max_new_tokens
    self.max_input_length = max_input_length
    self.overrides = dict(language_codes or {})
    self.description = f"hf:{path}"
    self._tokens = self._language_tokens()

  def _language_tokens(self) -> dict[str, int]:
    """The model's language codes and their token ids (M2M100's `sw`, NLLB's `swh_Latn`)."""
    tokenizer = self.tokenizer
    if hasattr(tokenizer, "lang_code_to_id"):  # M2M100
      return dict(tokenizer.lang_code_to_id)
    codes = [t for t in tokenizer.additional_special_tokens if _NLLB_TOKEN.match(t)]
    if not codes:
      raise ValueError(f"{self.description}: the tokenizer has no language tokens; the "
                       "Hugging Face backend runs NLLB or M2M100 translation models")
    return {code: tokenizer.convert_tokens_to_ids(code) for code in codes}

  def model_language(self, language: str) -> str:
    """The model's code for a language (see `model_language_code`)."""
    return model_language_code(language, self._tokens, self.overrides,
                               where=self.description)

  def translate(self, texts: Sequence[str], source_language: str, target_language: str
                ) -> list[str]:
    tokenizer, torch = self.tokenizer, self._torch
    tokenizer.src_lang = self.model_language(source_language)
    target_id = self._tokens[self.model_language(target_language)]
    encoded = tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                        max_length=self.max_input_length).to(self.device)
    with torch.no_grad():
      generated = self.model.generate(**encoded, forced_bos_token_id=target_id,
                                      num_beams=self.num_beams, do_sample=False,
                                      max_new_tokens=self.max_new_tokens)
    skip = frozenset(i for i in tokenizer.all_special_ids if i != tokenizer.unk_token_id)
    skip |= frozenset(self._tokens.values())
    decode = lambda run: tokenizer.decode(run, skip_special_tokens=True) if run else ""
    return [decode_keeping_unk(row.tolist(), unk_id=tokenizer.unk_token_id, skip_ids=skip,
                               decode=decode) for row in generated]
