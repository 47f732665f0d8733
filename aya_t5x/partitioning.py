"""The device mesh and the logical-axis rules that map the model's axis names onto it.

The mesh has axes ('data', 'model'), with a leading 'replica' axis for multi-slice
runs. A preset is a list of rules `(logical_axis, mesh_axis or None)`, chosen by a gin
file in `gin/partitioning/`; rules are tried in order and a mesh axis is used at most
once per array, so `embed -> data` shards parameters over data (FSDP) while activations,
whose batch already took 'data', keep embed whole.

Everything here is checked before compilation: a mesh that does not divide the devices,
a batch that does not divide over the data axis, or a parameter dimension that does not
divide over the mesh axis it is sharded on fails with a message saying what to change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Activation and parameter names the model uses that no preset shards.
# LoRA's rank axis is tiny: its matrices shard along the kernel's other axis.
_ALWAYS_REPLICATED = (("length", None), ("kv", None), ("relpos_buckets", None),
                      ("layers", None), ("lora_rank", None))

PRESETS: dict[str, Rules] = {
    # Plain data parallelism: parameters and optimizer state replicated.
    "data_parallel": (("batch", ("replica", "data")), ("vocab", None), ("embed", None),
                      ("mlp", None), ("heads", None), ("joined_kv", None)),
    # ZeRO-3 style: every parameter (and its optimizer state) sharded over data along
    # its embed dimension, gathered for each matmul.
    "fsdp": (("batch", ("replica", "data")), ("embed", "data"), ("vocab", "model"),
             ("mlp", "model"), ("heads", "model"), ("joined_kv", "model")),
    # Megatron tensor parallelism: the MLP, the heads and the vocabulary over 'model'.
    "megatron": (("batch", ("replica", "data")), ("vocab", "model"), ("mlp", "model"),
                 ("heads", "model"), ("joined_kv", "model"), ("embed", None)),
    # T5X's 2-D parameter partitioning: megatron plus parameters sharded over data.
    "2d": (("batch", ("replica", "data")), ("vocab", "model"), ("mlp", "model"),
           ("heads", "model"), ("joined_kv", "model"), ("embed", "data")),
}


class PartitioningError(ValueError):
  """The mesh, the rules or the batch do not fit the devices; the message says the fix."""


def preset_rules(name: str) -> Rules:
  """The logical axis rules of a named preset (for gin: `@preset_rules()`)."""
  if name not in PRESETS:
    raise PartitioningError(f"Unknown partitioning preset {name!r}; choose from "
                            f"{sorted(PRESETS)}.")
  return PRESETS[name] + _ALWAYS_REPLICATED


@dataclasses.dataclass(frozen=True, kw_only=True)
class Partitioner:
  """The mesh shape and the rules; builds meshes and shardings for a given device set.

  Attributes:
    num_partitions: size of the 'model' axis (1 for data parallel and pure FSDP).
    num_replicas: size of the 'replica' axis (number of slices in multi-slice runs).
    logical_axis_rules: rules as returned by `preset_rules`.
  """

  num_partitions: int = 1
  num_replicas: int = 1
  logical_axis_rules: Rules = dataclasses.field(
      default_factory=lambda: preset_rules("data_parallel"))

  def mesh(self, devices: Sequence[jax.Device] | None = None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    per_replica, rest = divmod(len(devices), self.num_replicas)
    if self.num_partitions < 1 or self.num_replicas < 1 or rest or (
        per_replica % self.num_partitions):
      raise PartitioningError(
          f"A mesh of {self.num_replicas} replica(s) x data x {self.num_partitions} model "
          f"partition(s) does not divide {len(devices)} devices. Set "
          f"Partitioner.num_partitions (and num_replicas) to divisors of {len(devices)}.")
    shape = (self.num_replicas, per_replica // self.num_partitions, self.num_partitions)
    grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, ("replica", "data", "model"))

  def data_parallel_size(self, mesh: Mesh) -> int:
    return mesh.shape["replica"] * mesh.shape["data"]

  def check_batch(self, mesh: Mesh, batch_size: int, num_microbatches: int = 1) -> None:
    """Raises unless the (micro)batch splits evenly over replica x data."""
    ways = self.data_parallel_size(mesh)
    if batch_size % num_microbatches:
      raise PartitioningError(
          f"Batch size {batch_size} is not divisible by num_microbatches={num_microbatches}.")
    micro = batch_size // num_microbatches
    if micro % ways:
      raise PartitioningError(
          f"The (micro)batch of {micro} examples does not divide over the {ways}-way data "
          f"axis of mesh {dict(mesh.shape)}. Use a batch size that is a multiple of "
          f"{ways * num_microbatches}, or change Partitioner.num_partitions.")

  def logical_to_sharding(self, logical_specs: Any, mesh: Mesh) -> Any:
    """NamedShardings for a tree of logical `PartitionSpec`s."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, self.logical_axis_rules)

  def batch_sharding(self, mesh: Mesh) -> NamedSharding:
    """Sharding of [batch, ...] input arrays: batch over replica x data."""
    return NamedSharding(mesh, PartitionSpec(("replica", "data")))

  def replicated(self, mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())

  def check_param_shardings(self, shapes: Any, shardings: Any) -> None:
    """Raises naming the first parameter whose sharded dimension does not divide."""
    flat_shapes = jax.tree_util.tree_leaves_with_path(shapes)
    flat_shardings = jax.tree.leaves(shardings)
    for (path, shape), sharding in zip(flat_shapes, flat_shardings):
      for dim, axes in zip(shape.shape, sharding.spec):
        if axes is None:
          continue
        ways = math.prod(sharding.mesh.shape[a] for a in (
            axes if isinstance(axes, tuple) else (axes,)))
        if dim % ways:
          name = "/".join(str(getattr(k, "key", k)) for k in path)
          raise PartitioningError(
              f"Parameter {name} of shape {tuple(shape.shape)} cannot be split {ways} ways "
              f"over mesh axes {axes}: {dim} is not divisible by {ways}. Choose "
              "Partitioner.num_partitions dividing the model's heads, d_ff and vocabulary, "
              "or a preset that does not shard this axis.")

  def rules_context(self):
    """Context in which `nn.with_logical_constraint` inside the model uses these rules."""
    return nn.logical_axis_rules(self.logical_axis_rules)
