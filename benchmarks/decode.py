"""Times aya_t5x greedy and beam decoding against Hugging Face `generate` from the same weights.

Both sides decode the same padded prompts with the same random weights (aya_t5x's
initialisation, converted with `aya_t5x.checkpoints.hf`); calls of the two are timed in
alternation so that the machine's drift affects both alike. The tokens each side produced
are compared too (greedy must agree exactly; beam search agrees unless two beams tie).
Prints one JSON line.

    python benchmarks/decode.py --gin_file models/mt5_small.gin --vocab_size 32128 \
        --batch 8 --inputs 64 --new_tokens 64          # the CPU comparison of BENCHMARKS.md
    python benchmarks/decode.py --one_core             # one thread each, on a busy machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

# Shared with the train-step benchmark (this folder is on sys.path when run as a script).
from train_step import initial_params, interleaved_medians


def random_prompts(rng: np.random.Generator, vocab: int, batch: int, length: int) -> np.ndarray:
  """Padded prompts [batch, length]: lengths from half to all of `length`, each ending in EOS."""
  tokens = np.zeros((batch, length), np.int32)
  for row, n in enumerate(rng.integers(length // 2, length + 1, batch)):
    tokens[row, :n - 1] = rng.integers(2, vocab, n - 1)
    tokens[row, n - 1] = 1
  return tokens


def generated_tokens(tokens: np.ndarray) -> int:
  """Tokens produced up to and including each row's first EOS (the full width without one)."""
  tokens = np.asarray(tokens)
  has_eos = (tokens == 1).any(-1)
  return int(np.where(has_eos, np.argmax(tokens == 1, -1) + 1, tokens.shape[-1]).sum())


def prepare_jax(config, params, prompts, method: str, new_tokens: int, num_beams: int):
  """Compiles and warms one aya_t5x decoder; returns (run, tokens, compile_seconds)."""
  import jax

  from aya_t5x import decoding

  params = jax.device_put(params)
  prompts = jax.device_put(prompts)
  if method == "greedy":
    def run():
      return decoding.greedy_decode(params, config, prompts, max_decode_length=new_tokens)
  else:
    def run():
      return decoding.beam_search(params, config, prompts, num_beams=num_beams,
                                  max_decode_length=new_tokens,
                                  length_penalty_alpha=0.0).tokens[:, 0]
  start = time.perf_counter()
  tokens = np.asarray(jax.block_until_ready(run()))
  compile_seconds = time.perf_counter() - start
  run()  # warm
  return (lambda: jax.block_until_ready(run())), tokens, compile_seconds


