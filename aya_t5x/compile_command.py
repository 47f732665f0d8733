"""The `aya-t5x compile` subcommand (wired in by `aya_t5x.cli`).

    aya-t5x compile --topology v4-128 --gin_file models/mt5_xxl.gin \
      --gin_file runs/aya_recipe.gin --gin_file topologies/xxl_v4_128.gin [--utilization 0.5]

Takes the same gin files as `aya-t5x train` and compiles that run's train step for the
topology (see `aya_t5x.aot`), without its devices; no data is read and nothing is
allocated. Besides memory per device it prints the cost model's FLOPs and bytes accessed
for the whole step, the roofline bound of the step time and the MFU ceiling it implies.
Exits 0 when the step fits the devices' memory, 1 when it does not.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re

from aya_t5x.command_flags import add_gin_flags, parse_gin

# The `train` arguments that shape the compiled step.
STEP_ARGUMENTS = ("model_config", "train_data", "partitioner", "schedule", "optimizer",
                  "loss", "num_microbatches", "seed", "objective", "trainable")


def add_commands(sub: argparse._SubParsersAction) -> None:
  parser = sub.add_parser(
      "compile", help="compile a run's train step for a TPU topology without TPUs: memory "
      "per device, FLOPs, step time",
      description="Compile the train step of the run the gin files describe (as `aya-t5x "
                  "train` would) for a topology, ahead of time and without its devices. "
                  "TPU topologies need libtpu (pip install -e '.[tpu]').")
  parser.add_argument("--topology", required=True,
                      help="a libtpu topology (v4:4x4x4), a Cloud TPU type (v4-128) or "
                           "cpu:N (local CPU devices)")
  parser.add_argument("--utilization", type=float, default=0.5,
                      help="share of the devices' peak FLOP/s for the step time estimate")
  parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
  add_gin_flags(parser)
  parser.set_defaults(handler=_compile)


def _step_arguments() -> dict:
  """The step-shaping arguments of `train` as the parsed gin files bind them."""
  import gin
  from aya_t5x import train

  try:
    bindings = gin.get_bindings("train")
  except (ValueError, TypeError) as e:
    raise ValueError(f"The gin files do not give the run's settings: {e}. Fix the binding "
                     "named there; and if a model size, a run file or a partitioning is "
                     "missing, give it, e.g. --gin_file models/mt5_xl.gin --gin_file "
                     "runs/aya_recipe.gin --gin_file partitioning/fsdp.gin.") from e
  missing = [name for name in ("model_config", "train_data") if name not in bindings]
  if missing:
    raise ValueError(f"The gin files bind no {' or '.join(missing)} for `train`; add "
                     "runs/finetune.gin or runs/aya_recipe.gin and a model size file.")
  defaults = inspect.signature(train.train).parameters
  return {name: bindings.get(name, defaults[name].default) for name in STEP_ARGUMENTS}


def _compile(args: argparse.Namespace) -> int:
  if not 0 < args.utilization <= 1:
    raise ValueError(f"--utilization must be in (0, 1], got {args.utilization}.")
  cpu = re.fullmatch(r"cpu:(\d+)", args.topology)
  if cpu and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    # Read when jax starts its CPU backend, which has not happened yet in this process.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={cpu.group(1)}")
  import jax

  # Compilation never runs anything: no accelerator is opened, even where one exists.
  jax.config.update("jax_platforms", "cpu")
  from aya_t5x import aot

  topology = aot.resolve_topology(args.topology)
  parse_gin(args)
  report = aot.compile_train_step(topology=topology, **_step_arguments())
  print(aot.format_report(report, args.utilization))
  if args.json:
    figures = dataclasses.asdict(report) | {
        "fits": report.fits, "utilization": args.utilization,
        "roofline_seconds": report.roofline_seconds, "mfu_ceiling": report.mfu_ceiling,
        "step_seconds": report.step_seconds(args.utilization)}
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(figures, f, indent=1)
  return 1 if report.fits is False else 0
