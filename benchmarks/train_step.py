"""Times the jitted aya_t5x train step and, in the same run, the PyTorch reference step.

The peer is Hugging Face transformers' `MT5ForConditionalGeneration` with its Adafactor
(the same algorithm: factored second moments, decay 0.8, update clipping 1.0, parameter
scaling) at the same configuration and numerics. Prints one JSON line.

    python benchmarks/train_step.py --gin_file models/mt5_small.gin --vocab_size 32128 \
        --batch 8 --inputs 256 --targets 128            # the CPU comparison of BENCHMARKS.md
    python benchmarks/train_step.py --gin_file models/mt5_base.gin --batch 64 \
        --inputs 1024 --targets 1024 --dtype bfloat16 --no_torch   # one GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import re
import time

import numpy as np


def random_batch(rng: np.random.Generator, vocab: int, batch: int, inputs: int,
                 targets: int) -> dict[str, np.ndarray]:
  encoder = rng.integers(2, vocab, (batch, inputs)).astype(np.int32)
  target = rng.integers(2, vocab, (batch, targets)).astype(np.int32)
  decoder = np.concatenate([np.zeros((batch, 1), np.int32), target[:, :-1]], axis=1)
  return {"encoder_input_tokens": encoder, "decoder_input_tokens": decoder,
          "decoder_target_tokens": target}


def initial_params(config) -> dict:
  """aya_t5x's initialisation, as host arrays: both sides start from these weights."""
  import jax

  from aya_t5x import model

  return jax.tree.map(np.asarray, model.init_params(config, jax.random.key(0)))


def prepare_jax(config, batch, warmup: int, params: dict, vocab_tile_size: int | None = None):
  """Compiles and warms the aya_t5x step; returns (run_one_step, facts).

  `vocab_tile_size`: the loss over vocabulary tiles (`LossConfig.vocab_tile_size`).
  """
  import jax

  from aya_t5x import optim, partitioning, train_state, train_step

  schedule = optim.LearningRateSchedule(base_learning_rate=1e-3)
  tx = optim.make_optimizer(schedule)
  part = partitioning.Partitioner()
  mesh = part.mesh(jax.devices()[:1])
  layout = train_state.state_layout(config, tx, part, mesh)
  state = train_state.init_state(config, tx, layout, mesh, jax.random.key(0), params)
  loss = train_step.LossConfig(normalization="num_real_target_tokens", z_loss=0.0,
                               vocab_tile_size=vocab_tile_size)
  step = train_step.make_train_step(config, tx, schedule, loss, seed=0)
  sharding = part.batch_sharding(mesh)
  with jax.set_mesh(mesh), part.rules_context():
    compiled = jax.jit(step, in_shardings=(layout.shardings, sharding),
                       out_shardings=(layout.shardings, None), donate_argnums=0)
    device_batch = jax.tree.map(lambda x: jax.device_put(x, sharding), batch)
    # The compiler's memory analysis of this very step (compiled once more, not timed).
    temporary_bytes = compiled.lower(state, device_batch).compile().memory_analysis(
        ).temp_size_in_bytes
    start = time.perf_counter()
    state, metrics = compiled(state, device_batch)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    first_loss = float(metrics["loss"])
    for _ in range(warmup - 1):
      state, metrics = compiled(state, device_batch)
    jax.block_until_ready(metrics)
  holder = {"state": state}

  def run_one_step() -> None:
    with jax.set_mesh(mesh), part.rules_context():
      holder["state"], out = compiled(holder["state"], device_batch)
      jax.block_until_ready(out)

  return run_one_step, {"compile_seconds": compile_seconds, "first_loss": first_loss,
                        "device": jax.devices()[0].device_kind,
                        "vocab_tile_size": vocab_tile_size,
                        "temporary_bytes": int(temporary_bytes)}


