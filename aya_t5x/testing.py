"""Tiny models for tests and CPU smoke runs: shapes that exercise every code path in seconds."""

from __future__ import annotations

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
