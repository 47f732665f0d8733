"""Ahead-of-time compilation of the train step for a device topology that is not here.

`compile_train_step` lowers and compiles the exact step a run would use (the same model,
partitioning, batch, lengths, microbatches and optimizer) for the devices of a topology,
and reports what the compiler says about it: memory per device (arguments, outputs,
temporaries, total against the device's HBM) and FLOPs. For TPU topologies libtpu
compiles without a TPU ("deviceless"), so a CPU machine can check that mT5-xxl fits a
v4-128 before anyone pays for one. `cpu:N` compiles for N local CPU devices through the
same code (what the tests exercise where libtpu is absent).

The compiler's cost model (XLA's HLO cost analysis) counts one device's program and a
loop body once: with `scan_layers` or microbatches its raw count is far below the
step's work. For the step's FLOPs and bytes accessed, the same step is therefore also
compiled unrolled, without microbatches, with 1+1, 2+1 and 1+2 encoder+decoder layers,
and the costs are extrapolated linearly to the real depth (every layer costs the same).
From those come the roofline bound of the step time (the larger of FLOPs over the
device's peak and bytes over its HBM bandwidth) and the MFU ceiling it implies. These
are the cost model's estimates, not measurements. The step time at a stated share of
the peak is estimated from the model's FLOPs (`aya_t5x.throughput`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import time
from collections.abc import Sequence

import jax

from aya_t5x import attention, input_pipeline, optim, throughput, train_state, train_step
from aya_t5x.adapters import trainable as trainable_lib
from aya_t5x.adapters.trainable import TrainableSet
from aya_t5x.model_config import MT5Config
from aya_t5x.partitioning import Partitioner
from aya_t5x.train_step import LossConfig

GiB = 2**30

# HBM per device as jax enumerates them (a chip for v4/v5p in megacore mode and for
# v5e/v6e; a TensorCore for v2/v3), from the Cloud TPU system architecture pages.
HBM_BYTES = {
    "TPU v2": 8 * GiB,
    "TPU v3": 16 * GiB,
    "TPU v4": 32 * GiB,
    "TPU v5 lite": 16 * GiB,
    "TPU v5": 95 * GiB,
    "TPU v6 lite": 32 * GiB,
}

# Generations whose chips libtpu can present as one device ("megacore"), as a real
# v4 / v5p slice does.
_MEGACORE = ("v4", "v5p", "v5")
# Generation names to try when libtpu rejects one, to list those it knows.
_CANDIDATE_GENERATIONS = ("v2", "v3", "v4", "v5e", "v5p", "v6e", "tpu7x")
# Cloud TPU accelerator types -> libtpu topologies. v4/v5p names count TensorCores (two
# per chip) and slices are 3-D; v5e/v6e names count chips on a 2-D grid.
_SHAPES_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8",
              256: "4x8x8", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16"}
_SHAPES_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16",
              256: "16x16"}


class TopologyError(ValueError):
  """The topology cannot be compiled for; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str          # as libtpu (or 'cpu:N') names it
  devices: tuple
  hbm_bytes: int | None  # per device; None where unknown (CPU)


def libtpu_topology_name(name: str) -> str:
  """'v4-128' -> 'v4:4x4x4'; libtpu names ('v4:4x4x4') pass through."""
  match = re.fullmatch(r"(v4|v5p|v5litepod|v5e|v6e)-(\d+)", name)
  if not match:
    return name
  generation, count = match.group(1), int(match.group(2))
  if generation in ("v4", "v5p"):
    table, size = _SHAPES_3D, count // 2
  else:
    generation = "v5e" if generation == "v5litepod" else generation
    table, size = _SHAPES_2D, count
  if size not in table:
    sizes = [f"{match.group(1)}-{n * 2 if table is _SHAPES_3D else n}" for n in table]
    raise TopologyError(f"No default shape for {name} (known: {', '.join(sizes)}); give the "
                        f"libtpu topology instead, e.g. '{generation}:2x2x2'.")
  return f"{generation}:{table[size]}"