def prepare_torch(config, batch, warmup: int, params: dict):
  """Builds and warms the PyTorch reference step; returns (run_one_step, facts)."""
  import torch
  import transformers
  from transformers.optimization import Adafactor

  from aya_t5x.checkpoints import hf

  # XLA flushes denormals to zero on CPU; without the same setting PyTorch's backward
  # matmuls through near-zero softmax gradients run tens of times slower.
  torch.set_flush_denormal(True)
  model = transformers.MT5ForConditionalGeneration(
      transformers.MT5Config(**hf.hf_config_dict(config)))
  model.load_state_dict({k: torch.from_numpy(v) for k, v in
                         hf.params_to_hf_state_dict(params, config).items()}, strict=False)
  model.train()
  optimizer = Adafactor(model.parameters(), lr=1e-3, scale_parameter=True,
                        relative_step=False, warmup_init=False, clip_threshold=1.0,
                        decay_rate=-0.8, beta1=None)
  inputs = torch.from_numpy(batch["encoder_input_tokens"]).long()
  decoder = torch.from_numpy(batch["decoder_input_tokens"]).long()
  labels = torch.from_numpy(batch["decoder_target_tokens"]).long()

  def step():
    optimizer.zero_grad(set_to_none=True)
    out = model(input_ids=inputs, decoder_input_ids=decoder, labels=labels)
    out.loss.backward()
    optimizer.step()
    return out.loss

  first_loss = float(step())
  for _ in range(warmup - 1):
    step()
  return step, {"first_loss": first_loss, "threads": torch.get_num_threads()}


def interleaved_medians(runners: dict, rounds: int) -> dict[str, float]:
  """Median step seconds of each runner, timed in alternation so drift hits all alike."""
  times: dict[str, list[float]] = {name: [] for name in runners}
  for _ in range(rounds):
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)
  return {name: float(np.median(t)) for name, t in times.items()}


def _op_kind(name: str) -> str:
  lowered = name.lower()
  for kind, marks in (("matmul", ("gemm", "xmma", "nvjet", "cutlass", "cublas", "dot", "matmul")),
                      ("attention/softmax", ("softmax", "reduce")),
                      ("copy/transpose", ("copy", "transpose")),
                      ("fusion", ("fusion",))):
    if any(m in lowered for m in marks):
      return kind
  return "other"


def profile_summary(run_one_step, trace_dir: str, steps: int = 2, top: int = 20) -> dict:
  """Traces `steps` steps and sums device-op time by op name and by a coarse kind.

  Reads the Perfetto JSON that `jax.profiler.trace` writes next to its xplane file; on a
  GPU the device ops are the CUDA kernels (CUPTI), on a CPU the XLA thunks.
  """
  import glob
  import gzip

  import jax

  with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
    for _ in range(steps):
      run_one_step()
  path = sorted(glob.glob(os.path.join(trace_dir, "**", "*.json.gz"), recursive=True))[-1]
  with gzip.open(path) as f:
    events = json.load(f)
  events = events.get("traceEvents", events) if isinstance(events, dict) else events
  processes = {e["pid"]: e["args"]["name"] for e in events
               if e.get("ph") == "M" and e.get("name") == "process_name"}
  device_pids = {pid for pid, name in processes.items()
                 if "/device:" in name and "host" not in name.lower()}
  # Without a device timeline (CPU), XLA's ops run on its own host threads.
  xla_threads = {e["tid"] for e in events if e.get("ph") == "M"
                 and e.get("name") == "thread_name" and e["args"]["name"].startswith("tf_XLA")}

  def is_op(e: dict) -> bool:
    if e.get("ph") != "X":
      return False
    if device_pids:
      return e.get("pid") in device_pids
    name = e["name"]
    return (e.get("tid") in xla_threads and not name.startswith(("end: ", "Wait"))
            and "::" not in name)

  by_name: dict[str, float] = {}  # kernel or thunk name, numbered copies merged
  by_hlo_op: dict[str, float] = {}  # the HLO instruction each ran for, where recorded
  for e in filter(is_op, events):
    name = re.sub(r"\.\d+$", "", e["name"])  # copy.851 and copy.850 are one kind
    by_name[name] = by_name.get(name, 0.0) + float(e.get("dur", 0.0))
    hlo_op = (e.get("args") or {}).get("hlo_op")
    if hlo_op:
      by_hlo_op[hlo_op] = by_hlo_op.get(hlo_op, 0.0) + float(e.get("dur", 0.0))
  total = sum(by_name.values()) or 1.0
  by_kind: dict[str, float] = {}
  for name, us in by_name.items():
    by_kind[_op_kind(name)] = by_kind.get(_op_kind(name), 0.0) + us

  def ranked(times: dict[str, float]) -> list[list]:
    return [[name[:120], round(us / steps / 1e3, 3), round(us / total, 4)]
            for name, us in sorted(times.items(), key=lambda kv: -kv[1])[:top]]

  summary = {"device_ms_per_step": total / steps / 1e3,
             "by_kind_share": {k: round(v / total, 4) for k, v in
                               sorted(by_kind.items(), key=lambda kv: -kv[1])},
             "top_ops": ranked(by_name)}
  if by_hlo_op:
    summary["top_hlo_ops"] = ranked(by_hlo_op)
  return summary


