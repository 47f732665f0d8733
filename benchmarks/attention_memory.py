"""Memory of one attention's forward and backward pass on one TPU chip, compiled deviceless.

The question of issue 23 in small: what one attention layer's value-and-gradient needs
on a chip with and without dropout, for each kernel, at mT5's shapes (bfloat16, 12 heads
of 64, the relative position bias). XLA keeps the `[batch, heads, q, k]` weights (and
the dropout mask) for the backward pass; the Pallas kernel keeps a [batch, heads, q,
128] float32 log-sum-exp. One JSON line per configuration: the compiler's temporaries
and its FLOP count for the step. Needs libtpu; compiles for one v4 chip (no TPU used).

    python benchmarks/attention_memory.py --batch 12 --length 1024 --heads 12
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=12, help="rows per chip")
  parser.add_argument("--length", type=int, default=1024)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--d_kv", type=int, default=64)
  parser.add_argument("--topology", default="v4:2x2x1", help="its first chip is used")
  args = parser.parse_args()

  from aya_t5x import aot, layers
  from aya_t5x.attention import AttentionBias
  from aya_t5x.model_config import MT5Config

  aot._prepare_deviceless_libtpu()
  device = aot._tpu_topology(args.topology, args.topology.split(":")[0]).devices[0]
  b, h, n, d = args.batch, args.heads, args.length, args.d_kv
  config = MT5Config(vocab_size=8, d_model=h * d, num_heads=h, d_kv=d, d_ff=8,
                     num_encoder_layers=1, num_decoder_layers=1, dtype="bfloat16")
  sharding = jax.sharding.SingleDeviceSharding(device)

  def spec(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

  inputs = spec((b, n, h * d), jnp.bfloat16)
  relative = spec((1, h, n, n), jnp.bfloat16)
  segments = spec((b, n), jnp.int32)
  # The parameters do not depend on the kernel (the fused paths refuse 1-token inits).
  params = jax.eval_shape(lambda: layers.MultiHeadAttention(config).init(
      jax.random.key(0), jnp.zeros((1, 1, h * d), jnp.bfloat16),
      jnp.zeros((1, 1, h * d), jnp.bfloat16),
      AttentionBias(relative=None, key_valid=jnp.ones((1, 1), bool)),
      deterministic=True)["params"])
  for implementation, rate in (("xla", 0.1), ("pallas_tpu", 0.1), ("xla", 0.0),
                               ("pallas_tpu", 0.0)):
    cfg = dataclasses.replace(config, attention_implementation=implementation,
                              dropout_rate=rate)
    module = layers.MultiHeadAttention(cfg)

    def loss(params, x, rel, ids, rng, module=module):
      bias = AttentionBias(relative=rel, key_valid=ids > 0, query_segment_ids=ids,
                           key_segment_ids=ids, causal=True)
      out = module.apply({"params": params}, x, x, bias, deterministic=False,
                         rngs={"dropout": rng})
      return jnp.sum(out.astype(jnp.float32))

    rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=sharding)
    start = time.perf_counter()
    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(
        jax.tree.map(lambda p: spec(p.shape, p.dtype), params), inputs, relative, segments,
        rng).compile()
    memory = compiled.memory_analysis()
    print(json.dumps({
        "what": "attention_memory", "implementation": implementation, "dropout": rate,
        "batch": b, "heads": h, "length": n, "d_kv": d, "device": device.device_kind,
        "temporaries_bytes": memory.temp_size_in_bytes,
        "arguments_bytes": memory.argument_size_in_bytes,
        "weights_bytes_bf16": b * h * n * n * 2,
        "compile_seconds": round(time.perf_counter() - start, 1),
        "load": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
  main()
