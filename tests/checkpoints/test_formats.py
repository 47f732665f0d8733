"""Conversion between formats end to end: T5X -> aya_t5x -> Hugging Face, via the CLI."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from aya_t5x import cli, model, testing
from aya_t5x.checkpoints import formats, native, t5x_legacy
from aya_t5x.checkpoints.compatibility import CheckpointMismatchError


@pytest.fixture(scope="module")
def t5x_checkpoint(tmp_path_factory):
  params = jax.tree.map(np.asarray, model.init_params(testing.TINY, jax.random.key(7)))
  path = tmp_path_factory.mktemp("t5x") / "checkpoint_1000"
  t5x_legacy.write_t5x_checkpoint(params, path, step=1000)
  return params, path


def test_t5x_to_aya_t5x_to_hf_keeps_the_model(t5x_checkpoint, tmp_path):
  params, path = t5x_checkpoint
  assert cli.main(["convert", "--from", "t5x", "--to", "aya_t5x", str(path),
                   str(tmp_path / "native"), "--gin_file", "models/mt5_tiny.gin",
                   f"--gin.MT5Config.vocab_size={testing.TINY.vocab_size}",
                   f"--gin.MT5Config.d_model={testing.TINY.d_model}",
                   f"--gin.MT5Config.d_kv={testing.TINY.d_kv}",
                   f"--gin.MT5Config.d_ff={testing.TINY.d_ff}"]) == 0
  restored, config = native.load_params(tmp_path / "native")
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, b)

  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(tmp_path / "native"),
                   str(tmp_path / "hf")]) == 0
  reference = transformers.MT5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
  inputs = np.array([[11, 12, 13, 1, 0, 0]])
  decoder_inputs = np.array([[0, 21, 22, 23]])
  with torch.no_grad():
    want = reference(input_ids=torch.from_numpy(inputs),
                     attention_mask=torch.from_numpy(inputs != 0),
                     decoder_input_ids=torch.from_numpy(decoder_inputs)).logits.numpy()
  got = model.MT5(config).apply({"params": params}, jnp.asarray(inputs),
                                jnp.asarray(decoder_inputs))
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


def test_t5x_model_config_is_read_off_the_shapes(t5x_checkpoint):
  _, path = t5x_checkpoint
  _, config = formats.load_params(path)
  assert config == testing.TINY
  assert formats.detect_format(path) == "t5x"


def test_t5x_checkpoint_for_another_size_fails_naming_parameter_and_shapes(t5x_checkpoint,
                                                                            capsys):
  _, path = t5x_checkpoint
  with pytest.raises(CheckpointMismatchError,
                     match=r"decoder/decoder_norm/scale.*\(32,\).*\(64,\)"):
    formats.load_params(path, model.MT5Config(
        vocab_size=128, d_model=64, num_heads=4, d_kv=8, d_ff=64, num_encoder_layers=2,
        num_decoder_layers=2))
  # The CLI prints the same message and exits non-zero instead of a traceback.
  code = cli.main(["convert", "--from", "t5x", "--to", "hf", str(path), "/tmp/never",
                   "--gin_file", "models/mt5_small.gin"])
  assert code == 2
  err = capsys.readouterr().err
  assert "decoder/decoder_norm/scale" in err and "(32,)" in err and "(512,)" in err


def test_corrupt_native_checkpoint_is_reported_with_its_path(tmp_path):
  params = model.init_params(testing.TINY, jax.random.key(0))
  native.save_params(params, testing.TINY, tmp_path / "ckpt")
  for file in (tmp_path / "ckpt" / "params").rglob("*"):
    if file.is_file() and "ocdbt.process" in str(file):
      file.write_bytes(b"garbage")
  with pytest.raises(ValueError, match=str(tmp_path / "ckpt" / "params")):
    native.load_params(tmp_path / "ckpt")


def test_unknown_folder_is_named(tmp_path):
  with pytest.raises(ValueError, match="not a known checkpoint"):
    formats.detect_format(tmp_path)
  with pytest.raises(FileNotFoundError, match="missing_dir"):
    formats.detect_format(tmp_path / "missing_dir")
