"""Tiny mT5 configurations and Hugging Face reference models for tests and CPU smoke runs."""

from __future__ import annotations

import numpy as np

from aya_t5x.model_config import MT5Config

# Two deliberately different shapes: the second has more heads than d_model / d_kv
# would suggest, unequal encoder and decoder depths, and a vocabulary that is not a
# power of two, so that a transposed or mis-reshaped weight cannot go unnoticed.
TINY = MT5Config(vocab_size=128, d_model=32, num_heads=4, d_kv=8, d_ff=64,
                 num_encoder_layers=2, num_decoder_layers=2,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128)
TINY_UNEVEN = MT5Config(vocab_size=101, d_model=24, num_heads=6, d_kv=5, d_ff=40,
                        num_encoder_layers=3, num_decoder_layers=1,
                        relative_attention_num_buckets=16, relative_attention_max_distance=20)


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
