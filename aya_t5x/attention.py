"""What attention adds to its logits (`AttentionBias`) and the fused attention kernels.

T5 attention is `softmax(q k^T + relative position bias + mask) v` without the 1/sqrt(d)
factor. `AttentionBias` carries its parts apart: the relative position bias, computed
once per stack as `[1, heads, q, k]` in the activation dtype, and the mask as key
validity, segment ids of packed rows and a causal flag. Each implementation takes them
in its own form:

  xla         the reference: one additive float32 bias `[batch, heads, q, k]` built
              in the layer (`MultiHeadAttention`), softmax and dropout in XLA.
  cudnn       `jax.nn.dot_product_attention(..., implementation='cudnn', scale=1.0)`: the
              relative bias as `bias` (its gradient is returned by cuDNN), the causal
              mask as `is_causal`, unpacked padding as sequence lengths, packed rows as
              a boolean mask (cuDNN folds it into the bias). GPU only, bfloat16/float16.
  pallas_tpu  `jax.experimental.pallas.ops.tpu.flash_attention`: the relative bias as
              `ab` (broadcast over the batch; its gradient is returned), packing and
              padding as segment ids, `causal`. TPU (or Pallas interpret mode on CPU).
              GSPMD cannot split a Mosaic kernel, so on a multi-device mesh it runs
              inside `jax.shard_map` on each device's rows and heads.

Both fused kernels separate packed examples, so none refuses packing. Neither applies
dropout to the attention weights: with dropout on they are refused while training.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from aya_t5x.model_config import ATTENTION_IMPLEMENTATIONS as IMPLEMENTATIONS

Array = jax.Array

# Additive attention bias for masked positions; large enough that exp() underflows to 0
# in float32 and bfloat16, small enough that adding two of them stays finite.
MASKED_BIAS = -1e10


def attention_mask_bias(key_valid: Array, *, causal: bool = False,
                        query_segment_ids: Array | None = None,
                        key_segment_ids: Array | None = None,
                        query_length: int | None = None) -> Array:
  """Additive float32 bias [batch, 1, q_length, k_length]: 0 where attention is allowed.

  Only keys are masked, never queries: a padded query row still attends somewhere (its
  output is ignored downstream), which keeps every softmax row well defined.
  """
  batch, k_len = key_valid.shape
  q_len = query_length if query_length is not None else k_len
  allowed = jnp.broadcast_to(key_valid[:, None, :], (batch, q_len, k_len))
  if causal:
    allowed &= jnp.tril(jnp.ones((q_len, k_len), jnp.bool_))[None]
  if query_segment_ids is not None and key_segment_ids is not None:
    allowed &= query_segment_ids[:, :, None] == key_segment_ids[:, None, :]
  return jnp.where(allowed, 0.0, MASKED_BIAS).astype(jnp.float32)[:, None]


@flax.struct.dataclass
class AttentionBias:
  """The relative position bias and the mask of one attention, kept apart.

  relative: [1, heads, q, k] in the activation dtype, or None (cross-attention).
  key_valid: bool [batch, k], False on padding keys.
  query_segment_ids, key_segment_ids: int [batch, q] and [batch, k] of packed rows
    (0 on padding), or None when the batch is not packed.
  causal: keys after the query are masked (decoder self-attention).
  extra: an additive float32 bias broadcastable to [batch, heads, q, k], or None;
    incremental decoding masks the cache's unwritten positions with it (xla only).
  """

  relative: Array | None
  key_valid: Array
  query_segment_ids: Array | None = None
  key_segment_ids: Array | None = None
  extra: Array | None = None
  causal: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def packed(self) -> bool:
    return self.query_segment_ids is not None and self.key_segment_ids is not None

  def additive(self, query_length: int) -> Array:
    """The whole bias as one float32 array broadcastable to [batch, heads, q, k]."""
    bias = attention_mask_bias(
        self.key_valid, causal=self.causal, query_segment_ids=self.query_segment_ids,
        key_segment_ids=self.key_segment_ids, query_length=query_length)
    if self.relative is not None:
      bias = bias + self.relative.astype(jnp.float32)
    if self.extra is not None:
      bias = bias + self.extra
    return bias

  def segment_ids(self, query_length: int) -> tuple[Array, Array]:
    """(query, key) segment ids [batch, q], [batch, k] that also mask padding keys.

    Unpacked rows are one segment: queries 1, valid keys 1 and padding keys 0. Packed
    rows keep their ids, with padding keys set to 0 (as SeqIO lays them out already).
    """
    keys = self.key_valid.astype(jnp.int32)
    if not self.packed:
      return jnp.ones((keys.shape[0], query_length), jnp.int32), keys
    return (self.query_segment_ids.astype(jnp.int32),
            self.key_segment_ids.astype(jnp.int32) * keys)


def _refuse_extra(bias: AttentionBias, implementation: str) -> None:
  if bias.extra is not None:
    raise ValueError(f"attention_implementation={implementation!r} does not take an extra "
                     "additive bias (incremental decoding); decoding uses 'xla'.")


def jax_nn_attention(query: Array, key: Array, value: Array, bias: AttentionBias, *,
                     implementation: str | None = "cudnn") -> Array:
  """`jax.nn.dot_product_attention` on [batch, heads, length, d] inputs, unscaled.

  `implementation='cudnn'` is the GPU kernel; None or 'xla' run the same arguments
  through jax's reference implementation (what the CPU tests check).
  """
  _refuse_extra(bias, "cudnn")
  q_len = query.shape[2]
  mask = lengths = None
  if bias.packed:
    query_ids, key_ids = bias.segment_ids(q_len)
    mask = (query_ids[:, :, None] == key_ids[:, None, :])[:, None]
  elif not bias.causal:
    # Unpacked rows are padded at the end: the padding mask is a length per row.
    lengths = jnp.sum(bias.key_valid, axis=-1).astype(jnp.int32)
  relative = None if bias.relative is None else bias.relative.astype(query.dtype)
  # jax.nn takes [batch, length, heads, d].
  out = jax.nn.dot_product_attention(
      jnp.swapaxes(query, 1, 2), jnp.swapaxes(key, 1, 2), jnp.swapaxes(value, 1, 2),
      bias=relative, mask=mask, scale=1.0, is_causal=bias.causal,
      key_value_seq_lengths=lengths, implementation=implementation)
  return jnp.swapaxes(out, 1, 2)


def _kernel_specs() -> tuple[jax.sharding.AbstractMesh, tuple, tuple] | None:
  """The mesh and the mesh axes of 'batch' and 'heads' a kernel runs over, per device.

  None outside a multi-device mesh. Axes the rules name but the mesh lacks (a 'replica'
  axis on a one-slice mesh) are dropped.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return None

  def axes(name: str) -> tuple[str, ...]:
    found = nn.logical_to_mesh_axes((name,))[0]
    found = () if found is None else found if isinstance(found, tuple) else (found,)
    return tuple(a for a in found if a in mesh.axis_names)

  return mesh, axes("batch"), axes("heads")


