"""FLORES-200 devtest: translation X->English and English->X for mT5's languages.

Published as `flores200_dataset/devtest/<code>.devtest`: one sentence per line, the
1,012 lines aligned across languages, `<code>` a FLORES-200 code such as `swh_Latn`.
Put the extracted `flores200_dataset/` (or just its `devtest/` files) at
`<eval data>/flores200/`. Two benchmarks, `flores_x_en` and `flores_en_x`, one task per
language: 95 of mT5's languages are in FLORES-200 (Corsican, Western Frisian, Hawaiian,
Hmong and Latin are not). Scored by spBLEU and chrF++ (`metrics.TranslationMetrics`).
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.data import languages
from aya_t5x.evaluation import eval_sets, formats, metrics

# FLORES-200 codes that are not the language table's ISO 639-3 code and script: FLORES
# names an individual language where the table has the macrolanguage (arb for ara).
FLORES_CODES = {
    "ar": "arb_Arab", "az": "azj_Latn", "et": "est_Latn", "fa": "pes_Arab",
    "fil": "tgl_Latn", "ko": "kor_Hang", "ku": "kmr_Latn", "lv": "lvs_Latn",
    "mg": "plt_Latn", "mn": "khk_Cyrl", "ms": "zsm_Latn", "ne": "npi_Deva",
    "no": "nob_Latn", "ps": "pbt_Arab", "sq": "als_Latn", "sw": "swh_Latn",
    "uz": "uzn_Latn", "yi": "ydd_Hebr", "zh": "zho_Hans",
}
NOT_IN_FLORES = ("co", "fy", "haw", "hmn", "la")
ENGLISH = "eng_Latn"


def flores_code(code: str) -> str:
  """The FLORES-200 code of an mT5 language (`sw` -> `swh_Latn`)."""
  if code in FLORES_CODES:
    return FLORES_CODES[code]
  language = languages.get_language(code)
  return f"{language.iso639_3}_{language.script}"


LANGUAGES = tuple(lang.code for lang in languages.all_languages()
                  if lang.code not in NOT_IN_FLORES and lang.code != "en")


class Flores(eval_sets.Benchmark):
  """One translation direction; `name` says which (`flores_x_en` or `flores_en_x`)."""

  @property
  def into_english(self) -> bool:
    return self.name.endswith("_x_en")

  def files(self, root: Path, key: str) -> dict[str, Path]:
    def path(code: str) -> Path:
      name = f"{code}.devtest"
      return eval_sets.first_existing(root / "devtest" / name, root / name)

    return {"english": path(ENGLISH), "other": path(flores_code(key))}

  def rows(self, files, key):
    english, other = formats.read_lines(files["english"]), formats.read_lines(files["other"])
    if len(english) != len(other):
      raise formats.FormatError(f"{files['other']} has {len(other)} lines but "
                                f"{files['english']} has {len(english)}; FLORES files are "
                                "line-aligned.")
    if self.into_english:
      return [{"inputs": f"Translate to English: {o}", "targets": e}
              for o, e in zip(other, english)]
    name = eval_sets.language_name(key)
    return [{"inputs": f"Translate to {name}: {e}", "targets": o} for o, e in zip(other, english)]

  def metric_fns(self, key, *, spbleu_model=None):
    target = "en" if self.into_english else key
    return [metrics.TranslationMetrics(target_language=target, spm_model=spbleu_model)]


_COMMON = dict(kind="generate", split="devtest", folder="flores200",
               data_format=formats.FLORES, languages=LANGUAGES, primary_metric="spbleu",
               max_input_length=256, max_target_length=256)
FLORES_X_EN = eval_sets.add_benchmark(Flores(name="flores_x_en",
                                              title="FLORES-200 X->English", **_COMMON))
FLORES_EN_X = eval_sets.add_benchmark(Flores(name="flores_en_x",
                                              title="FLORES-200 English->X", **_COMMON))
