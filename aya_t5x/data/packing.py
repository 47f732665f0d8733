"""Best-fit packing of encoder-decoder examples into fixed rows, as the trainer's batches.

SeqIO's packing (`EncDecFeatureConverter(pack=True)`) fills each row greedily in arrival
order, so one long example closes a row that a later short one could have filled: on
Aya-like lengths (long passages with short answers beside short prompts with long
answers) it leaves about 40% of the tokens as padding. `pack_best_fit` keeps a window
of open rows and puts each example into the open row it fills best, in both the inputs
and the targets dimension at once; when the window is full the fullest row leaves. The
output has exactly the features, dtypes and conventions of SeqIO's packed
`EncDecFeatureConverter` (segment ids from 1, positions restarting per segment, decoder
inputs shifted right inside each segment, loss weights on real target tokens), so the
model, the loss and the packed-equals-unpacked guarantee are unchanged.

Deterministic: the same examples in the same order give the same rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from aya_t5x.data import generator_datasets

FEATURES = ("encoder_input_tokens", "encoder_segment_ids", "encoder_positions",
            "decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights",
            "decoder_segment_ids", "decoder_positions")


@dataclasses.dataclass
class _Row:
  inputs: list[np.ndarray]
  targets: list[np.ndarray]
  used_inputs: int = 0
  used_targets: int = 0

  def add(self, inputs: np.ndarray, targets: np.ndarray) -> None:
    self.inputs.append(inputs)
    self.targets.append(targets)
    self.used_inputs += len(inputs)
    self.used_targets += len(targets)


def _segments(pieces: list[np.ndarray], length: int) -> tuple[np.ndarray, ...]:
  tokens = np.zeros(length, np.int32)
  segment_ids = np.zeros(length, np.int32)
  positions = np.zeros(length, np.int32)
  at = 0
  for number, piece in enumerate(pieces, start=1):
    end = at + len(piece)
    tokens[at:end] = piece
    segment_ids[at:end] = number
    positions[at:end] = np.arange(len(piece))
    at = end
  return tokens, segment_ids, positions


def _features(row: _Row, inputs_length: int, targets_length: int) -> dict[str, np.ndarray]:
  encoder, encoder_segments, encoder_positions = _segments(row.inputs, inputs_length)
  targets, decoder_segments, decoder_positions = _segments(row.targets, targets_length)
  # Teacher forcing: each segment's decoder inputs are its targets shifted right, starting
  # from 0 (the start token), never seeing the previous segment's last token.
  decoder_inputs = np.zeros(targets_length, np.int32)
  decoder_inputs[1:] = targets[:-1]
  decoder_inputs[decoder_positions == 0] = 0
  return {"encoder_input_tokens": encoder, "encoder_segment_ids": encoder_segments,
          "encoder_positions": encoder_positions, "decoder_target_tokens": targets,
          "decoder_input_tokens": decoder_inputs,
          "decoder_loss_weights": (targets > 0).astype(np.int32),
          "decoder_segment_ids": decoder_segments, "decoder_positions": decoder_positions}


def pack_best_fit(examples: Iterable[Mapping[str, np.ndarray]], lengths: Mapping[str, int], *,
                  window: int = 64) -> Iterator[dict[str, np.ndarray]]:
  """Packs tokenized `{'inputs', 'targets'}` examples into rows of `lengths`.

  Examples longer than a row are trimmed to it (as SeqIO trims). An example goes to the
  open row where it leaves the least room in both dimensions together; with no row
  able to take it, a new row opens, and with more than `window` rows open the fullest
  leaves. Empty targets are skipped (a row needs something to learn from).
  """
  if window < 1:
    raise ValueError(f"packing window must be at least 1, got {window}")
  inputs_length, targets_length = int(lengths["inputs"]), int(lengths["targets"])
  open_rows: list[_Row] = []
  for example in examples:
    inputs = np.asarray(example["inputs"], np.int32)[:inputs_length]
    targets = np.asarray(example["targets"], np.int32)[:targets_length]
    if not len(targets):
      continue
    best, best_room = None, None
    for row in open_rows:
      room_inputs = inputs_length - row.used_inputs - len(inputs)
      room_targets = targets_length - row.used_targets - len(targets)
      if room_inputs >= 0 and room_targets >= 0:
        room = room_inputs / inputs_length + room_targets / targets_length
        if best_room is None or room < best_room:
          best, best_room = row, room
    if best is None:
      best = _Row(inputs=[], targets=[])
      open_rows.append(best)
    best.add(inputs, targets)
    if len(open_rows) > window:
      # A row is as closed as its fuller side: one with full targets takes nothing more,
      # however empty its inputs (ranking by the sum would keep such rows forever).
      fullest = max(range(len(open_rows)), key=lambda i: max(
          open_rows[i].used_inputs / inputs_length,
          open_rows[i].used_targets / targets_length))
      yield _features(open_rows.pop(fullest), inputs_length, targets_length)
  for row in open_rows:
    yield _features(row, inputs_length, targets_length)


def packed_dataset(dataset, lengths: Mapping[str, int], *, window: int = 64):
  """`pack_best_fit` over a tokenized `tf.data.Dataset`, as a `tf.data.Dataset` of rows."""
  import tensorflow as tf

  signature = {
      name: tf.TensorSpec([lengths["inputs" if name.startswith("encoder") else "targets"]],
                          tf.int32) for name in FEATURES}
  return generator_datasets.from_generator(
      lambda: pack_best_fit(dataset.as_numpy_iterator(), lengths, window=window),
      output_signature=signature)