def _per_device(kernel, query: Array, key: Array, value: Array, relative: Array | None,
                query_ids: Array, key_ids: Array) -> Array:
  """`kernel(query, key, value, relative, query_ids, key_ids)` on each device's block.

  A Mosaic kernel is one opaque call that GSPMD cannot split, so on a multi-device mesh
  it runs inside `jax.shard_map`: each device attends its own rows and heads (attention
  never mixes either), laid out as the logical-axis rules shard them. Lengths and the
  head dimension stay whole.
  """
  # The table, when there is one, goes last: one shard_map for both cases.
  tables = () if relative is None else (relative,)

  def on_device(q, k, v, q_ids, k_ids, *table):
    return kernel(q, k, v, table[0] if table else None, q_ids, k_ids)

  specs = _kernel_specs()
  if specs is None:
    return on_device(query, key, value, query_ids, key_ids, *tables)
  mesh, batch, heads = specs
  rows = jax.sharding.PartitionSpec(batch or None, heads or None, None, None)
  ids = jax.sharding.PartitionSpec(batch or None, None)
  table_spec = jax.sharding.PartitionSpec(None, heads or None, None, None)
  return jax.shard_map(on_device, mesh=mesh,
                       in_specs=(rows, rows, rows, ids, ids, *(table_spec for _ in tables)),
                       out_specs=rows, check_vma=False,
                       )(query, key, value, query_ids, key_ids, *tables)


def _pallas_flash(query: Array, key: Array, value: Array, relative: Array | None,
                  query_ids: Array, key_ids: Array, *, causal: bool) -> Array:
  """One device's Pallas flash attention; `relative` [1, heads, q, k] or None."""
  from jax.experimental.pallas.ops.tpu import flash_attention as flash

  batch, heads, q_len, _ = query.shape
  k_len = key.shape[2]
  ab = None
  if relative is not None:
    # The kernel reads a bias per row: the table is broadcast over this device's rows.
    ab = jnp.broadcast_to(relative.astype(query.dtype), (batch, heads, q_len, k_len))
  block_q, block_k = min(128, q_len), 128
  blocks = flash.BlockSizes(
      block_q=block_q, block_k_major=block_k, block_k=block_k, block_b=1,
      block_q_major_dkv=block_q, block_k_major_dkv=block_k, block_k_dkv=block_k,
      block_q_dkv=block_q, block_k_major_dq=block_k, block_k_dq=block_k, block_q_dq=block_q)
  return flash.flash_attention(
      query, key, value, ab=ab, segment_ids=flash.SegmentIds(q=query_ids, kv=key_ids),
      causal=causal, sm_scale=1.0, block_sizes=blocks)


def pallas_tpu_attention(query: Array, key: Array, value: Array, bias: AttentionBias
                         ) -> Array:
  """The Pallas TPU flash attention on [batch, heads, length, d] inputs, unscaled."""
  _refuse_extra(bias, "pallas_tpu")
  q_len, k_len = query.shape[2], key.shape[2]
  if k_len % 128 or q_len % 8:
    raise ValueError(
        f"attention_implementation='pallas_tpu' needs key lengths that are multiples of "
        f"128 and query lengths that are multiples of 8 (its segment-id blocks), got "
        f"{q_len} queries over {k_len} keys; set TASK_FEATURE_LENGTHS to multiples of 128 "
        "or use 'xla'.")
  query_ids, key_ids = bias.segment_ids(q_len)
  kernel = functools.partial(_pallas_flash, causal=bias.causal)
  return _per_device(kernel, query, key, value, bias.relative, query_ids, key_ids)


def fused_attention(implementation: str, query: Array, key: Array, value: Array,
                    bias: AttentionBias) -> Array:
  """Attention by a fused kernel: 'cudnn' or 'pallas_tpu' (see the module docstring)."""
  if implementation == "cudnn":
    return jax_nn_attention(query, key, value, bias, implementation="cudnn")
  if implementation == "pallas_tpu":
    return pallas_tpu_attention(query, key, value, bias)
  raise ValueError(f"Unknown fused attention implementation {implementation!r}; choose "
                   f"from {IMPLEMENTATIONS[1:]}.")
