"""Shared fixtures: CPU only, 8 simulated devices, and Hugging Face reference models."""

import os
import tempfile

# Must be set before jax initialises its backends (pytest imports conftest first).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Many tests (and the training subprocesses they start) compile the same tiny programs;
# a persistent compilation cache shared by them saves minutes on 2 cores. It is new for
# each pytest run (the xdist workers and subprocesses inherit the variable), so that no
# run depends on what an earlier one left behind.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="aya_t5x_tests_jax_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def hf_reference_model(config, seed: int = 0):
  """A randomly initialised Hugging Face `MT5ForConditionalGeneration` matching `config`.

  The weights are drawn with a larger spread than Hugging Face's init so that every
  parameter (norm scales and the relative position table included) affects the output.
  """
  import torch
  import transformers

  from aya_t5x.checkpoints import hf

  torch.manual_seed(seed)
  hf_config = transformers.MT5Config(**hf.hf_config_dict(config))
  model = transformers.MT5ForConditionalGeneration(hf_config).eval()
  # mT5's output layer is its own matrix; a reference that tied it to the embedding
  # would hide a swapped or missing logits_dense.
  assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
  with torch.no_grad():
    for name, tensor in model.named_parameters():
      if name.endswith("layer_norm.weight"):
        tensor.copy_(1.0 + 0.2 * torch.randn_like(tensor))
      elif "relative_attention_bias" in name:
        tensor.copy_(torch.randn_like(tensor))
      else:
        fan_in = tensor.shape[-1] if tensor.dim() == 2 and "shared" not in name else 1
        tensor.copy_(torch.randn_like(tensor) / np.sqrt(fan_in))
  return model


def hf_state_dict_numpy(model) -> dict:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def pytest_unconfigure(config):
  if _OWN_CACHE:
    import shutil

    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
