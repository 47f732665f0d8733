"""Multi-host training on one machine: 2 processes x 4 CPU devices against 1 x 8, and bad input.

The processes are real `aya-t5x train` processes joined by `jax.distributed` on
localhost (gloo collectives), started by the local launcher as a user would start them.
"""

import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from aya_t5x import cli, distributed, input_pipeline, partitioning, testing, train_state
from aya_t5x.checkpoints.train_checkpoints import TrainCheckpointer
from aya_t5x.optim import LearningRateSchedule, make_optimizer
from aya_t5x.testing.tiny_runs import gin_args
from tests.test_train import committed_steps, run_in_process

REPO = Path(__file__).resolve().parents[1]
STEPS = 3
# A teacher-forced eval at the last step: every host must read the same batches of it.
TRAIN_EVAL = ("--gin.EVAL_EVERY_STEPS=3", "--gin.EVAL_BATCHES=2")


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("localhost", 0))
    return probe.getsockname()[1]


def json_lines(model_dir: Path) -> list[dict]:
  return [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]


def train_lines(model_dir: Path) -> list[dict]:
  return [line for line in json_lines(model_dir) if "train/loss" in line]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
  """3 steps on 2 processes x 4 devices (FSDP over all 8), logging every step."""
  model_dir = tmp_path_factory.mktemp("two_processes")
  command = [sys.executable, "launch/local.py", "--num_processes", "2",
             "--cpu_devices_per_process", "4", "--", "train",
             *gin_args(model_dir, STEPS, "--gin.train.log_every=1", *TRAIN_EVAL)]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
  return model_dir, result.stdout


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
  """The same run in this process on its 8 devices, reading the two hosts' input shards."""
  model_dir = tmp_path_factory.mktemp("one_process")
  result = run_in_process(model_dir, STEPS, "--gin.train.log_every=1", *TRAIN_EVAL,
                          "--gin.train/DatasetConfig.num_shards=2")
  return model_dir, result


@pytest.mark.slow
def test_two_processes_train_like_one_process_reading_the_same_shards(two_process_run,
                                                                      one_process_run):
  model_dir, output = two_process_run
  ours, theirs = train_lines(model_dir), train_lines(one_process_run[0])
  # Logged once per step, by the first host only.
  assert [line["step"] for line in ours] == [1, 2, 3]
  for key in ("train/loss", "train/accuracy", "train/target_tokens", "train/grad_norm"):
    np.testing.assert_allclose([line[key] for line in ours], [line[key] for line in theirs],
                               rtol=1e-6, err_msg=key)
  assert ours[-1]["train/loss"] < ours[0]["train/loss"]
  evals = [[line for line in json_lines(run) if "train_eval/loss" in line]
           for run in (model_dir, one_process_run[0])]
  assert [line["step"] for line in evals[0]] == [STEPS]
  for key in ("train_eval/loss", "train_eval/accuracy"):
    np.testing.assert_allclose(evals[0][0][key], evals[1][0][key], rtol=1e-6, err_msg=key)
  assert "[process 0] training finished at step 3" in output
  assert "[process 1] training finished" not in output


@pytest.mark.slow
def test_two_process_checkpoint_restores_in_one_process_on_one_device(two_process_run,
                                                                      one_process_run):
  model_dir, _ = two_process_run
  reference = one_process_run[1]
  assert committed_steps(model_dir) == [STEPS]
  part = partitioning.Partitioner(logical_axis_rules=partitioning.preset_rules("fsdp"))
  mesh = part.mesh(jax.devices()[:1])
  tx = make_optimizer(LearningRateSchedule(base_learning_rate=0.01))
  layout = train_state.state_layout(testing.TINY, tx, part, mesh)
  state, data = TrainCheckpointer(model_dir, save_every_steps=4).restore(STEPS, layout.abstract)
  assert data["position"] == STEPS and data["num_shards"] == 2
  for ours, theirs in zip(jax.tree.leaves(state), jax.tree.leaves(reference.state), strict=True):
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_hosts_that_disagree_on_the_seed_stop_naming_it(tmp_path):
  processes = start_processes(tmp_path / "run", 2, lambda index: [f"--gin.train.seed={index}"])
  outputs = finish(processes, 300)
  for process, output in zip(processes, outputs):
    assert process.returncode == 2, output[-3000:]
    assert "hosts of this run disagree" in output, output[-3000:]
    assert "seed: 0 on host 0, 1 on host 1" in output, output[-3000:]
  assert not committed_steps(tmp_path / "run")


