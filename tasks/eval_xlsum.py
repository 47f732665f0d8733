"""XL-Sum: abstractive summarisation of BBC articles, zero-shot, RougeLsum.

Published per language as `<language>_train/_val/_test.jsonl` (XL-Sum v2.0), one
{id, url, title, summary, text} object per line, `<language>` an English name such as
`hindi` or `chinese_simplified`. Put the `_val.jsonl` files under `<eval data>/xlsum/`.
41 of XL-Sum's 45 languages are mT5 languages (Kirundi, Oromo, Pidgin and Tigrinya are
not); Chinese and Serbian come in two scripts each (`zh`/`zh_hant`, `sr`/`sr_latn`).
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.evaluation import eval_sets, formats, metrics

# Task suffix -> XL-Sum's file name.
FILE_NAMES = {
    "am": "amharic", "ar": "arabic", "az": "azerbaijani", "bn": "bengali", "my": "burmese",
    "zh": "chinese_simplified", "zh_hant": "chinese_traditional", "en": "english",
    "fr": "french", "gu": "gujarati", "ha": "hausa", "hi": "hindi", "ig": "igbo",
    "id": "indonesian", "ja": "japanese", "ko": "korean", "ky": "kyrgyz", "mr": "marathi",
    "ne": "nepali", "ps": "pashto", "fa": "persian", "pt": "portuguese", "pa": "punjabi",
    "ru": "russian", "gd": "scottish_gaelic", "sr": "serbian_cyrillic",
    "sr_latn": "serbian_latin", "si": "sinhala", "so": "somali", "es": "spanish",
    "sw": "swahili", "ta": "tamil", "te": "telugu", "th": "thai", "tr": "turkish",
    "uk": "ukrainian", "ur": "urdu", "uz": "uzbek", "vi": "vietnamese", "cy": "welsh",
    "yo": "yoruba",
}
SPLIT_FILES = {"validation": "val", "test": "test"}


class XlSum(eval_sets.Benchmark):
  def files(self, root: Path, key: str) -> dict[str, Path]:
    name = f"{FILE_NAMES[key]}_{SPLIT_FILES[self.split]}.jsonl"
    return {"examples": eval_sets.first_existing(root / name, root / FILE_NAMES[key] / name)}

  def rows(self, files, key):
    language = eval_sets.language_name(key)
    return [{"inputs": f"Summarize the following article in {language}: {r['text']}",
             "targets": r["summary"]} for r in formats.read_xlsum(files["examples"])]

  def metric_fns(self, key, *, spbleu_model=None):
    return [metrics.rouge_lsum]


XLSUM = eval_sets.add_benchmark(XlSum(
    name="xlsum", title="XL-Sum", kind="generate", split="validation", folder="xlsum",
    data_format=formats.XLSUM, languages=tuple(FILE_NAMES), primary_metric="rougeLsum",
    max_input_length=1024, max_target_length=128))
