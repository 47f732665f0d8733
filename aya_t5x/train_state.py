"""The train state laid out on a mesh: shapes first, shardings next, then allocation.

Nothing here ever materialises a whole parameter tree on one device: shapes come from
`jax.eval_shape`, shardings from the logical-axis rules (parameters) and from the
compiler's propagation through `optimizer.init` (optimizer state), and the state is
created by a jitted init whose outputs are already sharded.

A model with `scan_layers` trains on stacked layer parameters (and optimizer state) but
saves and restores the per-layer layout (`checkpoint_layout`, `convert_state`), so that
checkpoints never depend on it. Its optimizer is `layer_stack.per_layer_optimizer`.

A `TrainableSet` (`aya_t5x.adapters.trainable`) decides which parameters the state
holds: all of them, or only LoRA adapters. The frozen rest lives beside the state
(`frozen_layout`, `init_frozen`), in its own dtype, and is never saved with it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from aya_t5x import layer_stack, model, model_config
from aya_t5x.adapters import trainable as trainable_lib
from aya_t5x.adapters.trainable import TrainableSet
from aya_t5x.partitioning import Partitioner
from aya_t5x.train_step import TrainState


@dataclasses.dataclass(frozen=True)
class StateLayout:
  """Abstract shapes and shardings of a `TrainState` on one mesh."""

  shapes: TrainState
  shardings: TrainState

  @property
  def abstract(self) -> TrainState:
    """`ShapeDtypeStruct`s carrying their shardings: an Orbax restore target."""
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                        self.shapes, self.shardings)


def _param_layout(config: model_config.MT5Config, partitioner: Partitioner, mesh: Mesh,
                  trainable: TrainableSet, half: int) -> tuple[Any, Any]:
  """Shapes and shardings of the trained (`half` 0) or frozen (1) parameters."""
  shapes = trainable_lib.split(model.param_shapes(config), trainable)[half]
  axes = trainable_lib.split(model.param_logical_axes(config), trainable)[half]
  shardings = partitioner.logical_to_sharding(axes, mesh)
  partitioner.check_param_shardings(shapes, shardings)
  return shapes, shardings


def state_layout(config: model_config.MT5Config, optimizer: optax.GradientTransformation,
                 partitioner: Partitioner, mesh: Mesh,
                 trainable: TrainableSet = trainable_lib.ALL) -> StateLayout:
  """Computes the state's shapes and shardings without allocating it.

  `config` is the trained network (`trainable.model_config` applied); the state holds
  its trainable parameters and their optimizer state.
  """
  param_shapes, param_shardings = _param_layout(config, partitioner, mesh, trainable, 0)
  abstract_params = jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
      param_shapes, param_shardings)
  with jax.set_mesh(mesh):
    init_opt = jax.jit(optimizer.init).lower(abstract_params).compile()
  opt_shapes = jax.eval_shape(optimizer.init, param_shapes)
  opt_shardings = init_opt.output_shardings
  replicated = partitioner.replicated(mesh)
  shapes = TrainState(step=jax.ShapeDtypeStruct((), jnp.int32), params=param_shapes,
                      opt_state=opt_shapes)
  shardings = TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings)
  return StateLayout(shapes=shapes, shardings=shardings)


def init_state(config: model_config.MT5Config, optimizer: optax.GradientTransformation,
               layout: StateLayout, mesh: Mesh, rng: jax.Array,
               params: Any | None = None,
               trainable: TrainableSet = trainable_lib.ALL) -> TrainState:
  """A fresh train state, sharded as `layout` says.

  Args:
    params: initial parameters (host arrays, e.g. from a Hugging Face or T5X
      checkpoint); without them, or when they lack the trained ones (a base checkpoint
      for LoRA), the trained parameters are randomly initialised on the devices.
  """
  def from_params(p):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=optimizer.init(p))

  if params is not None:
    params = trainable_lib.split(params, trainable)[0]
    if not params:
      params = None
  with jax.set_mesh(mesh):
    if params is None:
      # Only the trained half is an output: the rest of the init is dead code to XLA.
      return jax.jit(lambda key: from_params(trainable_lib.split(
          model.init_params(config, key), trainable)[0]), out_shardings=layout.shardings)(rng)
    # Host arrays go straight into their shards; none is copied whole to one device.
    params = jax.tree.map(lambda x, s, sh: jax.device_put(np.asarray(x, s.dtype), sh),
                          params, layout.shapes.params, layout.shardings.params)
    return jax.jit(from_params, out_shardings=layout.shardings)(params)


def checkpoint_layout(config: model_config.MT5Config, optimizer: optax.GradientTransformation,
                      partitioner: Partitioner, mesh: Mesh, layout: StateLayout,
                      trainable: TrainableSet = trainable_lib.ALL) -> StateLayout:
  """The layout checkpoints hold: `layout` itself unless the layers are scanned."""
  if not config.scan_layers:
    return layout
  per_layer = dataclasses.replace(config, scan_layers=False)
  return state_layout(per_layer, optimizer, partitioner, mesh, trainable)


@dataclasses.dataclass(frozen=True)
class FrozenLayout:
  """Shapes (in the frozen dtype) and shardings of the parameters a run does not train."""

  shapes: Any
  shardings: Any


def frozen_layout(config: model_config.MT5Config, partitioner: Partitioner, mesh: Mesh,
                  trainable: TrainableSet) -> FrozenLayout:
  """The frozen half's layout; empty trees when every parameter trains."""
  shapes, shardings = _param_layout(config, partitioner, mesh, trainable, 1)
  dtype = trainable.frozen_dtype
  if dtype is not None:
    shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, jnp.dtype(dtype)), shapes)
  return FrozenLayout(shapes=shapes, shardings=shardings)


def init_frozen(config: model_config.MT5Config, layout: FrozenLayout, mesh: Mesh,
                rng: jax.Array, trainable: TrainableSet, params: Any | None = None) -> Any:
  """The frozen parameters on the devices, in their dtype and shardings.

  From `params` (host arrays of the whole network, e.g. a base checkpoint) when given,
  else randomly initialised from `rng` (the same draw `init_state` makes).
  """
  if params is None:
    with jax.set_mesh(mesh):
      return jax.jit(lambda key: jax.tree.map(
          lambda x, s: x.astype(s.dtype),
          trainable_lib.split(model.init_params(config, key), trainable)[1], layout.shapes),
          out_shardings=layout.shardings)(rng)
  frozen = trainable_lib.split(params, trainable)[1]
  return jax.tree.map(lambda x, s, sh: jax.device_put(np.asarray(x).astype(s.dtype), sh),
                      frozen, layout.shapes, layout.shardings)


def convert_state(state: TrainState, target: StateLayout, mesh: Mesh) -> TrainState:
  """`state` in `target`'s layout (layers stacked or not), sharded as `target` says.

  Returns `state` itself when it has that layout already. Parameters and their copies in
  the optimizer state are stacked or split on the devices, straight into the shardings.
  """
  stacked = layer_stack.is_stacked(target.shapes.params)
  if layer_stack.is_stacked(state.params) == stacked:
    return state
  convert = layer_stack.stack_layers if stacked else layer_stack.unstack_layers
  with jax.set_mesh(mesh):
    return jax.jit(convert, out_shardings=target.shardings)(state)