def start_processes(model_dir, steps, extra):
  """Two `aya-t5x train` processes of one run, started directly (not by the launcher)."""
  address = f"localhost:{free_port()}"
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  return [subprocess.Popen(
      [sys.executable, "-m", "aya_t5x.cli", "train", *gin_args(model_dir, steps, *extra(index)),
       "--coordinator_address", address, "--num_processes", "2", "--process_id", str(index),
       "--initialization_timeout", "120"],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for index in range(2)]


def finish(processes, timeout_s):
  """The outputs of `processes` once all have exited; past `timeout_s` all are killed and
  the test fails with the end of each output (a hang shows where it hung)."""
  deadline = time.monotonic() + timeout_s
  outputs = []
  for process in processes:
    try:
      outputs.append(process.communicate(timeout=max(1, deadline - time.monotonic()))[0])
    except subprocess.TimeoutExpired:
      for p in processes:
        p.kill()
      tails = [p.communicate()[0][-2000:] for p in processes]
      pytest.fail(f"still running after {timeout_s} s:\n" + "\n-----\n".join(tails))
  return outputs


@pytest.mark.slow
def test_sigterm_on_one_host_stops_every_host_at_the_same_saved_step(tmp_path):
  model_dir = tmp_path / "run"
  processes = start_processes(model_dir, 100_000, lambda index: [
      "--gin.CheckpointConfig.every_steps=1000", "--gin.train.log_every=1"])
  metrics = model_dir / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and not (metrics.exists() and "train/loss" in metrics.read_text()):
    assert all(p.poll() is None for p in processes), processes[0].stdout.read()[-3000:]
    time.sleep(0.1)
  processes[1].send_signal(signal.SIGTERM)  # the second host only
  outputs = finish(processes, 120)
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]
  assert "SIGTERM received" in outputs[0]
  (step,) = committed_steps(model_dir)
  assert 0 < step < 1000
  data = json.loads((model_dir / "checkpoints" / str(step) / "data" / "metadata").read_text())
  assert data["position"] == step


@pytest.mark.slow
def test_a_killed_process_stops_the_other_naming_it_and_both_restarted_resume(tmp_path):
  model_dir = tmp_path / "run"
  flags = lambda index: ["--gin.CheckpointConfig.every_steps=2", "--gin.train.log_every=1"]
  # The survivor stops at its next collective when gloo sees the closed connections (10-20 s
  # idle), naming the lost process. Under load a collective can instead hang, which jax's
  # heartbeat ends: here 30 s, and its abort names the unhealthy task.
  heartbeat = ["--heartbeat_timeout", "30"]
  processes = start_processes(model_dir, 100_000, lambda index: flags(index) + heartbeat)
  deadline = time.time() + 300
  while time.time() < deadline and not committed_steps(model_dir):
    assert all(p.poll() is None for p in processes), processes[0].stdout.read()[-3000:]
    time.sleep(0.1)
  processes[1].kill()  # SIGKILL: no handler, no goodbye
  killed_at = time.monotonic()
  (output,) = finish(processes[:1], 300)
  assert time.monotonic() - killed_at < 200  # the heartbeat's 30 s plus a loaded machine's lag
  if processes[0].returncode == 2:
    assert "aya-t5x train: error: process 0 of 2 lost process 1 of the run" in output
    assert "Restart every process" in output and "Check failure stack trace" not in output
  else:
    assert processes[0].returncode == -signal.SIGABRT, output[-3000:]
    assert "The following tasks are unhealthy (stopped sending heartbeats):\n1\n" in output
  processes[1].wait()
  # Both restarted: the run resumes from its last step with the batches it would have seen
  # (the data position counts every batch since step 0).
  last = committed_steps(model_dir)[-1]
  restarted = start_processes(model_dir, last + 1, flags)
  for process, output in zip(restarted, finish(restarted, 300)):
    assert process.returncode == 0, output[-3000:]
  assert committed_steps(model_dir)[-1] == last + 1
  data = json.loads((model_dir / "checkpoints" / str(last + 1) / "data" / "metadata").read_text())
  assert data["position"] == last + 1


def test_an_unreachable_coordinator_fails_in_bounded_time_naming_it(tmp_path, capsys):
  address = f"localhost:{free_port()}"  # nothing listens there
  start = time.monotonic()
  status = cli.main(["train", *gin_args(tmp_path / "run", 2), "--coordinator_address",
                     address, "--num_processes", "2", "--process_id", "1",
                     "--initialization_timeout", "2"])
  assert status == 2
  assert time.monotonic() - start < 20
  error = capsys.readouterr().err
  assert f"Could not reach the coordinator at {address} within 2 s" in error


