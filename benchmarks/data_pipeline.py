"""Examples per second through an Aya mixture to packed batches, and the packing efficiency.

Writes the six sources in their published schemas with Aya-like lengths (log-normal
token counts per source, medians and spreads below), registers the translation-heavy
mixture through the real scanners and filters, and reads packed 1024/1024 batches the
way the trainer does (`input_pipeline.build_dataset`). Prints one JSON line: examples
per second after a warm-up, packed examples per row, and the share of non-padding
tokens in inputs, targets and both.

    python benchmarks/data_pipeline.py                       # the BENCHMARKS.md figure
    python benchmarks/data_pipeline.py --batches 20 --batch 16   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

# Per source: (median input tokens, median target tokens, log-normal sigma), a rough
# reading of the published sets: xP3x and the templated collection carry passages with
# short answers; the human set, Dolly and ShareGPT have long answers.
LENGTHS = {"aya_dataset": (30, 80, 0.9), "aya_templated": (90, 25, 0.9),
           "xp3x": (110, 15, 1.0), "data_provenance": (60, 60, 1.0),
           "aya_translated": (50, 60, 1.0), "sharegpt_command": (40, 180, 0.8)}
LANGUAGES = {"aya_dataset": [("swh", "Swahili"), ("hau", "Hausa"), ("eng", "English")],
             "collection": ["swh", "hau", "fra"], "xp3x": ["swh_Latn", "fra_Latn", "eng_Latn"]}
# 1,000 made-up words; the benchmark's vocabulary learns each as one piece, so a text of
# n words is n tokens.
WORDS = [c1 + v1 + c2 + v2 for c1 in "bdfgklmnprst" for v1 in "aeiou" for c2 in "bdfgklmnprst"
         for v2 in "aeiou"][::3][:1000]


def _text(rng: np.random.Generator, words: int) -> str:
  return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), size=max(words, 1)))


def _lengths(rng: np.random.Generator, source: str) -> tuple[int, int]:
  inputs, targets, sigma = LENGTHS[source]
  draw = lambda median: int(min(3000, max(2, rng.lognormal(np.log(median), sigma))))
  return draw(inputs), draw(targets)


def _records(source: str, n: int, rng: np.random.Generator) -> list[dict]:
  rows = []
  for i in range(n):
    n_in, n_out = _lengths(rng, source)
    inputs, targets = _text(rng, n_in), _text(rng, n_out)
    if source == "aya_dataset":
      code, name = LANGUAGES["aya_dataset"][i % 3]
      rows.append({"inputs": inputs, "targets": targets, "language": name,
                   "language_code": code, "annotation_type": "original-annotations",
                   "user_id": f"u{i % 50}"})
    elif source in ("aya_templated", "aya_translated"):
      dataset = ("Dolly-v2 (T)" if i % 4 == 0 else "HotpotQA (T)") if (
          source == "aya_translated") else "Xlel_wd-inst"
      rows.append({"id": i, "inputs": inputs, "targets": targets, "dataset_name": dataset,
                   "sub_dataset_name": "-", "task_type": "question-answering",
                   "template_id": 1, "language": LANGUAGES["collection"][i % 3],
                   "script": "Latn", "split": "train"})
    elif source == "xp3x":
      rows.append({"inputs": inputs, "targets": targets,
                   "language": LANGUAGES["xp3x"][i % 3], "split": "train",
                   "template": f"t{i % 4}", "dataset": "demo", "config": "x"})
    elif source == "data_provenance":
      rows.append({"inputs": inputs, "targets": targets, "task_name": f"set{i % 5}",
                   "task_type": "open-ended generation"})
    else:
      rows.append({"id": str(i), "inputs": inputs, "targets": targets, "language": "en"})
  return rows


def write_sources(root: Path, per_source: int, seed: int) -> dict[str, str]:
  rng = np.random.default_rng(seed)
  paths = {}
  for source in LENGTHS:
    path = root / source / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
      for row in _records(source, per_source, rng):
        f.write(json.dumps(row) + "\n")
    paths[source] = str(path)
  return paths


def measure(config, batches: int, warmup: int) -> dict:
  """Examples per second and the share of real tokens over `batches` packed batches."""
  from aya_t5x import input_pipeline

  iterator = input_pipeline.build_dataset(config).as_numpy_iterator()
  for _ in range(warmup):
    next(iterator)
  examples, real = 0, {"inputs": 0, "targets": 0}
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(iterator)
    segments = batch["decoder_segment_ids"]
    examples += int(sum(len(np.unique(row[row > 0])) for row in segments))
    real["inputs"] += int((batch["encoder_segment_ids"] > 0).sum())
    real["targets"] += int((segments > 0).sum())
  seconds = time.perf_counter() - start
  rows = batches * config.batch_size
  lengths = config.task_feature_lengths
  share = {side: real[side] / (rows * lengths[side]) for side in real}
  return {"examples_per_second": round(examples / seconds, 1),
          "examples_per_row": round(examples / rows, 2),
          "packing_efficiency": {
              "inputs": round(share["inputs"], 4), "targets": round(share["targets"], 4),
              # The fuller side is what a packer controls; the other side's fill is
              # bounded by the data's ratio of input to target lengths.
              "fuller_side": round(max(share.values()), 4),
              "both": round(sum(real.values()) / (rows * sum(lengths.values())), 4)}}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scheme", default="translation_heavy")
  parser.add_argument("--per_source", type=int, default=3000)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--inputs", type=int, default=1024)
  parser.add_argument("--targets", type=int, default=1024)
  parser.add_argument("--batches", type=int, default=30, help="timed batches")
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--window", type=int, default=64, help="open rows of the best fit")
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

  import aya_t5x.tasks  # noqa: F401  (registers the six sources)
  from aya_t5x import input_pipeline, mixtures
  from aya_t5x.vocab import vocabulary

  record = {"what": "data_pipeline", "scheme": args.scheme,
            "config": {"batch": args.batch, "inputs": args.inputs, "targets": args.targets,
                       "per_source": args.per_source, "window": args.window,
                       "lengths": LENGTHS},
            "machine": f"{platform.machine()} {os.cpu_count()} cores"}
  with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    paths = write_sources(root, args.per_source, seed=0)
    sample = root / "words.txt"
    sample.write_text("\n".join(" ".join(WORDS[i:i + 20]) for i in range(0, len(WORDS), 20)))
    vocab = vocabulary.sentencepiece_vocabulary(str(vocabulary.train_sentencepiece(
        [sample], root / "spm.model", vocab_size=2000, model_type="bpe")))
    start = time.perf_counter()
    name = mixtures.register_plan(mixtures.plan_aya_mixture(args.scheme, paths), vocab)
    record["scan_seconds"] = round(time.perf_counter() - start, 2)
    for packer in ("seqio", "best_fit"):
      config = input_pipeline.DatasetConfig(
          mixture_or_task_name=name, batch_size=args.batch, packing=packer,
          packing_window=args.window,
          task_feature_lengths={"inputs": args.inputs, "targets": args.targets})
      record[packer] = measure(config, args.batches, args.warmup)
  print(json.dumps(record))


if __name__ == "__main__":
  main()