def prepare_torch(config, params, prompts, method: str, new_tokens: int, num_beams: int):
  """Builds the Hugging Face model from the same weights; returns (run, tokens)."""
  import torch
  import transformers

  from aya_t5x.checkpoints import hf

  # XLA flushes denormals on CPU; PyTorch gets the same setting (see train_step.py).
  torch.set_flush_denormal(True)
  model = transformers.MT5ForConditionalGeneration(
      transformers.MT5Config(**hf.hf_config_dict(config))).eval()
  model.load_state_dict({k: torch.from_numpy(v) for k, v in
                         hf.params_to_hf_state_dict(params, config).items()}, strict=False)
  inputs = torch.from_numpy(prompts).long()
  mask = inputs != 0
  # length_penalty 0 ranks beams by log-likelihood, as length_penalty_alpha=0 does here.
  kwargs = (dict(do_sample=False, num_beams=1) if method == "greedy" else
            dict(do_sample=False, num_beams=num_beams, length_penalty=0.0))

  def run():
    with torch.no_grad():
      return model.generate(input_ids=inputs, attention_mask=mask, max_new_tokens=new_tokens,
                            decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
                            **kwargs)

  out = run()[:, 1:].numpy()  # drop the start token
  out = np.pad(out, ((0, 0), (0, new_tokens - out.shape[1])))
  # HF pads finished rows with EOS's fallback; aya_t5x pads with 0 after the first EOS.
  after_eos = np.cumsum(out == 1, axis=1) - (out == 1) > 0
  return run, np.where(after_eos, 0, out).astype(np.int32), torch.get_num_threads()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--gin_file", default="models/mt5_small.gin")
  parser.add_argument("--vocab_size", type=int, default=32128)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=64, help="prompt width (padded)")
  parser.add_argument("--new_tokens", type=int, default=64)
  parser.add_argument("--num_beams", type=int, default=4)
  parser.add_argument("--methods", default="greedy,beam")
  parser.add_argument("--rounds", type=int, default=3, help="timed calls of each, interleaved")
  parser.add_argument("--one_core", action="store_true",
                      help="pin the process to one core, one thread on each side (on a "
                      "shared machine, OpenMP's waits make PyTorch's multi-threaded times "
                      "meaningless; single-threaded runs stay comparable)")
  parser.add_argument("--profile_dir", default=None,
                      help="also trace one aya_t5x call of each method and summarise its ops")
  parser.add_argument("--hlo_dump_dir", default=None,
                      help="with --profile_dir: describe the top ops from the optimised HLO")
  args = parser.parse_args()

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if args.hlo_dump_dir:
    from train_step import dump_hlo_to  # this folder's sibling; it imports no jax

    dump_hlo_to(args.hlo_dump_dir, "beam_search|greedy_decode")
  if args.one_core:
    from train_step import pin_to_one_core  # this folder's sibling; it imports no jax

    pin_to_one_core()
    import torch

    torch.set_num_threads(1)
  import jax

  import aya_t5x.configurables  # noqa: F401  (what the gin files configure)
  from aya_t5x import gin_config

  # float32 activations on both sides (the gin default is bfloat16): the peer runs float32,
  # and the two sides' tokens are compared.
  gin_config.parse_gin([args.gin_file], [f"MT5Config.vocab_size={args.vocab_size}",
                                         "MT5Config.dropout_rate=0.0", "MT5Config.dtype='float32'"])
  config = gin_config.configured_model()
  params = initial_params(config)
  prompts = random_prompts(np.random.default_rng(0), config.vocab_size, args.batch,
                           args.inputs)

  record = {
      "what": "decode", "model": os.path.basename(args.gin_file),
      "config": {"vocab": config.vocab_size, "batch": args.batch, "inputs": args.inputs,
                 "new_tokens": args.new_tokens, "num_beams": args.num_beams,
                 "dtype": config.dtype},
      "device": jax.devices()[0].device_kind,
      "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores",
      # The development machine is shared: the load says how busy it was.
      "load_average_1min": os.getloadavg()[0], "one_core": args.one_core,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "timed_calls_each": args.rounds,
  }
  for method in args.methods.split(","):
    jax_run, jax_tokens, compile_seconds = prepare_jax(
        config, params, prompts, method, args.new_tokens, args.num_beams)
    torch_run, torch_tokens, threads = prepare_torch(
        config, params, prompts, method, args.new_tokens, args.num_beams)
    medians = interleaved_medians({"aya_t5x": jax_run, "hf_generate": torch_run}, args.rounds)
    figures = {"compile_seconds": compile_seconds, "torch_threads": threads,
               "rows_equal": int(np.all(jax_tokens == torch_tokens, axis=1).sum()),
               "rows": args.batch}
    for name, tokens in (("aya_t5x", jax_tokens), ("hf_generate", torch_tokens)):
      count = generated_tokens(tokens)
      figures[name] = {"seconds": medians[name], "new_tokens": count,
                       "tokens_per_second": count / medians[name]}
    figures["speedup_vs_hf"] = (figures["aya_t5x"]["tokens_per_second"]
                                / figures["hf_generate"]["tokens_per_second"])
    if args.profile_dir:
      from train_step import describe_hlo_ops, profile_summary  # this folder's sibling

      profile = profile_summary(jax_run, os.path.join(args.profile_dir, method), steps=1)
      if args.hlo_dump_dir:
        profile["hlo_ops"] = describe_hlo_ops(
            [name for name, *_ in profile.get("top_hlo_ops", [])], args.hlo_dump_dir,
            module="beam_search" if method == "beam" else "greedy_decode")
      figures["aya_t5x"]["profile"] = profile
    record[method] = figures
  print(json.dumps(record))


if __name__ == "__main__":
  main()
