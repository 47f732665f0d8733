"""Scanned layer stacks: one `nn.scan` over identical layers, and conversion between layouts.

With `MT5Config.scan_layers` each stack's layers are one module applied by `jax.lax.scan`,
and their parameters are stacked along a leading 'layers' axis:
`encoder/layers/attention/query/kernel` [layers, embed, joined_kv] instead of
`encoder/layers_0/attention/query/kernel` [embed, joined_kv], one subtree per layer. The
compiler then sees one layer body instead of 24, which is what lets mT5-xxl compile in
seconds rather than many minutes (BENCHMARKS.md, "TPU AOT compile").

The stacked layout lives only inside the training step. Checkpoints, evaluators,
decoding and every import and export use the per-layer layout (`unstack_layers` and
`stack_layers` convert parameters, and train states whole), and the optimizer works per
layer (`per_layer_optimizer`): Adafactor's factored moments, update clipping and
parameter scale are computed for each layer exactly as in an unscanned run, and its
state unstacks to the unscanned run's state.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

STACKS = ("encoder", "decoder")
STACKED = "layers"  # the scanned module's name, and the logical name of its axis
_PER_LAYER = re.compile(r"layers_(\d+)")


def scanned(layer: type[nn.Module], *, length: int, num_broadcast_args: int
            ) -> type[nn.Module]:
  """`layer` applied `length` times by a scan; it must return `(output, None)`.

  The first call argument is the carry (the hidden states); the next
  `num_broadcast_args` are the same for every layer (biases, encoder output, flags).
  Each layer draws its own initial parameters and dropout masks.
  """
  return nn.scan(layer, variable_axes={"params": 0},
                 split_rngs={"params": True, "dropout": True},
                 in_axes=(nn.broadcast,) * num_broadcast_args, length=length,
                 metadata_params={nn.PARTITION_NAME: STACKED})


def is_stacked(params: Any) -> bool:
  """Whether a parameter tree has the stacked layout."""
  return any(STACKED in params.get(stack, {}) for stack in STACKS)


def _is_param_tree(x: Any) -> bool:
  """Whether `x` is a parameter tree (or an optimizer state's copy of one)."""
  return isinstance(x, dict) and any(stack in x for stack in STACKS)


def _map_param_trees(fn, tree: Any) -> Any:
  """`fn` applied to every parameter tree inside `tree` (itself, or a train state's)."""
  return jax.tree.map(lambda x: fn(x) if _is_param_tree(x) else x, tree,
                      is_leaf=_is_param_tree)


def unstack_layers(tree: Any) -> Any:
  """The per-layer layout of every stacked parameter tree in `tree` (parameters, or a
  train or optimizer state holding copies of them); arrays may be numpy or traced."""
  return _map_param_trees(_unstack, tree)


def stack_layers(tree: Any) -> Any:
  """The stacked layout of every per-layer parameter tree in `tree`; numpy stays numpy."""
  return _map_param_trees(_stack_tree, tree)


def _unstack(tree: dict) -> dict:
  out = dict(tree)
  for stack in STACKS:
    if STACKED not in tree.get(stack, {}):
      continue
    sub = dict(tree[stack])
    layers = sub.pop(STACKED)
    count = jax.tree.leaves(layers)[0].shape[0]
    for i in range(count):
      sub[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], layers)
    out[stack] = sub
  return out


def _stack_tree(tree: dict) -> dict:
  out = dict(tree)
  for stack in STACKS:
    sub = dict(tree.get(stack, {}))
    names = sorted((k for k in sub if _PER_LAYER.fullmatch(k)), key=lambda k: int(k[7:]))
    if not names:
      continue
    if names != [f"layers_{i}" for i in range(len(names))]:
      raise ValueError(f"{stack} has layers {names}: expected layers_0 ... "
                       f"layers_{len(names) - 1} without gaps.")
    layers = [sub.pop(name) for name in names]
    sub[STACKED] = jax.tree.map(_stack, *layers)
    out[stack] = sub
  return out


def _stack(*arrays):
  # Host arrays (a checkpoint just read) are stacked on the host: jnp.stack would put the
  # whole stack on one device, which for xxl does not fit.
  if all(isinstance(a, np.ndarray) for a in arrays):
    return np.stack(arrays)
  return jnp.stack(arrays)


def _layers_of(stack: str):
  return lambda tree: {stack: {STACKED: tree[stack][STACKED]}}


def _without_layers(tree: dict) -> dict:
  return {name: ({k: v for k, v in sub.items() if k != STACKED} if name in STACKS else sub)
          for name, sub in tree.items()}


def _merge(rest: dict, *layers: dict) -> dict:
  out = dict(rest)
  for part in layers:
    for stack, sub in part.items():
      out[stack] = {**out.get(stack, {}), **sub}
  return out


def _stacks(params: dict) -> list[str]:
  # The encoder and the decoder have their own depths: one vmap each.
  return [stack for stack in STACKS if STACKED in params.get(stack, {})]


def _state_axes(state: Any) -> Any:
  """vmap axes of an optimizer state: its parameter trees per layer; step counters and
  other state outside them are shared by all layers."""
  return jax.tree.map(lambda x: 0 if _is_param_tree(x) else None, state,
                      is_leaf=_is_param_tree)


def _combine(rest_state: Any, layer_states: list[Any]) -> Any:
  """One optimizer state from the rest's and each stack's (same structure around them)."""
  return jax.tree.map(lambda rest, *layers: _merge(rest, *layers) if _is_param_tree(rest)
                      else rest, rest_state, *layer_states, is_leaf=_is_param_tree)


def per_layer_optimizer(optimizer: optax.GradientTransformation
                        ) -> optax.GradientTransformation:
  """`optimizer` for stacked parameters, applied as if each layer were its own parameter.

  The stacked parameters are updated by `optimizer` vmapped over the layer axis (one
  stack at a time: the encoder and the decoder have their own depths), so per-parameter
  statistics (Adafactor's factored moments, update clipping by RMS, parameter scale)
  stay per layer; the other parameters are updated as usual. The state is the unscanned
  model's optimizer state with its parameter trees stacked: `unstack_layers` turns it
  into exactly that state, which is what checkpoints hold.

  `optimizer` must treat parameters independently (Adafactor does); global-norm gradient
  clipping goes before this wrapper, where the norm is the same in both layouts.
  """
  def init(params):
    layer_states = []
    for stack in _stacks(params):
      only = _layers_of(stack)
      one_layer = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                               only(params))
      axes = _state_axes(jax.eval_shape(optimizer.init, one_layer))
      layer_states.append(jax.vmap(optimizer.init, out_axes=axes)(only(params)))
    return _combine(optimizer.init(_without_layers(params)), layer_states)

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("per_layer_optimizer needs the parameters in update().")
    layer_updates, layer_states = [], []
    for stack in _stacks(params):
      only = _layers_of(stack)
      layer_state = _map_param_trees(only, state)
      axes = _state_axes(layer_state)
      new_updates, new_state = jax.vmap(optimizer.update, in_axes=(0, axes, 0),
                                        out_axes=(0, axes))(only(updates), layer_state,
                                                            only(params))
      layer_updates.append(new_updates)
      layer_states.append(new_state)
    rest_updates, rest_state = optimizer.update(
        _without_layers(updates), _map_param_trees(_without_layers, state),
        _without_layers(params))
    return _merge(rest_updates, *layer_updates), _combine(rest_state, layer_states)

  return optax.GradientTransformation(init, update)
