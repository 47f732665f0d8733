"""LoRA runs end to end: adapter-only checkpoints, exact resume, the base pinned by its
fingerprint, merging, `--adapters` and the PEFT export from the command line."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from flax import traverse_util

from aya_t5x import cli, decoding, model, testing
from aya_t5x.adapters import lora as lora_lib
from aya_t5x.checkpoints import adapters, conversion, native
from aya_t5x.checkpoints.train_checkpoints import TrainCheckpointer
from tests.test_train import assert_trees_equal, run_in_process

TINY = testing.TINY
LORA_FLAGS = ("--gin_file", "runs/lora.gin", "--gin.LORA_RANK=4", "--gin.LORA_ALPHA=8.0",
              "--gin.LoraConfig.base_dtype='float32'")


def save_base(path, seed):
  native.save_params(jax.tree.map(np.asarray, model.init_params(TINY, jax.random.key(seed))),
                     TINY, path)
  return path


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
  root = tmp_path_factory.mktemp("bases")
  return save_base(root / "base", 11), save_base(root / "other", 12)


def lora_run(model_dir, steps, base, *extra):
  return run_in_process(model_dir, steps, *LORA_FLAGS,
                        f"--gin.INITIAL_CHECKPOINT_PATH='{base}'", *extra)


@pytest.fixture(scope="module")
def run(bases, tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("lora")
  return model_dir, lora_run(model_dir, 8, bases[0])


def test_checkpoints_hold_only_adapters_and_name_the_base(run, bases):
  model_dir, result = run
  assert result.last_metrics["loss"] < 10
  flat = traverse_util.flatten_dict(result.state.params)
  assert flat and all(lora_lib.is_adapter_path(k) for k in flat)
  info = adapters.AdapterInfo.read(model_dir)
  assert info.base_path == str(bases[0]) and info.lora.rank == 4
  base, _ = native.load_params(bases[0])
  assert info.fingerprint == adapters.fingerprint(base)
  # What a step folder holds is the adapters (and their optimizer state), no base.
  saved, _ = adapters.load_adapters(model_dir / "checkpoints" / "8")
  assert_trees_equal(saved, result.state.params)
  base_bytes = sum(x.nbytes for x in jax.tree.leaves(base))
  adapter_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(result.state.params))
  assert adapter_bytes < base_bytes / 3
  # The run stores the base model, which `infer --checkpoint BASE` reads.
  assert native.read_config(model_dir).lora is None


def test_resume_is_exact(run, bases, tmp_path):
  model_dir, result = run
  lora_run(tmp_path, 4, bases[0])
  resumed = lora_run(tmp_path, 8, bases[0])
  assert_trees_equal(resumed.state, result.state)


def test_resuming_against_another_base_is_refused(run, bases):
  model_dir, _ = run
  with pytest.raises(adapters.AdapterBaseMismatchError) as error:
    lora_run(model_dir, 9, bases[1])
  assert str(bases[0]) in str(error.value) and str(bases[1]) in str(error.value)
  assert TrainCheckpointer(model_dir, save_every_steps=4).latest_step() == 8


def test_adapters_on_the_base_decode_as_the_merged_checkpoint(run, bases, tmp_path):
  model_dir, _ = run
  base, _ = native.load_params(bases[0])
  params, config = adapters.attach_adapters(base, TINY, model_dir, base_source=str(bases[0]))
  assert config.lora is not None
  conversion.convert_checkpoint(bases[0], tmp_path / "merged", source_format="aya_t5x",
                                target_format="aya_t5x", adapters=model_dir)
  merged, merged_config = native.load_params(tmp_path / "merged")
  assert merged_config.lora is None
  tokens = np.random.default_rng(0).integers(2, TINY.vocab_size, (4, 12)).astype(np.int32)
  options = decoding.DecodingOptions(max_decode_length=8)
  unmerged_out = decoding.decode(params, config, tokens, options, rng=jax.random.key(0))
  merged_out = decoding.decode(merged, merged_config, tokens, options, rng=jax.random.key(0))
  np.testing.assert_array_equal(np.asarray(unmerged_out), np.asarray(merged_out))
  # The other base is refused by name.
  other, _ = native.load_params(bases[1])
  with pytest.raises(adapters.AdapterBaseMismatchError, match=str(bases[0])):
    adapters.attach_adapters(other, TINY, model_dir, base_source=str(bases[1]))


def test_a_lora_run_is_not_a_checkpoint_by_itself(run):
  from aya_t5x.checkpoints import loading

  with pytest.raises(ValueError, match="--adapters"):
    loading.load_params(run[0], TINY)


def test_convert_to_hf_peft_from_the_command_line(run, tmp_path):
  model_dir, result = run
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf_peft", str(model_dir),
                   str(tmp_path / "peft")]) == 0
  config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
  assert config["peft_type"] == "LORA" and config["r"] == 4 and config["lora_alpha"] == 8.0
  assert sorted(config["target_modules"]) == sorted(["q", "k", "v", "o", "wi_0", "wi_1",
                                                     "wo"])
  from safetensors.numpy import load_file

  tensors = load_file(str(tmp_path / "peft" / "adapter_model.safetensors"))
  name = "base_model.model.encoder.block.0.layer.0.SelfAttention.q.lora_B.weight"
  want = result.state.params["encoder"]["layers_0"]["attention"]["query"]["lora_b"]
  np.testing.assert_array_equal(tensors[name], np.asarray(want).T)
  assert len(tensors) == 2 * len(traverse_util.flatten_dict(result.state.params)) // 2


def test_convert_merge_adapters_to_hf(run, bases, tmp_path):
  model_dir, _ = run
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", "--merge_adapters",
                   str(model_dir), str(bases[0]), str(tmp_path / "hf")]) == 0
  from aya_t5x.checkpoints import hf

  merged, config = hf.load_hf_checkpoint(tmp_path / "hf")
  base, _ = native.load_params(bases[0])
  kernel = ("encoder", "layers_0", "mlp", "wo", "kernel")
  got = traverse_util.flatten_dict(merged)[kernel]
  assert np.abs(got - traverse_util.flatten_dict(base)[kernel]).max() > 0
  assert dataclasses.replace(config, param_dtype="float32") == dataclasses.replace(
      TINY, param_dtype="float32", dropout_rate=config.dropout_rate)
