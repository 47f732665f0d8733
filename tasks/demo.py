"""The built-in demo task: write digits as number words in five languages.

`translate to Swahili: 3 0 7` -> `tatu sifuri saba`. Byte-level (seqio.ByteVocabulary),
generated from a seed, so it needs no file, no download and no tokenizer model: the
smallest dataset on which the whole training path (SeqIO, packing, sharded steps,
checkpoints, train-eval) runs on a laptop in minutes and visibly learns. One task per
language (`demo_numbers.sw`, ...) and a mixture `demo_numbers` over them.
"""

from __future__ import annotations

import numpy as np
import seqio
import tensorflow as tf

NUMBER_WORDS = {
    "de": ("German", "null eins zwei drei vier fünf sechs sieben acht neun"),
    "fr": ("French", "zéro un deux trois quatre cinq six sept huit neuf"),
    "id": ("Indonesian", "nol satu dua tiga empat lima enam tujuh delapan sembilan"),
    "sw": ("Swahili", "sifuri moja mbili tatu nne tano sita saba nane tisa"),
    "ht": ("Haitian Creole", "zewo en de twa kat senk sis sèt uit nèf"),
}
SPLIT_SIZES = {"train": 4000, "validation": 200}
MIXTURE = "demo_numbers"


def demo_examples(language: str, split: str) -> list[dict[str, str]]:
  """The split's examples for one language; validation never repeats a training input."""
  name, words = NUMBER_WORDS[language]
  words = words.split()
  rng = np.random.default_rng(sorted(NUMBER_WORDS).index(language))
  seen, rows = set(), {"train": [], "validation": []}
  while len(rows["validation"]) < SPLIT_SIZES["validation"] or (
      len(rows["train"]) < SPLIT_SIZES["train"]):
    digits = tuple(rng.integers(0, 10, rng.integers(1, 6)))
    if digits in seen:
      continue
    seen.add(digits)
    which = "validation" if len(seen) % 5 == 0 else "train"
    if len(rows[which]) < SPLIT_SIZES[which]:
      rows[which].append({
          "inputs": f"translate to {name}: {' '.join(map(str, digits))}",
          "targets": " ".join(words[d] for d in digits)})
  return rows[split]


def _dataset_fn(language: str):
  def dataset(split: str, shuffle_files: bool = False, seed: int | None = None):
    rows = demo_examples(language, split)
    return tf.data.Dataset.from_tensor_slices(
        {"inputs": [r["inputs"] for r in rows], "targets": [r["targets"] for r in rows]})
  return dataset


def register_demo_tasks() -> None:
  vocabulary = seqio.ByteVocabulary()
  features = {"inputs": seqio.Feature(vocabulary, add_eos=True),
              "targets": seqio.Feature(vocabulary, add_eos=True)}
  for language in NUMBER_WORDS:
    name = f"{MIXTURE}.{language}"
    if name in seqio.TaskRegistry.names():
      continue
    seqio.TaskRegistry.add(
        name, source=seqio.FunctionDataSource(_dataset_fn(language),
                                              splits=list(SPLIT_SIZES)),
        preprocessors=[seqio.preprocessors.tokenize,
                       seqio.preprocessors.append_eos_after_trim],
        output_features=features, metric_fns=[])
  if MIXTURE not in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.add(MIXTURE, [f"{MIXTURE}.{lang}" for lang in NUMBER_WORDS],
                              default_rate=1.0)


register_demo_tasks()
