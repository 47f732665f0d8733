"""`aya-t5x compile`: the train step compiled ahead of time, on CPU devices and TPU topologies.

TPU topologies need libtpu (the `tpu` extra); those tests are skipped only where it is
not installed. The CPU tests run the same code path on the 8 simulated CPU devices.
"""

import dataclasses
import importlib.util
import json

import jax
import numpy as np
import pytest

from aya_t5x import aot, cli, gin_config, model, optim, partitioning, throughput, train_state
from aya_t5x.compile_command import _step_arguments

HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed "
                                  "(pip install -e '.[tpu]')")

TINY_FILES = ["models/mt5_tiny.gin", "runs/aya_recipe.gin", "partitioning/fsdp.gin"]
TINY_BINDINGS = ["BATCH_SIZE=16", "TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 32}",
                 "MIXTURE_OR_TASK_NAME='unused'", "MODEL_DIR='/unused'"]
TINY_RUN = [*(a for f in TINY_FILES for a in ("--gin_file", f)),
            *(f"--gin.{b}" for b in TINY_BINDINGS)]


def compile_json(tmp_path, capsys, topology, *extra):
  path = tmp_path / "report.json"
  status = cli.main(["compile", "--topology", topology, "--json", str(path), *TINY_RUN,
                     *extra])
  output = capsys.readouterr()
  report = json.loads(path.read_text()) if path.exists() else None
  return status, output.out, output.err, report


def program_train_flops(config, batch: int, input_length: int, target_length: int) -> float:
  """A training step's matmul FLOPs counted off the model's forward program: every
  dot_general, 2 x (output elements) x (contracted size), in every sub-program; the
  backward pass is twice the forward's (the usual 3x). Independent of `throughput`'s
  closed formula, which the report uses."""
  config = dataclasses.replace(config, scan_layers=False)
  params = jax.eval_shape(lambda: model.init_params(config, jax.random.key(0)))
  tokens = lambda length: jax.ShapeDtypeStruct((batch, length), np.int32)
  program = jax.make_jaxpr(lambda p, i, d: model.MT5(config).apply({"params": p}, i, d))(
      params, tokens(input_length), tokens(target_length))

  def count(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        (contracting, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        total += 2 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[i] for i in contracting])
      for value in eqn.params.values():
        for sub in value if isinstance(value, (list, tuple)) else [value]:
          inner = getattr(sub, "jaxpr", sub)
          if hasattr(inner, "eqns"):
            total += count(inner)
    return total

  return 3.0 * count(program.jaxpr)


