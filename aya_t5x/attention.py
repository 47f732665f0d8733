"""What attention adds to its logits (`AttentionBias`) and the fused attention kernels.

T5 attention is `softmax(q k^T + relative position bias + mask) v` without the 1/sqrt(d)
factor. `AttentionBias` carries its parts apart: the relative position bias, computed
once per stack as `[1, heads, q, k]` in the activation dtype, and the mask as key
validity, segment ids of packed rows and a causal flag. Each implementation takes them
in its own form:

  xla         the reference: one additive float32 bias `[batch, heads, q, k]` built
              in the layer (`MultiHeadAttention`), softmax and dropout in XLA.
  cudnn       jax's internal cuDNN flash attention
              (`jax._src.cudnn.fused_attention_stablehlo.dot_product_attention`, scale 1,
              [batch, heads, length, d] layout): the relative bias as `bias` (its
              gradient is returned by cuDNN), the causal mask as the CAUSAL mask type,
              unpacked padding as sequence lengths, packed rows as a boolean mask (cuDNN
              folds it into the bias), attention dropout by cuDNN's Philox generator from
              a static seed per call site (`cudnn_seed`). GPU only, bfloat16/float16.
  pallas_tpu  the project's Pallas flash attention (`aya_t5x.flash_dropout`): the
              relative bias as a [1, heads, q, k] table (its gradient is returned),
              packing and padding as segment ids, causal, dropout drawn inside the kernel
              from a hash of (seed, row, head, query, key) with the seed drawn from the
              layer's 'dropout' rng. TPU (or Pallas interpret mode on CPU). GSPMD cannot
              split a Mosaic kernel, so on a multi-device mesh it runs inside
              `jax.shard_map` on each device's rows and heads.
  auto        resolved by `choose_implementation` for the platform the step runs on.

Both fused kernels separate packed examples, so none refuses packing; each refuses only
an attention dropout it cannot apply (`dropout_refusal`).
"""

from __future__ import annotations

import dataclasses
import inspect
import zlib
from collections.abc import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from aya_t5x import flash_dropout
from aya_t5x.model_config import ATTENTION_IMPLEMENTATIONS as IMPLEMENTATIONS
from aya_t5x.model_config import MT5Config

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


def _cudnn_mask(bias: AttentionBias, q_len: int) -> tuple[Array | None, Array | None]:
  """(boolean mask [batch, 1, q, k] or None, key lengths [batch] or None) for cuDNN.

  Packed rows need the mask (cuDNN folds it into the bias); unpacked rows are padded at
  the end, so their padding is a length per row (causal rows have no padding keys).
  """
  if bias.packed:
    query_ids, key_ids = bias.segment_ids(q_len)
    return (query_ids[:, :, None] == key_ids[:, None, :])[:, None], None
  if not bias.causal:
    return None, jnp.sum(bias.key_valid, axis=-1).astype(jnp.int32)
  return None, None


# jax's cuDNN attention with `dropout_rate` and `seed` arguments: since jax 0.4.31 in
# `jax._src.cudnn.fused_attention_stablehlo` (the public `jax.nn.dot_product_attention`
# passes neither). An internal module: checked by version and by signature.
CUDNN_DROPOUT_MIN_JAX = (0, 4, 31)


def cudnn_dropout_refusal() -> str | None:
  """Why this jax cannot apply dropout inside cuDNN's attention, or None if it can."""
  version = tuple(jax.__version_info__[:3])
  if version < CUDNN_DROPOUT_MIN_JAX:
    return (f"jax {jax.__version__} predates cuDNN attention dropout (needs jax >= "
            f"{'.'.join(map(str, CUDNN_DROPOUT_MIN_JAX))})")
  try:
    from jax._src.cudnn import fused_attention_stablehlo as cudnn
  except ImportError as e:
    return f"jax {jax.__version__} has no jax._src.cudnn.fused_attention_stablehlo ({e})"
  parameters = inspect.signature(cudnn.dot_product_attention).parameters
  if not {"seed", "dropout_rate", "mask_type", "qkv_layout"} <= set(parameters):
    return (f"jax {jax.__version__}'s internal cuDNN attention takes no seed and "
            "dropout_rate")
  return None


