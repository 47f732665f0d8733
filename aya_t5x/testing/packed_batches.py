"""Random packed batches as SeqIO's EncDecFeatureConverter lays them out, for step tests."""

import numpy as np


def _segments(rng, counts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
  """Segment ids (1, 2, ... then 0 for padding) and positions restarting per segment."""
  rows = len(counts)
  ids = np.zeros((rows, length), np.int32)
  positions = np.zeros((rows, length), np.int32)
  for row in range(rows):
    cuts = np.sort(rng.choice(np.arange(2, length - 1), size=counts[row], replace=False))
    start = 0
    for segment, end in enumerate(cuts, 1):
      ids[row, start:end] = segment
      positions[row, start:end] = np.arange(end - start)
      start = end
  return ids, positions


def packed_batch(seed: int, *, batch: int = 8, inputs: int = 16, targets: int = 12,
                 vocab: int = 128) -> dict[str, np.ndarray]:
  """A packed batch of random tokens: padding is token 0 and segment 0 on both sides."""
  rng = np.random.default_rng(seed)
  out = {}
  # Two or three examples and some padding in each row, the same examples on both sides
  # (every target segment has its inputs, as packing lays them out).
  counts = rng.integers(2, 4, batch)
  for side, length in (("encoder", inputs), ("decoder", targets)):
    ids, positions = _segments(rng, counts, length)
    out[f"{side}_segment_ids"], out[f"{side}_positions"] = ids, positions
  out["encoder_input_tokens"] = np.where(
      out["encoder_segment_ids"] > 0, rng.integers(2, vocab, (batch, inputs)), 0)
  target = np.where(out["decoder_segment_ids"] > 0, rng.integers(2, vocab, (batch, targets)), 0)
  out["decoder_target_tokens"] = target
  # Inputs are the targets shifted right within each segment (0 starts every example).
  shifted = np.concatenate([np.zeros((batch, 1), np.int64), target[:, :-1]], axis=1)
  out["decoder_input_tokens"] = np.where(out["decoder_positions"] == 0, 0, shifted)
  out["decoder_loss_weights"] = (out["decoder_segment_ids"] > 0).astype(np.int32)
  return {k: v.astype(np.int32) for k, v in out.items()}