def _prepare_deviceless_libtpu() -> None:
  """Environment for libtpu on a machine without TPUs (set before it loads)."""
  if importlib.util.find_spec("libtpu") is None and "TPU_LIBRARY_PATH" not in os.environ:
    raise TopologyError(
        "Compiling for a TPU topology needs libtpu, which is not installed: "
        "pip install -c requirements/constraints.txt -e '.[tpu]' (or "
        "pip install 'jax[tpu]==0.10.2'). Without it, --topology cpu:N compiles for "
        "local CPU devices.")
  # No metadata server to ask, no real TPU to lock: quiet, and usable by several
  # processes at once (tests run in parallel).
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v4-8")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def _tpu_topology(name: str, generation: str):
  from jax.experimental import topologies

  kwargs = (dict(chip_config_name="megacore", chips_per_host_bounds=(2, 2, 1), num_slices=1)
            if generation in _MEGACORE else {})
  return topologies.get_topology_desc(name, platform="tpu", **kwargs)


def known_generations() -> list[str]:
  """The TPU generation names of `_CANDIDATE_GENERATIONS` that this libtpu accepts."""
  known = []
  for generation in _CANDIDATE_GENERATIONS:
    try:
      _tpu_topology(f"{generation}:2x2x1", generation)
      known.append(generation)
    except Exception:  # noqa: BLE001 - libtpu's errors have no narrower type
      pass
  return known


def resolve_topology(name: str) -> Topology:
  """The compile-only devices of `name`: 'cpu:N', 'v4:4x4x4', or 'v4-128'."""
  cpu = re.fullmatch(r"cpu:(\d+)", name)
  if cpu:
    count = int(cpu.group(1))
    devices = jax.devices("cpu")
    if count > len(devices):
      raise TopologyError(
          f"--topology {name}: only {len(devices)} CPU device(s) here; set XLA_FLAGS="
          f"--xla_force_host_platform_device_count={count} before starting.")
    return Topology(name=name, devices=tuple(devices[:count]), hbm_bytes=None)
  libtpu_name = libtpu_topology_name(name)  # a bad name fails first, libtpu or not
  _prepare_deviceless_libtpu()
  generation = libtpu_name.split(":")[0]
  try:
    devices = _tpu_topology(libtpu_name, generation).devices
  except jax.errors.JaxRuntimeError as e:
    message = str(e)
    if "external name" in message or ":" not in libtpu_name:
      raise TopologyError(
          f"libtpu does not know the topology {name!r} ({message.strip()}). Known TPU "
          f"generations: {', '.join(known_generations())}; name a topology as "
          "GENERATION:AxBxC (v4:4x4x4 is a v4-128) or as a Cloud TPU type (v4-128), or "
          "use cpu:N.") from e
    raise TopologyError(f"libtpu cannot build the topology {name!r}: {message.strip()}") from e
  kind = devices[0].device_kind
  return Topology(name=libtpu_name, devices=tuple(devices), hbm_bytes=HBM_BYTES.get(kind))


@dataclasses.dataclass(frozen=True)
class CompileReport:
  """What the compiler reports for one train step on one topology.

  Memory figures are bytes per device (`memory` is None when the compiler refused the
  program for lack of memory; `error` then holds its message). FLOPs: `compiler_flops`
  is one device's program as the compiler counts it (loop bodies once), `model_flops`
  the whole step's model FLOPs from the architecture.
  """

  topology: str
  device_kind: str
  num_devices: int
  mesh_shape: dict[str, int]
  batch_size: int
  num_microbatches: int
  tokens_per_step: int
  compile_seconds: float
  memory: dict[str, int] | None
  hbm_bytes: int | None
  compiler_flops: float | None
  model_flops: float
  peak_flops_per_device: float | None
  error: str | None = None
  step_flops: float | None = None          # one device, one whole step (cost model)
  step_bytes_accessed: float | None = None  # one device, one whole step (cost model)
  hbm_bandwidth: float | None = None       # bytes/s per device (data sheet)
  attention: str = ""                      # the kernel and attention dropout compiled

  @property
  def fits(self) -> bool | None:
    if self.memory is None:
      return False
    return None if self.hbm_bytes is None else self.memory["total"] <= self.hbm_bytes

  @property
  def roofline_seconds(self) -> float | None:
    """The cost model's lower bound of the step time: compute- or memory-bound."""
    if self.step_flops is None or not self.peak_flops_per_device or not self.hbm_bandwidth:
      return None
    return max(self.step_flops / self.peak_flops_per_device,
               self.step_bytes_accessed / self.hbm_bandwidth)

  @property
  def mfu_ceiling(self) -> float | None:
    """The model FLOPs utilisation if the step ran at its roofline bound."""
    bound = self.roofline_seconds
    if not bound:
      return None
    return self.model_flops / (self.num_devices * self.peak_flops_per_device * bound)

  def step_seconds(self, utilization: float) -> float | None:
    """The step time the model's FLOPs take at `utilization` of the devices' peak."""
    if not self.peak_flops_per_device:
      return None
    return self.model_flops / (self.num_devices * self.peak_flops_per_device * utilization)


