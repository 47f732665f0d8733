"""Pallas TPU flash attention with dropout on the attention weights, drawn inside the kernel.

`flash_attention(q, k, v, relative, q_ids, kv_ids, ...)` computes
`dropout(softmax(q k^T + relative + mask)) v` for [batch, heads, length, d] inputs without
the 1/sqrt(d) factor (T5), blockwise, never holding a [q, k] array: the mask comes from
segment ids (packing and padding) and a causal flag, `relative` is the [1, heads, q, k]
relative position bias shared by every row (its gradient is returned), and the dropout
keep mask is a counter-based hash of (seed, batch row, head, query position, key
position) evaluated inside the forward and both backward kernels. The same bits are
recomputed where they are needed, so the backward pass applies exactly the forward's
mask and nothing of size q x k is stored for it.

`keep_mask` is that hash as plain jnp, the reference the tests rebuild the mask with.
Batch and head indices are global: under `jax.shard_map` the caller passes the first row
and head of its block (`batch_offset`, `head_offset`), so the masks do not depend on how
the rows and heads are laid out over devices, and two devices never draw the same mask.

The kernels run on TPUs (Mosaic) and, inside `pltpu.force_tpu_interpret_mode()`, on CPU.
Keys come in blocks of 128 (one lane tile), queries in blocks of 128 or the whole length.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

Array = jax.Array

# Key block: one lane tile, so that per-row statistics kept 128 lanes wide line up with
# a block of logits element for element.
BLOCK_K = 128
LANES = 128
SUBLANES = 8
# As `aya_t5x.attention.MASKED_BIAS`: exp() of it underflows to 0, sums stay finite.
MASKED = -1e10

# murmur3's finaliser constants and the golden ratio, as wrapping int32 arithmetic.
_MIX_1 = int(np.uint32(0x85EBCA6B).view(np.int32))
_MIX_2 = int(np.uint32(0xC2B2AE35).view(np.int32))
_GOLDEN = int(np.uint32(0x9E3779B9).view(np.int32))


def _shift_right(x: Array, bits: int) -> Array:
  return lax.shift_right_logical(x, jnp.full(x.shape, bits, x.dtype))


def _mix(x: Array) -> Array:
  """murmur3's 32-bit finaliser: a bijection of int32 that spreads every input bit."""
  x = x ^ _shift_right(x, 16)
  x = x * jnp.int32(_MIX_1)
  x = x ^ _shift_right(x, 13)
  x = x * jnp.int32(_MIX_2)
  return x ^ _shift_right(x, 16)


def keep_threshold(rate: float) -> int:
  """A 31-bit hash at or above this is kept: P(keep) = 1 - rate to within 2^-31."""
  return int(round(rate * 2**31))


def keep_mask(seed: Array, batch: Array, head: Array, query: Array, key: Array,
              rate: float) -> Array:
  """True where an attention weight survives dropout at `rate`; all int32, broadcast.

  The stream of one (seed, batch row, head) is two rounds of mixing of those scalars;
  each (query, key) pair then hashes `mix(mix(stream ^ query) + key * golden)`: for a
  fixed query, distinct keys give distinct mixer inputs, and the mixer is a bijection.
  """
  stream = _mix(_mix(seed ^ (batch * jnp.int32(_GOLDEN))) ^ (head * jnp.int32(_MIX_1)))
  bits = _mix(_mix(stream ^ query) + key * jnp.int32(_GOLDEN))
  return _shift_right(bits, 1) >= keep_threshold(rate)


