"""Examples per second through `aya-t5x cache` (1 and 2 workers) and into training from it.

Writes the six sources as `data_pipeline.py` does (published schemas, Aya-like lengths),
then measures, on the same data:

- today's single-process scan (`sources.scan` of every source: read, validate, filter);
- the Beam cache pipeline on the DirectRunner with 1 and with 2 worker processes
  (read, filter, dedup, tokenize, write the shards), end to end;
- packed best-fit batches for training from the cache (`DatasetConfig.cache_dir`) and from the
  on-the-fly tasks, as `data_pipeline.py` measures them.

Prints one JSON line. Needs the 'beam' extra (`make install-beam`):

    .venv-beam/bin/python benchmarks/cache.py                  # the BENCHMARKS.md figures
    .venv-beam/bin/python benchmarks/cache.py --per_source 1000 --batches 10   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

# Shared with the data pipeline benchmark (this folder is on sys.path when run as a script).
from data_pipeline import WORDS, measure, write_sources


def _pipeline_rate(config, workers: int, examples: int) -> dict:
  from aya_t5x.data import cache_pipeline

  shutil.rmtree(config.output_dir, ignore_errors=True)
  args = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
  start = time.perf_counter()
  cache_pipeline.run(config, args)
  seconds = time.perf_counter() - start
  return {"seconds": round(seconds, 2), "examples_per_second": round(examples / seconds, 1)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--scheme", default="translation_heavy")
  parser.add_argument("--per_source", type=int, default=5000)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--inputs", type=int, default=1024)
  parser.add_argument("--targets", type=int, default=1024)
  parser.add_argument("--batches", type=int, default=30, help="timed training batches")
  parser.add_argument("--warmup", type=int, default=5)
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

  import aya_t5x.tasks  # noqa: F401  (registers the six sources)
  from aya_t5x import input_pipeline, mixtures
  from aya_t5x.data import cache_pipeline, sources
  from aya_t5x.vocab import vocabulary

  record = {"what": "cache", "scheme": args.scheme,
            "config": {"per_source": args.per_source, "batch": args.batch,
                       "inputs": args.inputs, "targets": args.targets},
            "machine": f"{platform.machine()} {os.cpu_count()} cores"}
  with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp)
    paths = write_sources(root, args.per_source, seed=0)
    examples = args.per_source * len(paths)
    sample = root / "words.txt"
    sample.write_text("\n".join(" ".join(WORDS[i:i + 20]) for i in range(0, len(WORDS), 20)))
    spm = vocabulary.train_sentencepiece([sample], root / "spm.model", vocab_size=2000,
                                         model_type="bpe")
    vocab = vocabulary.sentencepiece_vocabulary(str(spm))

    start = time.perf_counter()
    for name, path in paths.items():
      sources.scan(sources.get_source(name), path)
    seconds = time.perf_counter() - start
    record["scan"] = {"seconds": round(seconds, 2),
                      "examples_per_second": round(examples / seconds, 1)}

    config = cache_pipeline.CacheConfig(sources=paths, output_dir=str(root / "cache"),
                                        vocabulary=str(spm), command="benchmarks/cache.py")
    for workers in (1, 2):
      record[f"beam_{workers}_workers"] = _pipeline_rate(config, workers, examples)
    record["beam_speedup_2_vs_1"] = round(
        record["beam_1_workers"]["seconds"] / record["beam_2_workers"]["seconds"], 2)

    for cached in (False, True):
      plan = mixtures.plan_aya_mixture(args.scheme, paths,
                                       cache_dir=config.output_dir if cached else None)
      name = mixtures.register_plan(plan, vocab)
      data = input_pipeline.DatasetConfig(
          mixture_or_task_name=name, batch_size=args.batch,
          cache_dir=config.output_dir if cached else None,
          task_feature_lengths={"inputs": args.inputs, "targets": args.targets})
      record["train_from_cache" if cached else "train_on_the_fly"] = measure(
          data, args.batches, args.warmup)
    record["train_speedup_cache_vs_on_the_fly"] = round(
        record["train_from_cache"]["examples_per_second"]
        / record["train_on_the_fly"]["examples_per_second"], 2)
  print(json.dumps(record))


if __name__ == "__main__":
  main()