def _data_sheet(table: dict[str, float], device) -> float | None:
  return throughput.data_sheet_value(table, getattr(device, "device_kind", "") or "")


def _memory(compiled) -> dict[str, int]:
  stats = compiled.memory_analysis()
  memory = {"arguments": stats.argument_size_in_bytes, "outputs": stats.output_size_in_bytes,
            "aliased": stats.alias_size_in_bytes, "temporaries": stats.temp_size_in_bytes,
            "code": stats.generated_code_size_in_bytes}
  # Outputs aliased to donated arguments (the new train state) take no memory of their own.
  memory["total"] = (memory["arguments"] + memory["outputs"] - memory["aliased"]
                     + memory["temporaries"] + memory["code"])
  return memory


def _compiler_costs(compiled) -> tuple[float | None, float | None]:
  """(FLOPs, bytes accessed) of one device's program; loop bodies counted once."""
  costs = compiled.cost_analysis()
  if isinstance(costs, Sequence):  # older jax: one dict per program
    costs = costs[0] if costs else {}
  costs = costs or {}
  flops, accessed = costs.get("flops"), costs.get("bytes accessed")
  return (None if flops is None else float(flops),
          None if accessed is None else float(accessed))


@contextlib.contextmanager
def _without_persistent_cache(devices):
  """Compile-only (deviceless) executables cannot be read back from jax's persistent
  compilation cache; keep them out of it."""
  compile_only = devices[0].platform != "cpu"
  enabled = jax.config.jax_enable_compilation_cache
  if compile_only:
    jax.config.update("jax_enable_compilation_cache", False)
  try:
    yield
  finally:
    if compile_only:
      jax.config.update("jax_enable_compilation_cache", enabled)


def _lower_step(devices, model_config: MT5Config, train_data, partitioner: Partitioner,
                schedule, optimizer, loss: LossConfig, num_microbatches: int, seed: int,
                objective: train_step.Objective = train_step.CrossEntropy(),
                trainable: TrainableSet = trainable_lib.ALL):
  mesh = partitioner.mesh(devices)
  partitioner.check_batch(mesh, train_data.batch_size, num_microbatches)
  tx = optim.make_run_optimizer(model_config, schedule, optimizer)
  model_config = trainable.model_config(model_config)
  batch_sharding = partitioner.batch_sharding(mesh)
  batch = {name: jax.ShapeDtypeStruct(spec.shape, spec.dtype, sharding=batch_sharding)
           for name, spec in objective.batch_spec(train_data).items()}
  layout = train_state.state_layout(model_config, tx, partitioner, mesh, trainable)
  frozen = train_state.frozen_layout(model_config, partitioner, mesh, trainable)
  step = train_step.jit_train_step(model_config, tx, schedule, loss, seed=seed,
                                   num_microbatches=num_microbatches,
                                   state_shardings=layout.shardings,
                                   batch_sharding=batch_sharding, trainable=trainable,
                                   frozen_shardings=frozen.shardings, objective=objective)
  frozen_abstract = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), frozen.shapes,
      frozen.shardings)
  # A live reference is a second, frozen copy of the parameters: it counts in memory.
  extra = (layout.abstract.params,) if objective.live_reference else ()
  with jax.set_mesh(mesh), partitioner.rules_context():
    return mesh, step.lower(layout.abstract, batch, frozen_abstract, *extra)


