"""The train state laid out on a mesh: shapes first, shardings next, then allocation.

Nothing here ever materialises a whole parameter tree on one device: shapes come from
`jax.eval_shape`, shardings from the logical-axis rules (parameters) and from the
compiler's propagation through `optimizer.init` (optimizer state), and the state is
created by a jitted init whose outputs are already sharded.

A model with `scan_layers` trains on stacked layer parameters (and optimizer state) but
saves and restores the per-layer layout (`checkpoint_layout`, `convert_state`), so that
checkpoints never depend on it. Its optimizer is `layer_stack.per_layer_optimizer`.
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


def state_layout(config: model_config.MT5Config, optimizer: optax.GradientTransformation,
                 partitioner: Partitioner, mesh: Mesh) -> StateLayout:
  """Computes the state's shapes and shardings without allocating it."""
  param_shapes = model.param_shapes(config)
  param_shardings = partitioner.logical_to_sharding(model.param_logical_axes(config), mesh)
  partitioner.check_param_shardings(param_shapes, param_shardings)
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
               params: Any | None = None) -> TrainState:
  """A fresh train state, sharded as `layout` says.

  Args:
    params: initial parameters (host arrays, e.g. from a Hugging Face or T5X
      checkpoint); without them the parameters are randomly initialised on the devices.
  """
  def from_params(p):
    return TrainState(step=jnp.zeros((), jnp.int32), params=p, opt_state=optimizer.init(p))

  with jax.set_mesh(mesh):
    if params is None:
      return jax.jit(lambda key: from_params(model.init_params(config, key)),
                     out_shardings=layout.shardings)(rng)
    # Host arrays go straight into their shards; none is copied whole to one device.
    params = jax.tree.map(lambda x, s, sh: jax.device_put(np.asarray(x, s.dtype), sh),
                          params, layout.shapes.params, layout.shardings.params)
    return jax.jit(from_params, out_shardings=layout.shardings)(params)


def checkpoint_layout(config: model_config.MT5Config, optimizer: optax.GradientTransformation,
                      partitioner: Partitioner, mesh: Mesh, layout: StateLayout
                      ) -> StateLayout:
  """The layout checkpoints hold: `layout` itself unless the layers are scanned."""
  if not config.scan_layers:
    return layout
  per_layer = dataclasses.replace(config, scan_layers=False)
  return state_layout(per_layer, optimizer, partitioner, mesh)


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