def _lanes(x: Array, width: int) -> Array:
  """A [rows, 128] per-row statistic (equal across lanes) as [rows, width]."""
  if width <= LANES:
    return x[:, :width]
  return jnp.tile(x, (1, width // LANES))


def _block_logits(scalars, q, k, bias, q_ids, kv_ids, q_block, k_block, *, causal: bool,
                  block_q: int, rate: float):
  """The masked float32 logits of one [block_q, 128] block and its keep mask (or None)."""
  s = lax.dot_general(q, k, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  if bias is not None:
    s = s + bias.astype(jnp.float32)
  shape = s.shape
  query_pos = q_block * block_q + lax.broadcasted_iota(jnp.int32, shape, 0)
  key_pos = k_block * BLOCK_K + lax.broadcasted_iota(jnp.int32, shape, 1)
  allowed = q_ids == kv_ids[:1, :]
  if causal:
    allowed = allowed & (key_pos <= query_pos)
  s = jnp.where(allowed, s, MASKED)
  keep = None
  if rate > 0:
    batch = pl.program_id(0) + scalars[1]
    head = pl.program_id(1) + scalars[2]
    keep = keep_mask(scalars[0], batch, head, query_pos, key_pos, rate)
  return s, keep


def _runs(q_block, k_block, *, causal: bool, block_q: int):
  """False for a block wholly above the diagonal of a causal attention (all masked)."""
  if not causal:
    return True
  return k_block * BLOCK_K <= q_block * block_q + block_q - 1


def _unpack(refs, has_bias: bool):
  q, k, v, *rest = refs
  bias = rest.pop(0) if has_bias else None
  return q, k, v, bias, rest


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


def _forward_kernel(scalars, *refs, causal: bool, rate: float, block_q: int,
                    has_bias: bool):
  q_ref, k_ref, v_ref, bias_ref, rest = _unpack(refs, has_bias)
  q_ids_ref, kv_ids_ref, o_ref, lse_ref, m_scratch, l_scratch, acc_scratch = rest
  q_block, k_block = pl.program_id(2), pl.program_id(3)

  @pl.when(k_block == 0)
  def _():
    m_scratch[...] = jnp.full(m_scratch.shape, -jnp.inf, jnp.float32)
    l_scratch[...] = jnp.zeros(l_scratch.shape, jnp.float32)
    acc_scratch[...] = jnp.zeros(acc_scratch.shape, jnp.float32)

  @pl.when(_runs(q_block, k_block, causal=causal, block_q=block_q))
  def _():
    s, keep = _block_logits(
        scalars, q_ref[...], k_ref[...], None if bias_ref is None else bias_ref[...],
        q_ids_ref[...], kv_ids_ref[...], q_block, k_block, causal=causal,
        block_q=block_q, rate=rate)
    m_prev = m_scratch[...]
    m_new = jnp.maximum(m_prev, jnp.max(s, axis=1, keepdims=True))
    p = jnp.exp(s - m_new)
    alpha = jnp.exp(m_prev - m_new)
    # The normaliser sums the weights before dropout; only the values see the mask.
    l_scratch[...] = alpha * l_scratch[...] + jnp.sum(p, axis=1, keepdims=True)
    if keep is not None:
      p = jnp.where(keep, p * (1.0 / (1.0 - rate)), 0.0)
    v = v_ref[...]
    update = jnp.dot(p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    width = acc_scratch.shape[-1]
    acc_scratch[...] = acc_scratch[...] * _lanes(alpha, width) + update
    m_scratch[...] = m_new

  @pl.when(k_block == pl.num_programs(3) - 1)
  def _():
    width = acc_scratch.shape[-1]
    o_ref[...] = (acc_scratch[...] / _lanes(l_scratch[...], width)).astype(o_ref.dtype)
    lse_ref[...] = m_scratch[...] + jnp.log(l_scratch[...])


def _probabilities_and_ds(scalars, q, k, v, bias, q_ids, kv_ids, lse, di, do, q_block,
                          k_block, *, causal, rate, block_q):
  """The block's dropped weights (for dV) and the logits' gradient dS, float32."""
  s, keep = _block_logits(scalars, q, k, bias, q_ids, kv_ids, q_block, k_block,
                          causal=causal, block_q=block_q, rate=rate)
  p = jnp.exp(s - lse)
  d_weights = lax.dot_general(do, v, (((1,), (1,)), ((), ())),
                              preferred_element_type=jnp.float32)
  weights = p
  if keep is not None:
    scale = 1.0 / (1.0 - rate)
    weights = jnp.where(keep, p * scale, 0.0)
    d_weights = jnp.where(keep, d_weights * scale, 0.0)
  # di = rowsum(dO * O) equals rowsum(dP * P) with the mask: O already holds it.
  return weights, p * (d_weights - di)


def _dq_kernel(scalars, *refs, causal: bool, rate: float, block_q: int, has_bias: bool):
  q_ref, k_ref, v_ref, bias_ref, rest = _unpack(refs, has_bias)
  q_ids_ref, kv_ids_ref, lse_ref, di_ref, do_ref, dq_ref, *rest = rest
  ds_ref = rest.pop(0) if has_bias else None
  (dq_scratch,) = rest
  q_block, k_block = pl.program_id(2), pl.program_id(3)
  runs = _runs(q_block, k_block, causal=causal, block_q=block_q)

  @pl.when(k_block == 0)
  def _():
    dq_scratch[...] = jnp.zeros(dq_scratch.shape, jnp.float32)

  @pl.when(runs)
  def _():
    k = k_ref[...]
    _, ds = _probabilities_and_ds(
        scalars, q_ref[...], k, v_ref[...], None if bias_ref is None else bias_ref[...],
        q_ids_ref[...], kv_ids_ref[...], lse_ref[...], di_ref[...], do_ref[...], q_block,
        k_block, causal=causal, rate=rate, block_q=block_q)
    dq_scratch[...] += jnp.dot(ds.astype(k.dtype), k, preferred_element_type=jnp.float32)
    if ds_ref is not None:
      ds_ref[...] = ds.astype(ds_ref.dtype)

  if ds_ref is not None:
    @pl.when(jnp.logical_not(runs))
    def _():
      ds_ref[...] = jnp.zeros(ds_ref.shape, ds_ref.dtype)

  @pl.when(k_block == pl.num_programs(3) - 1)
  def _():
    dq_ref[...] = dq_scratch[...].astype(dq_ref.dtype)


def _dkv_kernel(scalars, *refs, causal: bool, rate: float, block_q: int, has_bias: bool):
  q_ref, k_ref, v_ref, bias_ref, rest = _unpack(refs, has_bias)
  (q_ids_ref, kv_ids_ref, lse_ref, di_ref, do_ref, dk_ref, dv_ref, dk_scratch,
   dv_scratch) = rest
  k_block, q_block = pl.program_id(2), pl.program_id(3)

  @pl.when(q_block == 0)
  def _():
    dk_scratch[...] = jnp.zeros(dk_scratch.shape, jnp.float32)
    dv_scratch[...] = jnp.zeros(dv_scratch.shape, jnp.float32)

  @pl.when(_runs(q_block, k_block, causal=causal, block_q=block_q))
  def _():
    q, do = q_ref[...], do_ref[...]
    weights, ds = _probabilities_and_ds(
        scalars, q, k_ref[...], v_ref[...], None if bias_ref is None else bias_ref[...],
        q_ids_ref[...], kv_ids_ref[...], lse_ref[...], di_ref[...], do, q_block, k_block,
        causal=causal, rate=rate, block_q=block_q)
    transposed = (((0,), (0,)), ((), ()))
    dv_scratch[...] += lax.dot_general(weights.astype(do.dtype), do, transposed,
                                       preferred_element_type=jnp.float32)
    dk_scratch[...] += lax.dot_general(ds.astype(q.dtype), q, transposed,
                                       preferred_element_type=jnp.float32)

  @pl.when(q_block == pl.num_programs(3) - 1)
  def _():
    dk_ref[...] = dk_scratch[...].astype(dk_ref.dtype)
    dv_ref[...] = dv_scratch[...].astype(dv_ref.dtype)


# --------------------------------------------------------------------------------------
# pallas_calls
# --------------------------------------------------------------------------------------


def _block_q(q_len: int) -> int:
  return 128 if q_len % 128 == 0 else q_len


def _specs(q_len: int, d: int, has_bias: bool, *, keys_inner: bool):
  """BlockSpecs of (q, k, v, bias?, q_ids, kv_ids, lse, di, do) for a grid whose third
  index is the query block (`keys_inner`) or the key block (dK/dV)."""
  block_q = _block_q(q_len)

  def order(fn):
    if keys_inner:
      return lambda b, h, i, j, _: fn(b, h, i, j)
    return lambda b, h, j, i, _: fn(b, h, i, j)

  def spec(shape, fn):
    return pl.BlockSpec(shape, order(fn))

  rows = spec((None, None, block_q, d), lambda b, h, i, j: (b, h, i, 0))
  keys = spec((None, None, BLOCK_K, d), lambda b, h, i, j: (b, h, j, 0))
  stats = spec((None, None, block_q, LANES), lambda b, h, i, j: (b, h, i, 0))
  specs = dict(
      q=rows, k=keys, v=keys, do=rows, lse=stats, di=stats,
      bias=spec((None, None, block_q, BLOCK_K), lambda b, h, i, j: (0, h, i, j)),
      ds=spec((None, None, block_q, BLOCK_K), lambda b, h, i, j: (b, h, i, j)),
      q_ids=spec((None, block_q, LANES), lambda b, h, i, j: (b, i, 0)),
      kv_ids=spec((None, SUBLANES, BLOCK_K), lambda b, h, i, j: (b, 0, j)))
  if not has_bias:
    del specs["bias"], specs["ds"]
  return specs


def _call(kernel, grid, scalars, in_specs, inputs, out_specs, out_shapes, scratch):
  return pl.pallas_call(
      kernel,
      grid_spec=pltpu.PrefetchScalarGridSpec(
          num_scalar_prefetch=1, grid=grid, in_specs=in_specs, out_specs=out_specs,
          scratch_shapes=scratch),
      out_shape=out_shapes,
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")),
  )(scalars, *inputs)


def _forward(q, k, v, bias, q_ids, kv_ids, scalars, causal, rate):
  batch, heads, q_len, d = q.shape
  k_len = k.shape[2]
  block_q = _block_q(q_len)
  specs = _specs(q_len, d, bias is not None, keys_inner=True)
  names = ["q", "k", "v"] + (["bias"] if bias is not None else []) + ["q_ids", "kv_ids"]
  inputs = [q, k, v] + ([bias] if bias is not None else []) + [q_ids, kv_ids]
  kernel = functools.partial(_forward_kernel, causal=causal, rate=rate, block_q=block_q,
                             has_bias=bias is not None)
  grid = (batch, heads, q_len // block_q, k_len // BLOCK_K)
  out, lse = _call(
      kernel, grid, scalars, [specs[n] for n in names], inputs,
      [specs["q"], specs["lse"]],
      [jax.ShapeDtypeStruct(q.shape, q.dtype),
       jax.ShapeDtypeStruct((batch, heads, q_len, LANES), jnp.float32)],
      [pltpu.VMEM((block_q, LANES), jnp.float32), pltpu.VMEM((block_q, LANES), jnp.float32),
       pltpu.VMEM((block_q, d), jnp.float32)])
  return out, lse


def _backward(q, k, v, bias, q_ids, kv_ids, scalars, out, lse, d_out, causal, rate):
  batch, heads, q_len, d = q.shape
  k_len = k.shape[2]
  block_q = _block_q(q_len)
  has_bias = bias is not None
  di = jnp.sum(out.astype(jnp.float32) * d_out.astype(jnp.float32), axis=-1, keepdims=True)
  di = jnp.broadcast_to(di, lse.shape)
  names = (["q", "k", "v"] + (["bias"] if has_bias else [])
           + ["q_ids", "kv_ids", "lse", "di", "do"])
  inputs = ([q, k, v] + ([bias] if has_bias else []) + [q_ids, kv_ids, lse, di, d_out])
  options = dict(causal=causal, rate=rate, block_q=block_q, has_bias=has_bias)

  specs = _specs(q_len, d, has_bias, keys_inner=True)
  out_specs = [specs["q"]] + ([specs["ds"]] if has_bias else [])
  out_shapes = [jax.ShapeDtypeStruct(q.shape, q.dtype)]
  if has_bias:
    out_shapes.append(jax.ShapeDtypeStruct((batch, heads, q_len, k_len), bias.dtype))
  dq, *ds = _call(
      functools.partial(_dq_kernel, **options),
      (batch, heads, q_len // block_q, k_len // BLOCK_K), scalars,
      [specs[n] for n in names], inputs, out_specs, out_shapes,
      [pltpu.VMEM((block_q, d), jnp.float32)])

  specs = _specs(q_len, d, has_bias, keys_inner=False)
  dk, dv = _call(
      functools.partial(_dkv_kernel, **options),
      (batch, heads, k_len // BLOCK_K, q_len // block_q), scalars,
      [specs[n] for n in names], inputs, [specs["k"], specs["v"]],
      [jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
      [pltpu.VMEM((BLOCK_K, d), jnp.float32), pltpu.VMEM((BLOCK_K, d), jnp.float32)])
  # The table is shared by the rows: its gradient is the sum of theirs.
  d_bias = None
  if has_bias:
    d_bias = jnp.sum(ds[0].astype(jnp.float32), axis=0, keepdims=True).astype(bias.dtype)
  return dq, dk, dv, d_bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _flash(q, k, v, bias, q_ids, kv_ids, scalars, causal, rate):
  return _forward(q, k, v, bias, q_ids, kv_ids, scalars, causal, rate)[0]


def _flash_forward(q, k, v, bias, q_ids, kv_ids, scalars, causal, rate):
  out, lse = _forward(q, k, v, bias, q_ids, kv_ids, scalars, causal, rate)
  return out, (q, k, v, bias, q_ids, kv_ids, scalars, out, lse)


def _flash_backward(causal, rate, residuals, d_out):
  q, k, v, bias, q_ids, kv_ids, scalars, out, lse = residuals
  dq, dk, dv, d_bias = _backward(q, k, v, bias, q_ids, kv_ids, scalars, out, lse, d_out,
                                 causal, rate)
  return dq, dk, dv, d_bias, None, None, None


_flash.defvjp(_flash_forward, _flash_backward)


def check_lengths(q_len: int, k_len: int) -> None:
  """Raises unless the kernel's blocks tile these lengths (the message names the fix)."""
  if k_len % BLOCK_K or q_len % SUBLANES:
    raise ValueError(
        f"attention_implementation='pallas_tpu' needs key lengths that are multiples of "
        f"{BLOCK_K} and query lengths that are multiples of {SUBLANES} (its blocks), got "
        f"{q_len} queries over {k_len} keys; set TASK_FEATURE_LENGTHS to multiples of "
        f"{BLOCK_K} or use 'xla'.")


def flash_attention(query: Array, key: Array, value: Array, relative: Array | None,
                    query_ids: Array, key_ids: Array, *, causal: bool,
                    dropout_rate: float = 0.0, seed: Array | int = 0,
                    batch_offset: Array | int = 0, head_offset: Array | int = 0) -> Array:
  """Unscaled attention of [batch, heads, q, d] over [batch, heads, k, d]; see the module.

  relative: [1, heads, q, k] or None. query_ids, key_ids: int [batch, q], [batch, k];
  a query attends to keys of its own id (padding keys carry an id no query has).
  seed: int32 scalar of this call's masks; batch_offset, head_offset: the global index
  of this block's first row and head (nonzero inside a shard_map).
  """
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}.")
  batch, _, q_len, _ = query.shape
  k_len = key.shape[2]
  check_lengths(q_len, k_len)
  # Segment ids laid out as whole (8, 128) tiles: queries along sublanes, keys along lanes.
  q_ids = jnp.broadcast_to(query_ids.astype(jnp.int32)[:, :, None], (batch, q_len, LANES))
  kv_ids = jnp.broadcast_to(key_ids.astype(jnp.int32)[:, None, :], (batch, SUBLANES, k_len))
  scalars = jnp.stack([jnp.asarray(x, jnp.int32).reshape(())
                       for x in (seed, batch_offset, head_offset)])
  bias = None if relative is None else relative.astype(query.dtype)
  return _flash(query, key, value, bias, q_ids, kv_ids, scalars, causal, float(dropout_rate))