def unrolled_step_costs(devices, model_config: MT5Config, num_microbatches: int,
                        **step_arguments) -> tuple[float, float]:
  """(FLOPs, bytes accessed) per device of a whole step, every layer and microbatch counted.

  The cost model counts a loop body once, so the step is compiled unrolled and without
  microbatches (the whole batch at once: the same work) at 1+1, 2+1 and 1+2 encoder +
  decoder layers, and each stack's per-layer cost is extrapolated to its real depth.
  """
  layer_counts = [(1, 1), (2, 1), (1, 2)]
  costs = []
  for encoder, decoder in layer_counts:
    config = dataclasses.replace(model_config, scan_layers=False,
                                 num_encoder_layers=encoder, num_decoder_layers=decoder)
    _, lowered = _lower_step(devices, config, num_microbatches=1, **step_arguments)
    costs.append(_compiler_costs(lowered.compile()))
  if any(value is None for pair in costs for value in pair):
    raise TopologyError("The compiler gives no cost analysis for this topology.")
  (base_f, base_b), (enc_f, enc_b), (dec_f, dec_b) = costs
  extra_encoder = model_config.num_encoder_layers - 1
  extra_decoder = model_config.num_decoder_layers - 1
  return (base_f + extra_encoder * (enc_f - base_f) + extra_decoder * (dec_f - base_f),
          base_b + extra_encoder * (enc_b - base_b) + extra_decoder * (dec_b - base_b))


def compile_train_step(*, topology: Topology, model_config: MT5Config,
                       train_data: input_pipeline.DatasetConfig,
                       partitioner: Partitioner = Partitioner(),
                       schedule: optim.LearningRateSchedule = optim.LearningRateSchedule(),
                       optimizer: optim.AdafactorConfig = optim.AdafactorConfig(),
                       loss: LossConfig = LossConfig(), num_microbatches: int = 1,
                       seed: int = 0, step_costs: bool = True,
                       objective: train_step.Objective = train_step.CrossEntropy(),
                       trainable: TrainableSet = trainable_lib.ALL) -> CompileReport:
  """Compiles the train step `train.train` would run with these arguments on `topology`.

  With `step_costs` (and where the step fits) the report has the whole step's FLOPs and
  bytes accessed: the compiled step's own count where it has no loops (unscanned layers,
  one microbatch), else `unrolled_step_costs`, at the price of three more (smaller)
  compiles.
  """
  devices = list(topology.devices)
  # 'auto' attention chooses for the topology's platform, as `train` would on it.
  chosen = attention.choose_implementation(
      model_config, devices[0].platform, tuple(train_data.task_feature_lengths.values()))
  attention_line = attention.describe_choice(model_config, chosen, devices[0].platform)
  model_config = chosen
  arguments = dict(train_data=train_data, partitioner=partitioner, schedule=schedule,
                   optimizer=optimizer, loss=loss, seed=seed, objective=objective,
                   trainable=trainable)
  memory, flops, error = None, None, None
  step_flops = step_bytes = None
  start = time.perf_counter()
  with _without_persistent_cache(devices):
    mesh, lowered = _lower_step(devices, model_config, num_microbatches=num_microbatches,
                                **arguments)
    try:
      compiled = lowered.compile()
      memory, flops = _memory(compiled), _compiler_costs(compiled)[0]
    except jax.errors.JaxRuntimeError as e:
      if "RESOURCE_EXHAUSTED" not in str(e):
        raise
      error = str(e).strip()
    if step_costs and memory is not None:
      if not model_config.scan_layers and num_microbatches == 1:
        # No loops: the compiled step's own count is already the whole step.
        step_flops, step_bytes = _compiler_costs(compiled)
      else:
        step_flops, step_bytes = unrolled_step_costs(devices, model_config, num_microbatches,
                                                     **arguments)
  lengths = train_data.task_feature_lengths
  return CompileReport(
      topology=topology.name, device_kind=devices[0].device_kind, num_devices=len(devices),
      mesh_shape=dict(mesh.shape), batch_size=train_data.batch_size,
      num_microbatches=num_microbatches,
      tokens_per_step=train_data.batch_size * (lengths["inputs"] + lengths["targets"]),
      compile_seconds=time.perf_counter() - start, memory=memory,
      hbm_bytes=topology.hbm_bytes, compiler_flops=flops,
      model_flops=throughput.train_flops_per_step(
          model_config, train_data.batch_size, lengths["inputs"], lengths["targets"]),
      peak_flops_per_device=_data_sheet(throughput.PEAK_FLOPS, devices[0]), error=error,
      step_flops=step_flops, step_bytes_accessed=step_bytes,
      hbm_bandwidth=_data_sheet(throughput.HBM_BANDWIDTH, devices[0]),
      attention=attention_line)