def cudnn_seed(call_site: str) -> int:
  """The static Philox seed of one attention call site (a module path), as an int.

  XLA gives each cuDNN attention call in a compiled step its own Philox offset counter,
  starting at 0; with one seed for every call site, layers of equal shapes would draw
  the same masks. See docs/training.md for how the masks advance and after a resume.
  """
  return zlib.crc32(call_site.encode()) & 0x7FFFFFFF


def jax_nn_attention(query: Array, key: Array, value: Array, bias: AttentionBias, *,
                     implementation: str | None = "cudnn", dropout_rate: float = 0.0,
                     seed: int = 0) -> Array:
  """Attention on [batch, heads, length, d] inputs, unscaled, by jax's cuDNN kernel.

  `implementation='cudnn'` is the GPU kernel, through jax's internal cuDNN function (it
  takes the dropout rate and a static seed, see `cudnn_seed`); None or 'xla' run the same
  mask, lengths and bias through `jax.nn.dot_product_attention`'s reference
  implementation (what the CPU tests check; it has no dropout).
  """
  _refuse_extra(bias, "cudnn")
  q_len = query.shape[2]
  mask, lengths = _cudnn_mask(bias, q_len)
  relative = None if bias.relative is None else bias.relative.astype(query.dtype)
  if implementation == "cudnn":
    refusal = cudnn_dropout_refusal() if dropout_rate > 0 else None
    if refusal:
      raise ValueError(f"attention_implementation='cudnn' cannot apply "
                       f"MT5Config.attention_dropout_rate={dropout_rate}: {refusal}; set "
                       "MT5Config.attention_dropout_rate=0.0 or use 'xla'.")
    from jax._src.cudnn import fused_attention_stablehlo as cudnn

    mask_type = cudnn.MaskType.CAUSAL if bias.causal else cudnn.MaskType.NO_MASK
    query_lengths = None
    if lengths is not None:  # as jax.nn does: padding needs both lengths
      query_lengths = jnp.full(lengths.shape, q_len, jnp.int32)
      mask_type = cudnn.MaskType.PADDING
    return cudnn.dot_product_attention(
        query, key, value, relative, mask, query_lengths, lengths, scale=1.0,
        mask_type=mask_type, seed=seed, dropout_rate=float(dropout_rate), qkv_layout="BNTH")
  if dropout_rate > 0:
    raise ValueError("jax.nn.dot_product_attention has no dropout; the reference path "
                     "runs at rate 0 only.")
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
                query_ids: Array, key_ids: Array, seed: Array) -> Array:
  """`kernel(q, k, v, relative, q_ids, k_ids, seed, batch_offset, head_offset)` per block.

  A Mosaic kernel is one opaque call that GSPMD cannot split, so on a multi-device mesh
  it runs inside `jax.shard_map`: each device attends its own rows and heads (attention
  never mixes either), laid out as the logical-axis rules shard them, and is told the
  global index of its first row and head (its dropout masks hash global indices, so
  they do not depend on the layout). Lengths and the head dimension stay whole.
  """
  # The table, when there is one, goes last: one shard_map for both cases.
  tables = () if relative is None else (relative,)

  def offset(axes: tuple[str, ...], size: int):
    return jax.lax.axis_index(axes) * size if axes else 0

  specs = _kernel_specs()
  if specs is None:
    return kernel(query, key, value, relative, query_ids, key_ids, seed, 0, 0)
  mesh, batch, heads = specs

  def on_device(q, k, v, q_ids, k_ids, s, *table):
    return kernel(q, k, v, table[0] if table else None, q_ids, k_ids, s,
                  offset(batch, q.shape[0]), offset(heads, q.shape[1]))

  rows = jax.sharding.PartitionSpec(batch or None, heads or None, None, None)
  ids = jax.sharding.PartitionSpec(batch or None, None)
  table_spec = jax.sharding.PartitionSpec(None, heads or None, None, None)
  return jax.shard_map(
      on_device, mesh=mesh,
      in_specs=(rows, rows, rows, ids, ids, jax.sharding.PartitionSpec(),
                *(table_spec for _ in tables)),
      out_specs=rows, check_vma=False,
  )(query, key, value, query_ids, key_ids, seed, *tables)


def dropout_seed(rng: Array) -> Array:
  """The int32 seed of one call's in-kernel dropout masks, drawn from a flax rng."""
  return jax.lax.bitcast_convert_type(jax.random.bits(rng, (), jnp.uint32), jnp.int32)


