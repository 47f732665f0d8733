"""Deviceless TPU compiles of LoRA train steps: memory per chip at each batch size.

The run is `runs/aya_recipe.gin` (1024 + 1024 tokens, the tiled loss) with
`runs/lora.gin` (rank 64 on every attention and MLP kernel, bfloat16 base), scanned
layers, full rematerialisation and FSDP, compiled for a topology without its chips
(`aya_t5x.aot`, memory only: no cost-model compiles). One JSON line per batch size.

    python benchmarks/lora_memory.py --model mt5_xxl --topology v4-8 --batch 32 48 64
    python benchmarks/lora_memory.py --model mt5_xl --topology v5e-1 --batch 8 16
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="mt5_xxl")
  parser.add_argument("--topology", default="v4-8")
  parser.add_argument("--batch", type=int, nargs="+", default=[32])
  parser.add_argument("--rank", type=int, default=64)
  parser.add_argument("gin_bindings", nargs="*", help="extra NAME=VALUE gin bindings")
  args = parser.parse_args()
  import jax

  jax.config.update("jax_platforms", "cpu")
  import aya_t5x.configurables  # noqa: F401  (what the gin files configure)
  from aya_t5x import aot, gin_config
  from aya_t5x.compile_command import _step_arguments

  topology = aot.resolve_topology(args.topology)
  for batch in args.batch:
    gin_config.parse_gin(
        [f"models/{args.model}.gin", "runs/aya_recipe.gin", "partitioning/fsdp.gin",
         "runs/lora.gin"],
        ["MT5Config.scan_layers=True", "MT5Config.remat_policy='full'",
         f"BATCH_SIZE={batch}", f"LORA_RANK={args.rank}", f"LORA_ALPHA={2.0 * args.rank}",
         "MIXTURE_OR_TASK_NAME='unused'", "MODEL_DIR='/tmp/unused'", *args.gin_bindings])
    start = time.perf_counter()
    report = aot.compile_train_step(topology=topology, step_costs=False, **_step_arguments())
    print(json.dumps({
        "benchmark": "lora_memory", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg": os.getloadavg()[0], "model": args.model, "topology": args.topology,
        "device_kind": report.device_kind, "rank": args.rank, "batch": batch,
        "mesh": report.mesh_shape, "memory": report.memory, "hbm_bytes": report.hbm_bytes,
        "fits": report.fits, "error": (report.error or "")[:300],
        "compile_seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
  main()
