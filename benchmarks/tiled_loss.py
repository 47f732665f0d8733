"""The output layer's loss alone on CPU: vocabulary-tiled (`aya_t5x.vocab_tiling`) against
the whole-vocabulary path (`losses.vocab_statistics` of the full logits).

1,024 tokens, d_model 512 and mT5's 250,112-token vocabulary in float32 (mT5-small's
output layer at batch 8 x 128 targets): the forward pass, and the forward plus the
hidden states' and kernel's gradients, each the best of three after one warm-up.

    taskset -c 1 python benchmarks/tiled_loss.py [--tile_size 8192]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from aya_t5x import losses, vocab_tiling


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tokens", type=int, default=1024)
  parser.add_argument("--d_model", type=int, default=512)
  parser.add_argument("--vocab", type=int, default=250112)
  parser.add_argument("--tile_size", type=int, default=8192)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  hidden = jnp.asarray(rng.normal(size=(args.tokens, args.d_model)), jnp.float32) * 0.05
  kernel = jnp.asarray(rng.normal(size=(args.d_model, args.vocab)), jnp.float32) * 0.05
  targets = jnp.asarray(rng.integers(0, args.vocab, args.tokens), jnp.int32)

  def total(stats):  # a loss with z-loss: every statistic's gradient path is used
    return jnp.sum(stats.log_z - stats.target_logit) + 1e-4 * jnp.sum(stats.log_z ** 2)

  def tiled(h, k):
    return total(vocab_tiling.vocab_statistics(h, k, targets, tile_size=args.tile_size,
                                               shards=1))

  def untiled(h, k):
    return total(losses.vocab_statistics(h @ k, targets))

  for name, loss in (("untiled", untiled), ("tiled", tiled)):
    for what, fn in (("forward", jax.jit(loss)),
                     ("forward+backward", jax.jit(jax.value_and_grad(loss, (0, 1))))):
      jax.block_until_ready(fn(hidden, kernel))
      times = []
      for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(fn(hidden, kernel))
        times.append(time.perf_counter() - start)
      print(f"{name:8s} {what:17s} {min(times):7.3f} s")


if __name__ == "__main__":
  main()