@pytest.mark.parametrize("flags,message", [
    (["--coordinator_address", "localhost:1234"], "needs --num_processes and --process_id"),
    (["--coordinator_address", "localhost:1234", "--num_processes", "2", "--process_id", "2"],
     "--process_id 2 is not in 0 ... 1"),
    (["--coordinator_address", "localhost", "--num_processes", "2", "--process_id", "1"],
     "must be HOST:PORT"),
    (["--coordinator_address", "localhost:1234", "--num_processes", "2", "--process_id", "1",
      "--heartbeat_timeout", "0"], "--heartbeat_timeout 0 must be at least 1"),
])
def test_bad_cluster_flags_are_named(tmp_path, capsys, flags, message):
  assert cli.main(["train", *gin_args(tmp_path / "run", 2), *flags]) == 2
  assert message in capsys.readouterr().err


def test_disagreements_name_each_item_and_the_changed_lines():
  hosts = [{"seed": "0", "gin": "a = 1\nb = 2", "steps": "4"},
           {"seed": "1", "gin": "a = 1\nb = 3", "steps": "4"},
           {"seed": "0", "gin": "a = 1\nb = 2"}]
  assert distributed.disagreements(hosts) == [
      "gin (host 0 '-', host 1 '+'): -b = 2 | +b = 3",
      "seed: 0 on host 0, 1 on host 1",
      "steps: 4 on host 0, (missing) on host 2"]
  assert distributed.disagreements([hosts[0], dict(hosts[0])]) == []


def test_describe_expands_dataclasses_field_by_field():
  items = distributed.describe(model_config=testing.TINY, seed=3, hook=object())
  assert items["seed"] == "3" and items["hook"] == "<object object>"
  assert items["model_config.d_model"] == "32"
  assert items["model_config.mlp_activations"] == "('gelu', 'linear')"


# ------------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def data_config():
  input_pipeline.import_task_modules("aya_t5x.testing.fixture_tasks")
  return input_pipeline.DatasetConfig(
      mixture_or_task_name="test_reverse", task_feature_lengths={"inputs": 16, "targets": 16},
      batch_size=8, num_shards=4, shuffle=False)


def test_a_host_reads_only_the_shards_of_its_rows(data_config):
  # A host holding rows 1-2 and 6-7 of the global batch (2 rows per shard) reads shards
  # 0 (its row 1), 1 (row 0) and 3 (rows 0-1), and returns those rows in order.
  part = input_pipeline.BatchIterator(data_config, rows=((1, 3), (6, 8)), position=1)
  assert sorted(part._iterators) == [0, 1, 3]
  got = next(part)
  shards = [list(input_pipeline.build_dataset(data_config, (i, 4)).take(2).as_numpy_iterator())
            for i in (0, 1, 3)]
  for name, value in got.items():
    expected = np.concatenate([shards[0][1][name][1:], shards[1][1][name][:1],
                               shards[2][1][name]])
    np.testing.assert_array_equal(value, expected, err_msg=name)
  assert part.state()["num_shards"] == 4 and part.state()["position"] == 2


def test_host_rows_merge_the_devices_slices():
  mesh = partitioning.Partitioner(num_partitions=2).mesh(jax.devices())
  sharding = partitioning.Partitioner().batch_sharding(mesh)
  assert input_pipeline.host_rows(sharding, 16) == ((0, 16),)


def test_batch_spec_matches_a_real_batch(data_config):
  for packing in (True, False):
    config = dataclasses.replace(data_config, use_packing=packing, num_shards=1)
    batch = next(input_pipeline.BatchIterator(config))
    spec = input_pipeline.batch_spec(config)
    assert sorted(spec) == sorted(batch)
    for name, value in batch.items():
      assert (spec[name].shape, spec[name].dtype) == (value.shape, value.dtype), name


# -------------------------------------------------------------------------- launchers


