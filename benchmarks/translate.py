"""Sentences per second of `aya-t5x translate`'s engine with the aya_t5x and Hugging Face backends.

Both backends get the same paragraphs through `translation.translate_texts` (sentence
splitting, length-sorted batches, joining back), each with a tiny random model of about
the same shape built offline (`aya_t5x.testing.translation_models`: mT5 with d_model 32, 2+2 layers;
M2M100 with d_model 32, 2+2 layers), greedy decoding of up to `--max_new_tokens` tokens
per sentence. Repeats alternate between the backends and the median is reported, so that
the machine's drift affects both. Both run on one CPU thread by default (`--threads`):
models this small gain nothing from more, and on a loaded machine PyTorch's second
thread made its generate 50x slower (2.9 s instead of 0.06 s per batch). Prints one
JSON line.

    python benchmarks/translate.py                      # CPU, the figures in BENCHMARKS.md
    python benchmarks/translate.py --paragraphs 256 --batch_size 64

The figures measure the engine and per-batch overhead, not translation quality: random
models rarely stop early, so every sentence decodes the full length.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time

WORDS = {
    "en": "the cat sees a small house near the river and the children read books every day "
          "while their mother cooks good food in the kitchen".split(),
    "sw": "mtoto anasoma kitabu nyumbani na mama anapika chakula kizuri leo jikoni".split(),
}


def paragraphs(count: int, sentences: int, seed: int = 0) -> list[str]:
  """Distinct English paragraphs of `sentences` sentences of 6-14 words."""
  rng = random.Random(seed)
  out = []
  for p in range(count):
    body = []
    for s in range(sentences):
      words = rng.choices(WORDS["en"], k=rng.randint(6, 14))
      body.append(" ".join(words).capitalize() + f" {p}-{s}.")
    out.append(" ".join(body))
  return out


def corpus(seed: int = 0) -> list[str]:
  rng = random.Random(seed)
  return [" ".join(rng.choices(WORDS[lang], k=10)) + "." for lang in WORDS for _ in range(100)]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--paragraphs", type=int, default=64)
  parser.add_argument("--sentences_per_paragraph", type=int, default=3)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--max_new_tokens", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--threads", type=int, default=1, help="CPU threads of each backend")
  args = parser.parse_args()
  if args.threads == 1:  # before jax starts: XLA's CPU client reads it once
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=false").strip()

  import jax
  import torch

  from aya_t5x import decoding
  from aya_t5x.gathering import translation, translation_backends
  from aya_t5x.testing import translation_models as tiny_translation_models

  torch.set_num_threads(args.threads)
  texts = paragraphs(args.paragraphs, args.sentences_per_paragraph)
  with tempfile.TemporaryDirectory() as tmp:
    hf_path = tiny_translation_models.build_tiny_m2m100(
        os.path.join(tmp, "m2m100"), corpus(), d_model=32, layers=2)
    checkpoint, spm = tiny_translation_models.build_tiny_aya_t5x(os.path.join(tmp, "aya"),
                                                                 corpus())
    backends = {
        "aya_t5x": translation_backends.AyaT5XBackend.from_checkpoint(
            checkpoint, str(spm), batch_size=args.batch_size,
            options=decoding.DecodingOptions(method="greedy",
                                             max_decode_length=args.max_new_tokens)),
        "hf_m2m100": translation_backends.HuggingFaceBackend(
            hf_path, max_new_tokens=args.max_new_tokens),
    }
    run = lambda b: translation.translate_texts(b, texts, "en", "sw", batch_size=args.batch_size)
    for backend in backends.values():  # compile (aya_t5x) and warm both
      run(backend)
    seconds: dict[str, list[float]] = {name: [] for name in backends}
    sentences = 0
    for _ in range(args.repeats):
      for name, backend in backends.items():
        start = time.perf_counter()
        result = run(backend)
        seconds[name].append(time.perf_counter() - start)
        sentences = result.unique_sentences
  rates = {name: sentences / statistics.median(times) for name, times in seconds.items()}
  print(json.dumps({
      "what": "translate_texts sentences per second, tiny random models, greedy",
      "config": {"paragraphs": args.paragraphs, "sentences": sentences,
                 "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                 "repeats": args.repeats, "d_model": 32, "layers": "2+2",
                 "threads": args.threads},
      "device": f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()}, "
                f"{os.cpu_count()} cores)",
      "sentences_per_second": {k: round(v, 1) for k, v in rates.items()},
      "median_seconds": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
      "aya_t5x_vs_hf": round(rates["aya_t5x"] / rates["hf_m2m100"], 2),
  }))


if __name__ == "__main__":
  main()