def pallas_tpu_attention(query: Array, key: Array, value: Array, bias: AttentionBias, *,
                         dropout_rate: float = 0.0, seed: Array | int = 0) -> Array:
  """The Pallas TPU flash attention (`aya_t5x.flash_dropout`) on [batch, heads, length, d]
  inputs, unscaled, with dropout at `dropout_rate` from the int32 `seed`."""
  _refuse_extra(bias, "pallas_tpu")
  q_len, k_len = query.shape[2], key.shape[2]
  flash_dropout.check_lengths(q_len, k_len)
  query_ids, key_ids = bias.segment_ids(q_len)

  def kernel(q, k, v, relative, q_ids, k_ids, s, batch_offset, head_offset):
    return flash_dropout.flash_attention(
        q, k, v, relative, q_ids, k_ids, causal=bias.causal, dropout_rate=dropout_rate,
        seed=s, batch_offset=batch_offset, head_offset=head_offset)

  return _per_device(kernel, query, key, value, bias.relative, query_ids, key_ids,
                     jnp.asarray(seed, jnp.int32))


def dropout_refusal(implementation: str, rate: float, *, scan_layers: bool) -> str | None:
  """Why `implementation` cannot apply attention dropout at `rate` here, or None."""
  if rate == 0 or implementation in ("xla", "pallas_tpu"):
    return None
  if implementation == "cudnn":
    refusal = cudnn_dropout_refusal()
    if refusal:
      return refusal
    if scan_layers:
      # One cuDNN call in a scanned layer runs forward over layers 0..L-1 and backward
      # over L-1..0, each advancing its own Philox offset: the backward pass would apply
      # another layer's mask.
      return ("cuDNN's per-call Philox offsets do not pair a scanned layer's forward and "
              "backward passes (they run in opposite orders); set "
              "MT5Config.scan_layers=False")
  return None


def choose_implementation(config: MT5Config, platform: str,
                          lengths: Sequence[int] = ()) -> MT5Config:
  """The config with 'auto' attention resolved for a `platform` ('tpu', 'gpu', 'cpu').

  The one place that chooses: 'pallas_tpu' on TPUs when the sequence `lengths` (inputs,
  targets; empty if unknown) tile its blocks; 'cudnn' on GPUs for bfloat16 or float16
  activations; 'xla' otherwise, and wherever the fused kernel cannot apply the
  configured attention dropout. An explicit choice is returned unchanged.
  """
  if config.attention_implementation != "auto":
    return config
  choice = "xla"
  if platform == "tpu" and not any(n % flash_dropout.BLOCK_K for n in lengths):
    choice = "pallas_tpu"
  elif platform in ("gpu", "cuda") and config.dtype in ("bfloat16", "float16"):
    choice = "cudnn"
  if dropout_refusal(choice, config.attention_dropout, scan_layers=config.scan_layers):
    choice = "xla"
  return dataclasses.replace(config, attention_implementation=choice)


def describe_choice(config: MT5Config, chosen: MT5Config, platform: str) -> str:
  """One line for the start of a run: the attention kernel and why."""
  how = (f"auto on {platform}" if config.attention_implementation == "auto" else "as set")
  return (f"attention {chosen.attention_implementation} ({how}; attention dropout "
          f"{chosen.attention_dropout})")


def fused_attention(implementation: str, query: Array, key: Array, value: Array,
                    bias: AttentionBias, *, dropout_rate: float = 0.0,
                    dropout_rng: Array | None = None, call_site: str = "") -> Array:
  """Attention by a fused kernel: 'cudnn' or 'pallas_tpu' (see the module docstring).

  With `dropout_rate` > 0, `dropout_rng` seeds the Pallas kernel's masks and `call_site`
  (the module path) the static seed of cuDNN's.
  """
  if dropout_rate > 0 and dropout_rng is None and implementation == "pallas_tpu":
    raise ValueError("Attention dropout needs a 'dropout' rng.")
  if implementation == "cudnn":
    return jax_nn_attention(query, key, value, bias, implementation="cudnn",
                            dropout_rate=dropout_rate, seed=cudnn_seed(call_site))
  if implementation == "pallas_tpu":
    seed = dropout_seed(dropout_rng) if dropout_rate > 0 else 0
    return pallas_tpu_attention(query, key, value, bias, dropout_rate=dropout_rate,
                                seed=seed)
  raise ValueError(f"Unknown fused attention implementation {implementation!r}; choose "
                   f"from {IMPLEMENTATIONS[1:]}.")
