"""What this CPU allows the CPU speed goals: its matmul peak and memory bandwidth, measured.

Two of the project's speed goals are stated against PyTorch on the CPU: a train step 1.5x
PyTorch's (`train_step.py`) and decoding 2x Hugging Face `generate` (`decode.py`). This
script measures what bounds each on the machine at hand, with jitted XLA programs, and
prints one JSON line:

- `matmul_gflops`: a 2048 x 2048 float32 matmul, the practical compute peak;
- `dram_read_gbytes_per_second`: a reduction over 256 MB, far more than the caches hold;
- `thin_dot_gbytes_per_second`: `[rows, d_model]` times a 256 MB weight matrix, the
  product a decoding step makes with every decoder weight (rows = batch, or batch x beams);
- `train_step`: the model FLOPs of one step over the matmul peak, the time of a step whose
  every FLOP ran at that peak and nothing else took time; with `--torch_step_seconds`, the
  share of the peak a step at 1.5x PyTorch would have to sustain;
- `greedy_step` and `beam_step`: the bytes of decoder weights one step reads (every
  decoder kernel but the cached cross-attention keys and values, and the output layer)
  over the read bandwidth and over the thin product's rate at that step's rows; with
  `--hf_greedy_tokens_per_second` / `--hf_beam_tokens_per_second`, the step time that
  2x `generate` allows.

    python benchmarks/cpu_bounds.py --torch_step_seconds 3.77     # the train-step goal
    python benchmarks/cpu_bounds.py --one_core --hf_greedy_tokens_per_second 195 \
        --hf_beam_tokens_per_second 105                          # the decoding goals
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def best_seconds(run, repeats: int = 5, calls: int = 3) -> float:
  """The fastest of `repeats` timings of `calls` calls, per call."""
  import jax

  jax.block_until_ready(run())
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      result = run()
    jax.block_until_ready(result)
    best = min(best, (time.perf_counter() - start) / calls)
  return best


def measure(d_model: int, thin_rows: list[int]) -> dict:
  import jax
  import jax.numpy as jnp

  from aya_t5x import throughput

  rng = np.random.default_rng(0)
  # [out, in], as the decoding loop stores kernels; 256 MB of float32.
  weights = jnp.asarray(rng.standard_normal((2**26 // d_model, d_model)), jnp.float32)
  weight_bytes = weights.size * 4
  column_sums = jax.jit(lambda w: w.sum(axis=0))
  read_seconds = best_seconds(lambda: column_sums(weights))
  product = jax.jit(lambda x, w: x @ w.T)
  thin = {}
  for rows in thin_rows:
    x = jnp.asarray(rng.standard_normal((rows, d_model)), jnp.float32)
    seconds = best_seconds(lambda x=x: product(x, weights))
    thin[str(rows)] = {"gbytes_per_second": weight_bytes / seconds / 1e9,
                       "gflops": 2 * rows * weights.size / seconds / 1e9}
  return {"matmul_gflops": throughput.measure_matmul_peak(jnp.float32, size=2048) / 1e9,
          "dram_read_gbytes_per_second": weight_bytes / read_seconds / 1e9,
          "thin_dot": thin}


def decoder_step_bytes(config) -> int:
  """Bytes of the weights one decoding step reads: the decoder's, less the cached ones."""
  from flax import traverse_util

  from aya_t5x import model

  flat = traverse_util.flatten_dict(model.param_shapes(config)["decoder"])
  cached = lambda path: "encoder_decoder_attention" in path and path[-2] in ("key", "value")
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for path, x in flat.items()
             if not cached(path))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--gin_file", default="models/mt5_small.gin")
  parser.add_argument("--vocab_size", type=int, default=32128)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=256, help="train step input length")
  parser.add_argument("--targets", type=int, default=128, help="train step target length")
  parser.add_argument("--num_beams", type=int, default=4)
  parser.add_argument("--one_core", action="store_true",
                      help="pin to one core, one XLA thread (as decode.py --one_core)")
  parser.add_argument("--torch_step_seconds", type=float, default=None,
                      help="PyTorch's step time from train_step.py, for the share of peak "
                      "that 1.5x it needs")
  parser.add_argument("--hf_greedy_tokens_per_second", type=float, default=None,
                      help="HF generate's greedy tokens/s from decode.py --one_core")
  parser.add_argument("--hf_beam_tokens_per_second", type=float, default=None,
                      help="HF generate's beam tokens/s from decode.py --one_core")
  args = parser.parse_args()

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if args.one_core:
    from train_step import pin_to_one_core  # this folder's sibling; it imports no jax

    pin_to_one_core()
  import aya_t5x.configurables  # noqa: F401  (what the gin files configure)
  from aya_t5x import gin_config, throughput

  gin_config.parse_gin([args.gin_file], [f"MT5Config.vocab_size={args.vocab_size}"])
  config = gin_config.configured_model()
  figures = measure(config.d_model, [args.batch, args.batch * args.num_beams])

  step_flops = throughput.train_flops_per_step(config, args.batch, args.inputs, args.targets)
  train = {"model_flops": step_flops,
           "seconds_at_matmul_peak": step_flops / (figures["matmul_gflops"] * 1e9)}
  if args.torch_step_seconds:
    goal_seconds = args.torch_step_seconds / 1.5
    train["goal_seconds"] = goal_seconds
    train["share_of_matmul_peak_needed"] = train["seconds_at_matmul_peak"] / goal_seconds

  step_bytes = decoder_step_bytes(config)

  def decoding_step(rows: int, hf_tokens_per_second: float | None) -> dict:
    thin_rate = figures["thin_dot"][str(rows)]["gbytes_per_second"]
    bounds = {"rows": rows, "weight_bytes": step_bytes,
              "seconds_at_dram_read": step_bytes / (figures["dram_read_gbytes_per_second"]
                                                    * 1e9),
              "seconds_at_thin_dot_rate": step_bytes / (thin_rate * 1e9)}
    if hf_tokens_per_second:
      bounds["goal_seconds"] = args.batch / (2 * hf_tokens_per_second)
    return bounds

  greedy = decoding_step(args.batch, args.hf_greedy_tokens_per_second)
  beam = decoding_step(args.batch * args.num_beams, args.hf_beam_tokens_per_second)

  print(json.dumps({
      "what": "cpu_bounds", "model": os.path.basename(args.gin_file),
      "config": {"vocab": config.vocab_size, "batch": args.batch, "inputs": args.inputs,
                 "targets": args.targets, "num_beams": args.num_beams},
      "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores",
      "one_core": args.one_core, "load_average_1min": os.getloadavg()[0],
      **figures, "train_step": train, "greedy_step": greedy, "beam_step": beam}))


if __name__ == "__main__":
  main()