def test_cpu_compile_reports_the_memory_of_the_state_and_batch_shards(tmp_path, capsys):
  status, out, err, report = compile_json(tmp_path, capsys, "cpu:8")
  assert status == 0, err
  assert "memory per device:" in out and "FLOPs per step" in out
  assert report["num_devices"] == 8 and report["mesh_shape"]["data"] == 8
  # Independent reference: the bytes of one device's shard of every state array and
  # of the batch, from the shapes and shardings alone.
  gin_config.parse_gin(TINY_FILES, TINY_BINDINGS)
  arguments = _step_arguments()
  part = arguments["partitioner"]
  mesh = part.mesh(jax.devices()[:8])
  tx = optim.make_run_optimizer(arguments["model_config"], arguments["schedule"],
                                arguments["optimizer"])
  layout = train_state.state_layout(arguments["model_config"], tx, part, mesh)
  state_bytes = sum(np.prod(s.sharding.shard_shape(s.shape)) * s.dtype.itemsize
                    for s in jax.tree.leaves(layout.abstract))
  batch_bytes = 8 * (16 // 8) * 32 * 4  # 8 int32 features of 2 rows x 32 per device
  memory = report["memory"]
  # (jax drops arguments the step returns unchanged, such as Adafactor's placeholders.)
  assert memory["arguments"] == pytest.approx(state_bytes + batch_bytes, rel=0.01)
  assert memory["total"] == (memory["arguments"] + memory["outputs"] - memory["aliased"]
                             + memory["temporaries"] + memory["code"])
  # The new state reuses the donated one.
  assert memory["aliased"] == pytest.approx(state_bytes, rel=0.01)
  # Unscanned and without microbatches the compiler sees all the work: at least the
  # model's matmul FLOPs, and not vastly more.
  model_flops = program_train_flops(arguments["model_config"], 16, 32, 32)
  assert report["model_flops"] == pytest.approx(model_flops, rel=1e-9)
  assert model_flops <= report["compiler_flops"] * 8 <= 2 * model_flops


def test_step_costs_count_every_scanned_layer_and_microbatch(tmp_path, capsys):
  _, _, _, plain = compile_json(tmp_path, capsys, "cpu:8")
  status, out, err, looped = compile_json(
      tmp_path, capsys, "cpu:8", "--gin.MT5Config.scan_layers=True",
      "--gin.MT5Config.num_encoder_layers=3", "--gin.train.num_microbatches=2")
  assert status == 0, err
  assert "cost model per device for the whole step" in out
  # Unrolled without microbatches, the compiler's own count is the whole step.
  assert plain["step_flops"] == plain["compiler_flops"]
  # Independent reference: the plain step plus one more encoder layer, counted off the
  # model's own program, per device.
  gin_config.parse_gin(TINY_FILES, TINY_BINDINGS)
  config = _step_arguments()["model_config"]
  one_layer = (program_train_flops(dataclasses.replace(config, num_encoder_layers=3), 16, 32, 32)
               - program_train_flops(config, 16, 32, 32)) / 8
  assert looped["step_flops"] > plain["step_flops"] + one_layer
  assert looped["step_flops"] < plain["step_flops"] + 2 * one_layer
  # The raw count sees each loop body once: well below the step's work.
  assert looped["compiler_flops"] < 0.7 * looped["step_flops"]
  assert looped["step_bytes_accessed"] > plain["step_bytes_accessed"]
  # No data sheet for CPU devices: no roofline.
  assert looped["roofline_seconds"] is None and looped["mfu_ceiling"] is None


def test_bad_topologies_and_missing_libtpu_are_named(tmp_path, capsys, monkeypatch):
  status, _, err, _ = compile_json(tmp_path, capsys, "cpu:64")
  assert status == 2 and "only 8 CPU device(s) here" in err
  status, _, err, _ = compile_json(tmp_path, capsys, "v4-12")
  assert status == 2 and "No default shape for v4-12" in err and "v4-128" in err
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
  monkeypatch.delenv("TPU_LIBRARY_PATH", raising=False)
  status, _, err, _ = compile_json(tmp_path, capsys, "v4-8")
  assert status == 2 and "needs libtpu" in err and ".[tpu]" in err


def test_cloud_tpu_names_map_to_libtpu_topologies():
  assert aot.libtpu_topology_name("v4-128") == "v4:4x4x4"
  assert aot.libtpu_topology_name("v4-16") == "v4:2x2x2"
  assert aot.libtpu_topology_name("v5p-8") == "v5p:2x2x1"
  assert aot.libtpu_topology_name("v5litepod-16") == "v5e:4x4"
  assert aot.libtpu_topology_name("v4:2x2x4") == "v4:2x2x4"


@needs_libtpu
def test_tpu_compile_of_a_scanned_microbatched_step_fits_a_v4_chip(tmp_path, capsys):
  status, out, err, report = compile_json(
      tmp_path, capsys, "v4-8", "--gin.MT5Config.scan_layers=True",
      "--gin.MT5Config.remat_policy='full'", "--gin.train.num_microbatches=2")
  assert status == 0, err
  assert report["topology"] == "v4:2x2x1" and report["device_kind"] == "TPU v4"
  assert report["num_devices"] == 4 and report["hbm_bytes"] == 32 * 2**30
  assert report["fits"] is True
  assert "of 32.0 GiB" in out and ": fits" in out
  assert report["peak_flops_per_device"] == throughput.PEAK_FLOPS["TPU v4"]
  assert report["step_seconds"] == pytest.approx(
      report["model_flops"] / (4 * 275e12 * 0.5))
  # The roofline from the cost model's whole-step figures and v4's data sheet.
  bound = max(report["step_flops"] / 275e12, report["step_bytes_accessed"] / 1.2e12)
  assert report["roofline_seconds"] == pytest.approx(bound)
  assert report["mfu_ceiling"] == pytest.approx(report["model_flops"] / (4 * 275e12 * bound))
  assert 0 < report["mfu_ceiling"] < 1 and "MFU ceiling" in out


@needs_libtpu
@pytest.mark.parametrize("topology", ["v4-8", "v5litepod-4"])
def test_the_pallas_flash_attention_step_compiles_for_tpus(tmp_path, capsys, topology):
  status, out, err, report = compile_json(
      tmp_path, capsys, topology, "--gin.MT5Config.attention_implementation='pallas_tpu'",
      "--gin.DROPOUT_RATE=0.0", "--gin.TASK_FEATURE_LENGTHS={'inputs': 128, 'targets': 128}",
      "--gin.LossConfig.vocab_tile_size=128")
  # The Mosaic kernels compile inside a shard_map (GSPMD cannot split them), and XLA's
  # cost model counts them from their own cost estimates.
  assert status == 0, err
  assert report["fits"] is True and report["step_flops"] > 0


@needs_libtpu
def test_the_recipe_with_attention_dropout_compiles_the_pallas_kernel_for_a_v4(tmp_path,
                                                                                capsys):
  # runs/aya_recipe.gin as it is (dropout 0.1, ATTENTION_IMPLEMENTATION='auto'): on a TPU
  # topology 'auto' picks the Pallas kernel, whose in-kernel dropout hash must lower
  # through Mosaic, inside the shard_map of each device's rows.
  status, out, err, report = compile_json(
      tmp_path, capsys, "v4-8", "--gin.TASK_FEATURE_LENGTHS={'inputs': 128, 'targets': 128}",
      "--gin.LossConfig.vocab_tile_size=128")
  assert status == 0, err
  assert report["attention"].startswith("attention pallas_tpu (auto on tpu; attention "
                                        "dropout 0.1)")
  assert "attention pallas_tpu" in out
  assert report["fits"] is True and report["step_flops"] > 0


@needs_libtpu
def test_a_step_larger_than_hbm_is_reported_as_not_fitting(tmp_path, capsys):
  # Two replicated layers with a 196,608-wide MLP: 9.7B float32 parameters, 36 GiB per chip.
  status, out, _, report = compile_json(
      tmp_path, capsys, "v4-8", "--gin_file", "partitioning/data_parallel.gin",
      "--gin.BATCH_SIZE=4", "--gin.TASK_FEATURE_LENGTHS={'inputs': 8, 'targets': 8}",
      "--gin.MT5Config.d_model=8192", "--gin.MT5Config.d_ff=196608",
      "--gin.MT5Config.num_encoder_layers=1", "--gin.MT5Config.num_decoder_layers=1")
  assert status == 1
  assert report["fits"] is False
  assert "DOES NOT FIT" in out


@needs_libtpu
def test_an_unknown_topology_lists_the_generations_libtpu_knows(tmp_path, capsys):
  status, _, err, _ = compile_json(tmp_path, capsys, "v9:2x2x1")
  assert status == 2
  assert "libtpu does not know the topology 'v9:2x2x1'" in err
  known = err.split("Known TPU generations: ")[1].split(";")[0].split(", ")
  assert {"v4", "v5e", "v5p"} <= set(known)


@needs_libtpu
@pytest.mark.parametrize("size,gin_file,topology", [
    ("xxl", "topologies/xxl_v4_128.gin", "v4-128"), ("xl", "topologies/xl_v4_16.gin", "v4-16")])
def test_the_proven_placements_divide_their_topologies(size, gin_file, topology):
  """The committed gin files (compiled in BENCHMARKS.md) stay consistent with the recipe."""
  gin_config.parse_gin([f"models/mt5_{size}.gin", "runs/aya_recipe.gin", gin_file],
                       ["MIXTURE_OR_TASK_NAME='unused'", "MODEL_DIR='/unused'"])
  arguments = _step_arguments()
  config, data = arguments["model_config"], arguments["train_data"]
  assert config.scan_layers and config.dtype == "bfloat16"
  assert data.batch_size == 256 and dict(data.task_feature_lengths) == {
      "inputs": 1024, "targets": 1024}
  part: partitioning.Partitioner = arguments["partitioner"]
  mesh = part.mesh(aot.resolve_topology(topology).devices)
  part.check_batch(mesh, data.batch_size, arguments["num_microbatches"])
  part.check_param_shardings(model.param_shapes(config),
                             part.logical_to_sharding(model.param_logical_axes(config), mesh))


@needs_libtpu
def test_a_lora_step_with_flash_attention_compiles_for_tpus_and_holds_less(tmp_path, capsys):
  flash = ["--gin.MT5Config.attention_implementation='pallas_tpu'", "--gin.DROPOUT_RATE=0.0",
           "--gin.TASK_FEATURE_LENGTHS={'inputs': 128, 'targets': 128}",
           "--gin.LossConfig.vocab_tile_size=128", "--gin.MT5Config.scan_layers=True",
           "--gin.MT5Config.remat_policy='full'"]
  status, _, err, full = compile_json(tmp_path, capsys, "v4-8", *flash)
  assert status == 0, err
  status, _, err, lora = compile_json(tmp_path, capsys, "v4-8", *flash,
                                      "--gin_file", "runs/lora.gin", "--gin.LORA_RANK=4")
  # Adapters on scanned layers, with the fused attention and the tiled loss: the state
  # (arguments) is the bfloat16 base and the small adapters, well under the full state.
  assert status == 0, err
  assert lora["fits"] is True
  assert lora["memory"]["arguments"] < full["memory"]["arguments"] / 2