def _size(n: int) -> str:
  return f"{n / GiB:8.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:8.2f} MiB"


def format_report(report: CompileReport, utilization: float) -> str:
  """The report as the `aya-t5x compile` command prints it."""
  hbm = f"{report.hbm_bytes / GiB:.1f} GiB HBM each" if report.hbm_bytes else "HBM unknown"
  lines = [f"topology {report.topology}: {report.num_devices} x {report.device_kind} ({hbm});"
           f" mesh {report.mesh_shape}",
           f"batch {report.batch_size} in {report.num_microbatches} microbatch(es), "
           f"{report.tokens_per_step:,} tokens per step; compiled in "
           f"{report.compile_seconds:.1f} s", report.attention]
  if report.memory is None:
    lines.append(f"DOES NOT FIT: {report.error}")
  else:
    m = report.memory
    lines += ["memory per device:",
              f"  arguments    {_size(m['arguments'])}  (train state and batch)",
              f"  outputs      {_size(m['outputs'])}  ({_size(m['aliased']).strip()} of them "
              "reuse the donated train state)",
              f"  temporaries  {_size(m['temporaries'])}",
              f"  code         {_size(m['code'])}"]
    if report.hbm_bytes:
      verdict = "fits" if report.fits else "DOES NOT FIT"
      lines.append(f"  total        {_size(m['total'])} of {report.hbm_bytes / GiB:.1f} GiB "
                   f"({m['total'] / report.hbm_bytes:.0%}): {verdict}")
    else:
      lines.append(f"  total        {_size(m['total'])}")
  lines.append(f"FLOPs per step: {report.model_flops:.3e} model FLOPs (the architecture, "
               "3 x forward)")
  if report.compiler_flops is not None:
    lines.append(f"  compiler: {report.compiler_flops:.3e} per device x {report.num_devices} "
                 f"= {report.compiler_flops * report.num_devices:.3e} (scanned layers and "
                 "microbatch loops counted once)")
  if report.step_flops is not None:
    lines.append(f"cost model per device for the whole step (every layer and microbatch): "
                 f"{report.step_flops:.3e} FLOPs, {report.step_bytes_accessed:.3e} bytes "
                 "accessed")
  if report.roofline_seconds is not None:
    bound = ("compute" if report.step_flops / report.peak_flops_per_device
             >= report.step_bytes_accessed / report.hbm_bandwidth else "memory")
    lines.append(f"  roofline bound of the step time: {report.roofline_seconds:.3f} s "
                 f"({bound}-bound at {report.peak_flops_per_device / 1e12:.0f} TFLOP/s and "
                 f"{report.hbm_bandwidth / 1e9:,.0f} GB/s per device); MFU ceiling "
                 f"{report.mfu_ceiling:.2f} (XLA's cost model, not a measurement)")
  seconds = report.step_seconds(utilization)
  if seconds is not None:
    peak = report.peak_flops_per_device
    lines.append(f"expected step time at {utilization:.0%} of {peak / 1e12:.0f} TFLOP/s per "
                 f"device: {seconds:.2f} s ({report.tokens_per_step / seconds:,.0f} tokens/s)")
  return "\n".join(lines)