def pin_to_one_core() -> None:
  """Runs this process on one core with one XLA thread (call before jax starts).

  On a shared machine, single-threaded runs stay comparable where multi-threaded ones
  wait on descheduled threads.
  """
  os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_cpu_multi_thread_eigen=false").strip()


def dump_hlo_to(dump_dir: str, module_re: str) -> None:
  """Makes XLA dump the optimised HLO of the modules matching `module_re` as text.

  Call before jax starts: XLA reads its flags once.
  """
  os.environ["XLA_FLAGS"] = (f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump_dir} "
                             f"--xla_dump_hlo_as_text --xla_dump_hlo_module_re={module_re}"
                             ).strip()


def describe_hlo_ops(names: list[str], dump_dir: str, module: str = "train_step"
                     ) -> dict[str, str]:
  """What each named HLO instruction of `module` is, from XLA's optimised-HLO dump.

  For a fusion: its output shape, its kind and the operations fused into it (by count),
  and the JAX operation it came from (`op_name`), which says which layer produced it.
  """
  import collections
  import glob

  dumps = glob.glob(os.path.join(dump_dir, f"*jit_{module}*after_optimizations.txt"))
  if not dumps:
    return {}
  text = open(max(dumps, key=os.path.getsize), encoding="utf-8").read()
  instruction = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?) ([\w\-]+)\(.*$")
  computations: dict[str, collections.Counter] = {}
  lines: dict[str, tuple[str, str, str]] = {}
  current = None
  for line in text.splitlines():
    header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\{$", line)
    if header:
      current = computations.setdefault(header.group(1), collections.Counter())
      continue
    match = instruction.match(line)
    if match and current is not None:
      name, shape, opcode = match.groups()
      current[opcode] += 1
      lines[name] = (shape, opcode, line)
  described = {}
  for name in names:
    if name not in lines:
      continue
    shape, opcode, line = lines[name]
    parts = [f"{shape} {opcode}"]
    kind = re.search(r"kind=(\w+)", line)
    if kind:
      parts.append(kind.group(1))
    called = re.search(r"calls=%?([\w.\-]+)", line)
    if called and called.group(1) in computations:
      ops = computations[called.group(1)]
      parts.append(", ".join(f"{op} x{n}" for op, n in ops.most_common(8)
                             if op not in ("parameter", "constant")))
    op_name = re.search(r'op_name="([^"]+)"', line)
    if op_name:
      parts.append(op_name.group(1)[:160])
    described[name] = "; ".join(parts)
  return described


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--gin_file", default="models/mt5_small.gin")
  parser.add_argument("--vocab_size", type=int, default=None)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=256)
  parser.add_argument("--targets", type=int, default=128)
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
  parser.add_argument("--remat", default="none")
  parser.add_argument("--steps", type=int, default=5, help="timed steps of each, interleaved")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--vocab_tile_size", type=int, default=None,
                      help="the loss over vocabulary tiles of this size (default: untiled)")
  parser.add_argument("--also_untiled", action="store_true",
                      help="with --vocab_tile_size: also time the untiled step "
                      "(aya_t5x_untiled), interleaved")
  parser.add_argument("--also_bfloat16", action="store_true",
                      help="also time the aya_t5x step with bfloat16 activations")
  parser.add_argument("--gin_binding", action="append", default=[],
                      help="an extra gin binding, e.g. MT5Config.float32_attention_logits=False")
  parser.add_argument("--profile_dir", default=None,
                      help="also trace two aya_t5x steps here and summarise device ops")
  parser.add_argument("--hlo_dump_dir", default=None,
                      help="with --profile_dir: dump the optimised HLO here and describe "
                      "the top ops (shape, fused operations, source op)")
  args = parser.parse_args()

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  if args.hlo_dump_dir:
    dump_hlo_to(args.hlo_dump_dir, "train_step")
  import aya_t5x.configurables  # noqa: F401  (what the gin files configure)
  from aya_t5x import gin_config, throughput

  bindings = [f"MT5Config.dtype='{args.dtype}'", "MT5Config.dropout_rate=0.0",
              f"MT5Config.remat_policy='{args.remat}'"]
  if args.vocab_size:
    bindings.append(f"MT5Config.vocab_size={args.vocab_size}")
  bindings += args.gin_binding
  gin_config.parse_gin([args.gin_file], bindings)
  config = gin_config.configured_model()
  batch = random_batch(np.random.default_rng(0), config.vocab_size, args.batch,
                       args.inputs, args.targets)
  tokens = args.batch * (args.inputs + args.targets)
  params = initial_params(config)
  flops = throughput.train_flops_per_step(config, args.batch, args.inputs, args.targets)
  peak, peak_source = throughput.device_peak_flops(dtype=config.activation_dtype)

  runners, facts = {}, {}
  runners["aya_t5x"], facts["aya_t5x"] = prepare_jax(config, batch, args.warmup, params,
                                                     args.vocab_tile_size)
  if args.also_untiled and args.vocab_tile_size:
    runners["aya_t5x_untiled"], facts["aya_t5x_untiled"] = prepare_jax(
        config, batch, args.warmup, params)
  if args.also_bfloat16 and args.dtype != "bfloat16":
    bf16 = dataclasses.replace(config, dtype="bfloat16")
    runners["aya_t5x_bfloat16"], facts["aya_t5x_bfloat16"] = prepare_jax(
        bf16, batch, args.warmup, params, args.vocab_tile_size)
  if not args.no_torch:
    runners["pytorch"], facts["pytorch"] = prepare_torch(config, batch, args.warmup, params)
  medians = interleaved_medians(runners, args.steps)

  record = {
      "what": "train_step", "model": os.path.basename(args.gin_file),
      "config": {"vocab": config.vocab_size, "batch": args.batch, "inputs": args.inputs,
                 "targets": args.targets, "dtype": args.dtype, "remat": args.remat,
                 "gin_bindings": args.gin_binding},
      "machine": f"{platform.machine()} {os.cpu_count()} cores",
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "peak_flops_per_second": peak, "peak_source": peak_source,
      "model_flops_per_step": flops, "timed_steps_each": args.steps,
  }
  for name, seconds in medians.items():
    record[name] = {**facts[name], "step_seconds": seconds,
                    "tokens_per_second": tokens / seconds,
                    "mfu": flops / seconds / peak}
  if args.profile_dir:
    profile = profile_summary(runners["aya_t5x"], args.profile_dir)
    if args.hlo_dump_dir:
      names = [name for name, *_ in profile.get("top_hlo_ops", [])]
      profile["hlo_ops"] = describe_hlo_ops(names, args.hlo_dump_dir)
    record["aya_t5x"]["profile"] = profile
  if "aya_t5x_untiled" in medians:
    record["tiled_over_untiled_time"] = medians["aya_t5x"] / medians["aya_t5x_untiled"]
  if "pytorch" in medians:
    record["speedup_vs_pytorch"] = medians["pytorch"] / medians["aya_t5x"]
  print(json.dumps(record))


if __name__ == "__main__":
  main()
