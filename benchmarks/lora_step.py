"""A LoRA train step against a full fine-tuning step on the same batch, on CPU.

Both steps are aya_t5x's jitted step on the same model (mT5-small's dimensions by
default, at a 32,128-token vocabulary as in BENCHMARKS.md's CPU comparison) and batch:
full fine-tuning trains every parameter with Adafactor; LoRA (`runs/lora.gin`'s shape:
rank 64 on every attention and MLP kernel) trains the adapters only, the base frozen.
The two are timed in alternation (median of `--rounds`), on one core with one XLA
thread. Prints one JSON line.

    python benchmarks/lora_step.py --gin_file models/mt5_small.gin --vocab_size 32128 \
        --batch 8 --inputs 256 --targets 128 --rank 64
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

_PEER = Path(__file__).with_name("train_step.py")
_spec = importlib.util.spec_from_file_location("benchmark_train_step", _PEER)
peer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peer)


def prepare(config, trainable, batch, params, warmup: int):
  """Compiles and warms one step of `trainable`; returns (run_one_step, facts)."""
  import jax

  from aya_t5x import optim, partitioning, train_state, train_step

  schedule = optim.LearningRateSchedule(base_learning_rate=1e-3)
  tx = optim.make_optimizer(schedule)
  config = trainable.model_config(config)
  part = partitioning.Partitioner()
  mesh = part.mesh(jax.devices()[:1])
  layout = train_state.state_layout(config, tx, part, mesh, trainable)
  frozen_layout = train_state.frozen_layout(config, part, mesh, trainable)
  state = train_state.init_state(config, tx, layout, mesh, jax.random.key(0), params,
                                 trainable)
  frozen = train_state.init_frozen(config, frozen_layout, mesh, jax.random.key(0), trainable,
                                   params)
  loss = train_step.LossConfig(z_loss=0.0)
  sharding = part.batch_sharding(mesh)
  step = train_step.jit_train_step(config, tx, schedule, loss, seed=0, num_microbatches=1,
                                   state_shardings=layout.shardings, batch_sharding=sharding,
                                   trainable=trainable,
                                   frozen_shardings=frozen_layout.shardings)
  device_batch = jax.tree.map(lambda x: jax.device_put(x, sharding), batch)
  with jax.set_mesh(mesh), part.rules_context():
    compiled = step.lower(state, device_batch, frozen).compile()
    memory = compiled.memory_analysis()
    for _ in range(warmup):
      state, metrics = step(state, device_batch, frozen)
    jax.block_until_ready(metrics)
  holder = {"state": state}

  def run_one_step() -> None:
    with jax.set_mesh(mesh), part.rules_context():
      holder["state"], out = step(holder["state"], device_batch, frozen)
      jax.block_until_ready(out)

  trained = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(layout.shapes.params))
  return run_one_step, {"trainable_parameters": trained,
                        "temporary_bytes": int(memory.temp_size_in_bytes),
                        "state_bytes": sum(int(x.nbytes) for x in jax.tree.leaves(state))}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--gin_file", default="models/mt5_small.gin")
  parser.add_argument("--vocab_size", type=int, default=32128)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=256)
  parser.add_argument("--targets", type=int, default=128)
  parser.add_argument("--rank", type=int, default=64)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  args = parser.parse_args()
  peer.pin_to_one_core()
  import aya_t5x.configurables  # noqa: F401  (what the gin files configure)
  from aya_t5x import gin_config
  from aya_t5x.adapters import lora, trainable

  gin_config.parse_gin([args.gin_file], [f"MT5Config.vocab_size={args.vocab_size}"])
  config = dataclasses.replace(gin_config.configured_model(), dropout_rate=0.0)
  batch = peer.random_batch(np.random.default_rng(0), config.vocab_size, args.batch,
                            args.inputs, args.targets)
  params = peer.initial_params(config)
  adapters = trainable.LoraAdapters(lora=lora.LoraConfig(rank=args.rank,
                                                         alpha=2.0 * args.rank))
  runners, facts = {}, {}
  for name, chosen in (("full", trainable.ALL), ("lora", adapters)):
    runners[name], facts[name] = prepare(config, chosen, batch, params, args.warmup)
  medians = peer.interleaved_medians(runners, args.rounds)
  print(json.dumps({
      "benchmark": "lora_step", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
      "machine": platform.processor() or platform.machine(),
      "loadavg": os.getloadavg()[0], "model": args.gin_file, "vocab_size": args.vocab_size,
      "batch": args.batch, "inputs": args.inputs, "targets": args.targets,
      "rank": args.rank, "full_seconds": medians["full"], "lora_seconds": medians["lora"],
      "lora_over_full": medians["lora"] / medians["full"], "full": facts["full"],
      "lora": facts["lora"]}))


if __name__ == "__main__":
  main()
