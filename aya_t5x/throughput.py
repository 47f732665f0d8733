"""Model FLOPs per step from the architecture, device peaks, and FLOPs utilisation (MFU).

FLOPs are counted from the mT5 architecture, not from the compiler: XLA's cost analysis
counts a scanned layer once, and counts rematerialised work, neither of which is the
model's work. A training step costs three forward passes (forward, and backward at
twice the forward). Padding and packing gaps are counted as computed, since they are.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from aya_t5x.model_config import MT5Config

# Dense bf16 peak FLOP/s per device as jax enumerates them (one TPU v4/v5p chip in
# megacore mode, one GPU), from the vendors' data sheets.
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100": 312e12,
}


# HBM bandwidth in bytes/s per device as jax enumerates them, from the same data sheets
# (TPU v4 1,200 GB/s, v5e 819 GB/s, v5p 2,765 GB/s, v6e 1,640 GB/s; H100 SXM 3.35 TB/s,
# H200 4.8 TB/s, A100 80 GB 2.04 TB/s, 40 GB 1.56 TB/s).
HBM_BANDWIDTH = {
    "TPU v4": 1.2e12,
    "TPU v5 lite": 819e9,
    "TPU v5e": 819e9,
    "TPU v5p": 2.765e12,
    "TPU v5": 2.765e12,
    "TPU v6 lite": 1.64e12,
    "TPU v6e": 1.64e12,
    "NVIDIA H100 80GB HBM3": 3.35e12,
    "NVIDIA H100": 3.35e12,
    "NVIDIA H200": 4.8e12,
    "NVIDIA A100-SXM4-80GB": 2.039e12,
    "NVIDIA A100-SXM4-40GB": 1.555e12,
    "NVIDIA A100": 1.555e12,
}


def data_sheet_value(table: dict[str, float], device_kind: str) -> float | None:
  """The entry of `table` for `device_kind` (longest matching name first), or None."""
  for name in sorted(table, key=len, reverse=True):
    if device_kind.startswith(name):
      return table[name]
  return None


def forward_flops_per_example(config: MT5Config, input_length: int, target_length: int
                              ) -> float:
  """Matmul FLOPs of one forward pass over one [input_length, target_length] example."""
  d, kv, ff, vocab = config.d_model, config.joined_kv, config.d_ff, config.vocab_size
  mlp = 2 * d * ff * (len(config.mlp_activations) + 1)
  encoder_token = 2 * 4 * d * kv + mlp + 2 * 2 * input_length * kv
  # Decoder: self-attention (4 projections), cross-attention queries and outputs (2),
  # attention scores against targets and inputs, the MLP, and the logits.
  decoder_token = (2 * 6 * d * kv + mlp + 2 * 2 * (target_length + input_length) * kv)
  cross_kv = 2 * 2 * d * kv  # keys and values of every input token, per decoder layer
  return (input_length * config.num_encoder_layers * encoder_token
          + target_length * config.num_decoder_layers * decoder_token
          + input_length * config.num_decoder_layers * cross_kv
          + target_length * 2 * d * vocab)


def train_flops_per_step(config: MT5Config, batch_size: int, input_length: int,
                         target_length: int) -> float:
  return 3.0 * batch_size * forward_flops_per_example(config, input_length, target_length)


def measure_matmul_peak(dtype=jnp.float32, size: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of a large square matmul on the default device: the CPU's practical peak."""
  a = jnp.ones((size, size), dtype)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def device_peak_flops(device: jax.Device | None = None, dtype=jnp.bfloat16) -> tuple[float, str]:
  """(peak FLOP/s of one device, where the number comes from)."""
  device = device or jax.devices()[0]
  kind = getattr(device, "device_kind", "") or ""
  peak = data_sheet_value(PEAK_FLOPS, kind)
  if peak is not None:
    return peak, f"data sheet ({kind})"
  return measure_matmul_peak(dtype), f"measured matmul ({kind or device.platform})"


def interval_rates(steps: int, seconds: float, *, tokens_per_step: int, flops_per_step: float,
                   total_peak: float) -> dict[str, float]:
  """Throughput over an interval: tokens (padded, as computed), sequences and MFU."""
  seconds = max(seconds, 1e-9)
  return {"tokens_per_second": steps * tokens_per_step / seconds,
          "steps_per_second": steps / seconds,
          "mfu": steps * flops_per_step / seconds / total_peak}
