"""A DPO step against an SFT step on the same batch, on CPU.

The SFT step trains on B examples (prompt -> chosen answer); the DPO step on the same B
prompts with their chosen and rejected answers: one encoder pass, two decoder rows per
prompt, and (with the live reference) a second, gradient-free forward pass of a frozen
copy. Same model, optimizer, tiled loss and lengths; steps interleaved, medians
compared. One JSON line per run on stdout.

    taskset -c 1 python benchmarks/preference_step.py --gin_file models/mt5_small.gin \
      --vocab_size 32128 --batch 8 --inputs 256 --targets 128 --steps 5
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from aya_t5x import configurables, gin_config, model  # noqa: F401  (configurables: gin names)
from aya_t5x.optim import LearningRateSchedule, make_optimizer
from aya_t5x.preference.losses import PairLossConfig
from aya_t5x.preference.objective import PreferenceObjective
from aya_t5x.train_step import CrossEntropy, LossConfig, TrainState, make_train_step


def _rows(rng, batch, length, vocab):
  lengths = rng.integers(length // 2, length + 1, batch)
  tokens = rng.integers(2, vocab, (batch, length)).astype(np.int32)
  return np.where(np.arange(length)[None] < lengths[:, None], tokens, 0).astype(np.int32)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--gin_file", default="models/mt5_small.gin")
  parser.add_argument("--vocab_size", type=int, default=None)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=256)
  parser.add_argument("--targets", type=int, default=128)
  parser.add_argument("--vocab_tile_size", type=int, default=8192)
  parser.add_argument("--reference", default="live", choices=("live", "precomputed"))
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()

  gin_config.parse_gin([args.gin_file], ["ACTIVATION_DTYPE='float32'"])
  config = gin_config.configured_model()
  if args.vocab_size:
    config = dataclasses.replace(config, vocab_size=args.vocab_size)
  config = dataclasses.replace(config, dropout_rate=0.0)
  rng = np.random.default_rng(0)
  prompts = _rows(rng, args.batch, args.inputs, config.vocab_size)
  sides = {s: _rows(rng, args.batch, args.targets, config.vocab_size)
           for s in ("chosen", "rejected")}

  def shifted(t):
    return np.pad(t, ((0, 0), (1, 0)))[:, :-1]

  sft_batch = {"encoder_input_tokens": prompts, "decoder_target_tokens": sides["chosen"],
               "decoder_input_tokens": shifted(sides["chosen"]),
               "decoder_loss_weights": (sides["chosen"] > 0).astype(np.int32)}
  pair_batch = {"encoder_input_tokens": prompts}
  for side, targets in sides.items():
    pair_batch.update({f"{side}_target_tokens": targets, f"{side}_input_tokens": shifted(targets),
                       f"{side}_loss_weights": (targets > 0).astype(np.int32)})
    if args.reference == "precomputed":
      pair_batch[f"{side}_reference_logps"] = -rng.random(targets.shape).astype(np.float32)

  schedule = LearningRateSchedule(kind="constant", base_learning_rate=1e-4)
  tx = make_optimizer(schedule)
  loss = LossConfig(vocab_tile_size=args.vocab_tile_size)
  params = model.init_params(config, jax.random.key(0))
  reference = jax.tree.map(jnp.array, params)
  dpo = PreferenceObjective(pair_loss=PairLossConfig(name="sigmoid"), reference=args.reference)
  steps = {
      "sft": (jax.jit(make_train_step(config, tx, schedule, loss, seed=0,
                                      objective=CrossEntropy()), donate_argnums=(0,)),
              jax.tree.map(jnp.asarray, sft_batch), ()),
      "dpo": (jax.jit(make_train_step(config, tx, schedule, loss, seed=0, objective=dpo),
                      donate_argnums=(0,)), jax.tree.map(jnp.asarray, pair_batch),
              (reference,) if dpo.live_reference else ()),
  }
  states = {name: TrainState(step=jnp.int32(0), params=jax.tree.map(jnp.array, params),
                             opt_state=tx.init(params)) for name in steps}
  times = {name: [] for name in steps}
  for repeat in range(args.steps + 1):  # the first is the compile and warm-up
    for name, (fn, batch, extra) in steps.items():
      start = time.perf_counter()
      states[name], metrics = fn(states[name], batch, *extra)
      jax.block_until_ready(metrics["loss"])
      if repeat:
        times[name].append(time.perf_counter() - start)
  medians = {name: statistics.median(t) for name, t in times.items()}
  print(json.dumps({
      "what": "preference_step", "model": args.gin_file, "vocab_size": config.vocab_size,
      "batch": args.batch, "inputs": args.inputs, "targets": args.targets,
      "reference": args.reference, "steps": args.steps,
      "sft_median_s": round(medians["sft"], 4), "dpo_median_s": round(medians["dpo"], 4),
      "dpo_over_sft": round(medians["dpo"] / medians["sft"], 3),
      "loadavg": os.getloadavg(), "machine": platform.machine(),
      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))


if __name__ == "__main__":
  main()
