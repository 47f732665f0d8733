"""Hugging Face safetensors <-> aya_t5x parameters, checked against transformers itself."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file

from aya_t5x import model, testing
from aya_t5x.checkpoints import hf
from aya_t5x.checkpoints.compatibility import CheckpointMismatchError
from aya_t5x.testing.models import hf_reference_model, hf_state_dict_numpy


@pytest.fixture(scope="module")
def saved_reference(tmp_path_factory):
  reference = hf_reference_model(testing.TINY_UNEVEN, seed=5)
  path = tmp_path_factory.mktemp("hf") / "reference"
  reference.save_pretrained(path, safe_serialization=True)
  return reference, path


def test_round_trip_is_exact(saved_reference, tmp_path):
  reference, path = saved_reference
  params, config = hf.load_hf_checkpoint(path)
  assert config == dataclasses.replace(testing.TINY_UNEVEN, param_dtype="float32")
  hf.save_hf_checkpoint(params, config, tmp_path / "exported")
  exported = load_file(str(tmp_path / "exported" / "model.safetensors"))
  original = hf_state_dict_numpy(reference)
  for name, tensor in exported.items():
    np.testing.assert_array_equal(tensor, original[name], err_msg=name)
  # Every parameter the reference has is written (the tied embedding copies once).
  tied = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
  assert set(original) - tied == set(exported)


def test_exported_folder_loads_in_transformers_with_the_same_logits(saved_reference, tmp_path):
  reference, path = saved_reference
  params, config = hf.load_hf_checkpoint(path)
  hf.save_hf_checkpoint(params, config, tmp_path / "exported")
  reloaded = transformers.MT5ForConditionalGeneration.from_pretrained(
      tmp_path / "exported").eval()
  inputs = torch.tensor([[5, 9, 33, 1, 0], [7, 7, 2, 40, 1]])
  decoder_inputs = torch.tensor([[0, 4, 8], [0, 3, 3]])
  with torch.no_grad():
    want = reference(input_ids=inputs, attention_mask=inputs != 0,
                     decoder_input_ids=decoder_inputs).logits.numpy()
    got = reloaded(input_ids=inputs, attention_mask=inputs != 0,
                   decoder_input_ids=decoder_inputs).logits.numpy()
  np.testing.assert_array_equal(got, want)
  ours = model.MT5(config).apply({"params": params}, jnp.asarray(inputs.numpy()),
                                 jnp.asarray(decoder_inputs.numpy()))
  np.testing.assert_allclose(np.asarray(ours)[:, :, :], want, atol=1e-4)


def test_wrong_size_names_first_mismatching_parameter_and_both_shapes(saved_reference):
  _, path = saved_reference
  wrong = dataclasses.replace(testing.TINY_UNEVEN, d_ff=48)
  with pytest.raises(CheckpointMismatchError) as error:
    hf.load_hf_checkpoint(path, wrong)
  message = str(error.value)
  assert "decoder/layers_0/mlp/wi_0/kernel" in message
  assert "(24, 40)" in message and "(24, 48)" in message


def test_missing_layer_is_named(saved_reference):
  _, path = saved_reference
  deeper = dataclasses.replace(testing.TINY_UNEVEN, num_decoder_layers=2)
  with pytest.raises(CheckpointMismatchError, match=r"decoder\.block\.1\.layer\.0"):
    hf.load_hf_checkpoint(path, deeper)


def test_missing_folder_and_weights_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere"):
    hf.load_hf_checkpoint(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "config.json").write_text(
      '{"vocab_size": 8, "d_model": 4, "d_kv": 2, "d_ff": 8, "num_heads": 2, '
      '"num_layers": 1, "feed_forward_proj": "gated-gelu"}')
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    hf.load_hf_checkpoint(tmp_path / "empty")
