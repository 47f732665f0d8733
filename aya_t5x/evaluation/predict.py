"""The model over evaluation examples in fixed-shape batches: option log-likelihoods, generations.

Examples are sorted by input length and cut into batches of one fixed size; inputs and
targets are padded to widths rounded up to a multiple of `length_bucket` (so a task
compiles a handful of shapes, not one per batch), and a short last batch is filled with
copies of its first row, whose results are dropped. An input longer than the limit
keeps its first tokens (`truncate='right'`) or its last ones (`'left'`, for few-shot
prompts that end with the question), and its EOS; truncations are counted.

On a mesh (the trainer's, or the eval command's) batches are placed sharded over the
data axes and the model's logical-axis rules apply, as in training.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from aya_t5x import decoding, model
from aya_t5x.model_config import MT5Config
from aya_t5x.partitioning import Partitioner

EOS_ID = decoding.EOS_ID
TRUNCATE = ("right", "left")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Batching:
  """How examples become fixed-shape batches.

  batch_size: rows per batch (rounded up to a multiple of the data-parallel size).
  length_bucket: widths are multiples of this (capped at the length limit).
  max_input_length: the longest input, EOS included.
  truncate: which end of a too-long input is cut, 'right' or 'left'.
  """

  batch_size: int = 32
  length_bucket: int = 64
  max_input_length: int = 1024
  truncate: str = "right"

  def __post_init__(self):
    if self.truncate not in TRUNCATE:
      raise ValueError(f"truncate={self.truncate!r}; choose from {TRUNCATE}")
    if min(self.batch_size, self.length_bucket, self.max_input_length) < 1:
      raise ValueError(f"batch_size, length_bucket and max_input_length must be positive: "
                       f"{self}")


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where batches go: the default device, or sharded over a mesh's data axes."""

  mesh: jax.sharding.Mesh | None = None
  partitioner: Partitioner | None = None

  def data_parallel_size(self) -> int:
    if self.mesh is None or self.partitioner is None:
      return 1
    return self.partitioner.data_parallel_size(self.mesh)

  def put(self, array: np.ndarray) -> Any:
    if self.mesh is None or self.partitioner is None:
      return array
    sharding = self.partitioner.batch_sharding(self.mesh)
    # Every process holds the whole batch, so each takes its own shards from it.
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

  def place_params(self, params: Any, config: MT5Config) -> Any:
    """`params` on the mesh, laid out by the partitioner's rules for the model's axes."""
    if self.mesh is None or self.partitioner is None:
      return params
    shardings = self.partitioner.logical_to_sharding(model.param_logical_axes(config),
                                                     self.mesh)
    return jax.tree.map(lambda x, sharding: jax.device_put(np.asarray(x), sharding), params,
                        shardings)

  @contextlib.contextmanager
  def scope(self) -> Iterator[None]:
    """The mesh and the logical-axis rules, when there is a mesh."""
    if self.mesh is None or self.partitioner is None:
      yield
      return
    with jax.set_mesh(self.mesh), self.partitioner.rules_context():
      yield


def truncate(ids: np.ndarray, limit: int, side: str) -> tuple[np.ndarray, bool]:
  """`ids` cut to `limit` tokens keeping a final EOS; whether anything was cut."""
  ids = np.asarray(ids, np.int32)
  if len(ids) <= limit:
    return ids, False
  ends_with_eos = len(ids) > 0 and ids[-1] == EOS_ID
  body = ids[:-1] if ends_with_eos else ids
  keep = limit - 1 if ends_with_eos else limit
  body = body[:keep] if side == "right" else body[len(body) - keep:]
  return (np.append(body, EOS_ID).astype(np.int32) if ends_with_eos else body), True


def _width(lengths: Sequence[int], bucket: int, limit: int) -> int:
  return min(-(-max(max(lengths), 1) // bucket) * bucket, limit)


def _pad(rows: Sequence[np.ndarray], batch: int, width: int) -> np.ndarray:
  out = np.zeros((batch, width), np.int32)
  for i in range(batch):
    row = rows[i] if i < len(rows) else rows[0]  # filler rows repeat the first
    out[i, :len(row)] = row
  return out


def _batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
  """Indices in input-length order, `batch_size` at a time."""
  order = sorted(range(len(lengths)), key=lambda i: lengths[i])
  for start in range(0, len(order), batch_size):
    yield order[start:start + batch_size]


@dataclasses.dataclass(frozen=True)
class Truncations:
  inputs: int = 0
  targets: int = 0


def score(params: Any, config: MT5Config, inputs: Sequence[np.ndarray],
          targets: Sequence[np.ndarray], batching: Batching, max_target_length: int,
          placement: Placement = Placement()) -> tuple[np.ndarray, Truncations]:
  """The log-likelihood of each target given its input: the sum of its token log-probs.

  Targets are token ids with their EOS, so a target's score includes the probability
  of ending there. Returns float32 [rows] in the input order.
  """
  cut_inputs = [truncate(x, batching.max_input_length, batching.truncate) for x in inputs]
  cut_targets = [truncate(t, max_target_length, "right") for t in targets]
  batch = _batch_size(batching, placement)
  out = np.zeros(len(inputs), np.float32)
  with placement.scope():
    for rows in _batches([len(x) for x, _ in cut_inputs], batch):
      x = [cut_inputs[i][0] for i in rows]
      t = [cut_targets[i][0] for i in rows]
      x_batch = _pad(x, batch, _width([len(r) for r in x], batching.length_bucket,
                                      batching.max_input_length))
      t_batch = _pad(t, batch, _width([len(r) for r in t], batching.length_bucket,
                                      max_target_length))
      result = decoding.score(params, config, placement.put(x_batch), placement.put(t_batch))
      out[rows] = np.asarray(jax.device_get(result.log_likelihood))[:len(rows)]
  return out, Truncations(inputs=sum(cut for _, cut in cut_inputs),
                          targets=sum(cut for _, cut in cut_targets))


def generate(params: Any, config: MT5Config, inputs: Sequence[np.ndarray], batching: Batching,
             options: decoding.DecodingOptions, placement: Placement = Placement(),
             seed: int = 0) -> tuple[list[np.ndarray], Truncations]:
  """Decoded token ids of each input, up to (without) EOS, in the input order."""
  cut_inputs = [truncate(x, batching.max_input_length, batching.truncate) for x in inputs]
  batch = _batch_size(batching, placement)
  outputs: list[np.ndarray] = [np.zeros(0, np.int32)] * len(inputs)
  rng = jax.random.key(seed)
  with placement.scope():
    for rows in _batches([len(x) for x, _ in cut_inputs], batch):
      x = [cut_inputs[i][0] for i in rows]
      x_batch = _pad(x, batch, _width([len(r) for r in x], batching.length_bucket,
                                      batching.max_input_length))
      rng, key = jax.random.split(rng)
      tokens = np.asarray(jax.device_get(
          decoding.decode(params, config, placement.put(x_batch), options, rng=key)))
      for row, index in enumerate(rows):
        ids = tokens[row]
        ends = np.flatnonzero(ids == EOS_ID)
        outputs[index] = ids[:ends[0]] if len(ends) else ids
  return outputs, Truncations(inputs=sum(cut for _, cut in cut_inputs))


def _batch_size(batching: Batching, placement: Placement) -> int:
  ways = placement.data_parallel_size()
  return -(-batching.batch_size // ways) * ways