def test_tpu_pod_dry_run_prints_exact_commands_for_every_host():
  command = [sys.executable, "launch/tpu_vm_pod.py", "--tpu", "aya-v4-128", "--zone",
             "us-central2-b", "--model_dir", "gs://bucket/aya_xxl", "--copy", "--setup",
             "--env", "LIBTPU_INIT_ARGS=--xla_tpu_enable_latency_hiding_scheduler=true",
             "--dry_run", "--", "--gin_file", "models/mt5_xxl.gin", "--gin_file",
             "runs/aya_recipe.gin", "--gin.INITIAL_CHECKPOINT_PATH='gs://t5-data/mt5_xxl'"]
  lines = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.splitlines()
  assert len(lines) == 5  # archive, copy, unpack, install, train
  train = lines[-1]
  # What bash makes of the printed line is the command the launcher would run.
  argv = subprocess.run(["bash", "-c", f"printf '%s\\n' {train}"], capture_output=True,
                        text=True, check=True).stdout.splitlines()
  assert argv[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]
  assert "--worker=all" in argv and "--zone=us-central2-b" in argv
  remote = next(a for a in argv if a.startswith("--command=")).removeprefix("--command=")
  words = shlex.split(remote)
  assert words[words.index("train") - 1].endswith("aya-t5x")
  assert {"--multihost", "models/mt5_xxl.gin", "runs/aya_recipe.gin",
          "--gin.MODEL_DIR='gs://bucket/aya_xxl'",
          "--gin.INITIAL_CHECKPOINT_PATH='gs://t5-data/mt5_xxl'",
          "LIBTPU_INIT_ARGS=--xla_tpu_enable_latency_hiding_scheduler=true"} <= set(words)
  assert "-e '.[tpu]'" in lines[3]


def test_tpu_pod_launcher_wants_a_bucket_model_dir():
  result = subprocess.run(
      [sys.executable, "launch/tpu_vm_pod.py", "--tpu", "t", "--zone", "z", "--model_dir",
       "/home/me/run", "--dry_run", "--", "--gin_file", "models/mt5_xxl.gin"],
      cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2
  assert "must be a bucket path (gs://...)" in result.stderr


def test_slurm_script_gives_each_node_its_process_id(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  # Two named hosts, then a list far longer than a pipe's buffer, as a big cluster's is: the
  # script must read it all (a `| head -n 1` under pipefail dies of SIGPIPE, exit 141).
  (bin_dir / "scontrol").write_text("#!/bin/bash\necho gpu-a\necho gpu-b\n"
                                    "seq -f 'gpu-c%g' 100000\n")
  # srun runs its command once per task, with that task's SLURM_PROCID.
  (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
                                'for ((i = 0; i < SLURM_NTASKS; i++)); do\n'
                                '  SLURM_PROCID=$i "$@"\ndone\n')
  for tool in bin_dir.iterdir():
    tool.chmod(0o755)
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NTASKS": "2",
         "SLURM_JOB_NODELIST": "gpu-[a-b]", "AYA_DRY_RUN": "1"}
  output = subprocess.run(
      ["bash", "launch/slurm_gpu.sbatch", "--gin_file", "models/mt5_xxl.gin",
       "--gin.MODEL_DIR='/shared/aya xxl'"], cwd=REPO, env=env, capture_output=True,
      text=True, check=True).stdout.splitlines()
  assert len(output) == 2
  for index, line in enumerate(output):
    node, command = line.split(": ", 1)
    assert node == f"node {index}"
    assert shlex.split(command) == [
        "aya-t5x", "train", "--coordinator_address", "gpu-a:12321", "--num_processes", "2",
        "--process_id", str(index), "--gin_file", "models/mt5_xxl.gin",
        "--gin.MODEL_DIR='/shared/aya xxl'"]


def test_local_launcher_dry_run_gives_each_process_its_devices():
  output = subprocess.run(
      [sys.executable, "launch/local.py", "--num_processes", "2", "--gpus_per_process", "4",
       "--port", "1234", "--dry_run", "--", "train", "--gin_file", "models/mt5_xl.gin"],
      cwd=REPO, capture_output=True, text=True, check=True).stdout.splitlines()
  assert len(output) == 2
  for index, line in enumerate(output):
    words = shlex.split(line)
    assert f"CUDA_VISIBLE_DEVICES={','.join(str(4 * index + i) for i in range(4))}" in words
    assert words[-6:] == ["--coordinator_address", "localhost:1234", "--num_processes", "2",
                          "--process_id", str(index)]
    assert re.search(r"-m aya_t5x\.cli train --gin_file models/mt5_xl\.gin", line)


def test_slurm_script_refuses_an_empty_host_list(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "scontrol").write_text("#!/bin/bash\ntrue\n")
  (bin_dir / "scontrol").chmod(0o755)
  env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NTASKS": "2",
         "SLURM_JOB_NODELIST": "gpu-[a-b]", "AYA_DRY_RUN": "1"}
  result = subprocess.run(["bash", "launch/slurm_gpu.sbatch"], cwd=REPO, env=env,
                          capture_output=True, text=True)
  assert result.returncode == 1
  assert "scontrol listed no hosts for SLURM_JOB_NODELIST='gpu-[a-b]'" in result.stderr
