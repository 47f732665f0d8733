"""The cuDNN attention path's numbers on a GPU, before any speed figure is taken from it.

At dropout 0, `attention.fused_attention('cudnn', ...)` must equal the XLA reference (the
layer's own float32-logit attention on the same bfloat16 inputs): its output and the
gradients of q, k, v and the relative bias table, packed and unpacked, causal,
bidirectional and cross-attention. At dropout 0.1 there is no reference mask to compare
with, so three properties are checked instead:

  consistent masks  the output is linear in v, so sum(dO * out) must equal
                    sum(dV * v) with dV from the backward pass: true only when the
                    backward pass applies the forward pass's mask;
  scale             with v = 1 every row of dropout(P) v averages 1 (kept weights are
                    scaled by 1 / (1 - p));
  fresh masks       two executions of the same step draw different masks (XLA advances
                    each call's Philox offset), and two call sites (layers) differ.

One JSON line per case on stdout; exit status 1 if any check fails.

    python benchmarks/cudnn_check.py        # on a machine with a GPU
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from aya_t5x import attention
from aya_t5x.attention import AttentionBias

# bfloat16 has 8 bits of mantissa: errors relative to the largest value of each array.
TOLERANCE = 2e-2


def _case(kind: str, rng: np.random.Generator, *, batch=4, heads=8, d=64, length=512):
  """(q, k, v bfloat16, relative table or None, bias builder, valid query mask)."""
  k_len = 2 * length if kind.startswith("cross") else length
  packed = kind.endswith("packed")
  # Packed rows: three examples per row, then padding; unpacked rows: padding at the end.
  starts = np.sort(rng.choice(np.arange(1, length), size=(batch, 2), replace=False), axis=1)
  positions = np.arange(length)[None]
  query_ids = 1 + (positions >= starts[:, :1]) + (positions >= starts[:, 1:])
  query_ids = np.where(positions < length - 17, query_ids, 0).astype(np.int32)
  key_ids = query_ids if k_len == length else np.repeat(query_ids, 2, axis=1)
  valid_lengths = rng.integers(k_len // 2, k_len + 1, size=batch)
  key_valid = key_ids > 0 if packed else np.arange(k_len)[None] < valid_lengths[:, None]
  causal = kind.startswith("causal")
  if causal and not packed:
    key_valid = np.ones((batch, k_len), bool)
  # Queries scaled by 1/sqrt(d), as T5's initialisation folds it in: logits of order 1.
  q, k, v = (jnp.asarray(rng.normal(size=(batch, heads, n, d)) * scale, jnp.bfloat16)
             for n, scale in ((length, d**-0.5), (k_len, 1.0), (k_len, 1.0)))
  relative = (None if kind.startswith("cross") else
              jnp.asarray(rng.normal(size=(1, heads, length, k_len)), jnp.bfloat16))

  ids = (jnp.asarray(key_valid), jnp.asarray(query_ids) if packed else None,
         jnp.asarray(key_ids) if packed else None)

  # Every array goes into the jitted functions as an argument: captured as constants,
  # XLA would constant-fold the attention on the host.
  def bias(rel, key_valid, query_ids, key_ids):
    return AttentionBias(relative=rel, key_valid=key_valid, query_segment_ids=query_ids,
                         key_segment_ids=key_ids, causal=causal)

  valid = query_ids > 0 if packed else np.ones((batch, length), bool)
  return (q, k, v), relative, ids, bias, jnp.asarray(valid)[:, None, :, None]


def _reference(q, k, v, bias: AttentionBias):
  """The xla path's arithmetic (`MultiHeadAttention._xla_attention`), no dropout."""
  logits = jnp.einsum("bhqd,bhkd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32))
  logits = logits + bias.additive(q.shape[2])
  weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
  return jnp.einsum("bhqk,bhkd->bhqd", weights, v)


def _relative_error(got, want) -> float:
  got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
  return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-6))


def equal_at_rate_zero(kind: str, rng) -> dict:
  (q, k, v), relative, ids, bias, valid = _case(kind, rng)
  cotangent = jnp.asarray(rng.normal(size=q.shape), jnp.bfloat16)

  def loss(fn, q, k, v, rel, ids, cotangent, valid):
    out = fn(q, k, v, bias(rel, *ids))
    return jnp.sum((out * cotangent * valid).astype(jnp.float32))

  def cudnn(q, k, v, b):
    return attention.fused_attention("cudnn", q, k, v, b, call_site="check")

  argnums = (0, 1, 2) if relative is None else (0, 1, 2, 3)
  args = (q, k, v, relative, ids, cotangent, valid)
  got = jax.jit(jax.value_and_grad(lambda *a: loss(cudnn, *a), argnums))(*args)
  want = jax.jit(jax.value_and_grad(lambda *a: loss(_reference, *a), argnums))(*args)
  errors = {"loss": _relative_error(got[0], want[0])}
  for name, g, w in zip(("d_query", "d_key", "d_value", "d_relative"), got[1], want[1]):
    errors[name] = _relative_error(g, w)
  return {"check": "cudnn_equals_xla_at_dropout_0", "case": kind, "errors": errors,
          "passed": all(e < TOLERANCE for e in errors.values())}


def dropout_properties(kind: str, rng, rate: float = 0.1) -> dict:
  (q, k, v), relative, ids, bias, valid = _case(kind, rng)
  cotangent = jnp.asarray(rng.normal(size=q.shape), jnp.bfloat16)

  def attend(q, k, v, rel, ids, site="check/layers_0"):
    return attention.fused_attention("cudnn", q, k, v, bias(rel, *ids), dropout_rate=rate,
                                     call_site=site)

  def loss(v, q, k, rel, ids, cotangent, valid):
    terms = (attend(q, k, v, rel, ids) * cotangent * valid).astype(jnp.float32)
    return jnp.sum(terms), jnp.sqrt(jnp.sum(terms**2))

  # One execution: the forward and backward calls advance their offsets together.
  (value, norm), d_value = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      v, q, k, relative, ids, cotangent, valid)
  # Linear in v: <dO, W v> = <W^T dO, v>, with W the forward's dropped weights. Rounding
  # errors are a small fraction of the terms' norm; another mask would be a large one.
  pairing_terms = d_value.astype(jnp.float32) * v.astype(jnp.float32)
  scale = float(norm) + float(jnp.sqrt(jnp.sum(pairing_terms**2)))
  consistency = abs(float(value - jnp.sum(pairing_terms))) / max(scale, 1e-6)
  run = jax.jit(attend, static_argnames="site")
  row_sums = np.asarray(run(q, k, jnp.ones_like(v), relative, ids), np.float32)
  row_sums = row_sums[np.broadcast_to(np.asarray(valid), q.shape)]
  first, second = run(q, k, v, relative, ids), run(q, k, v, relative, ids)
  other_site = run(q, k, v, relative, ids, site="check/layers_1")
  facts = {"forward_backward_mismatch": consistency,
           "mean_row_sum_with_v_1": float(np.mean(row_sums)),
           "repeat_calls_differ": bool(jnp.any(first != second)),
           "call_sites_differ": bool(jnp.any(first != other_site))}
  passed = (consistency < 0.05 and abs(facts["mean_row_sum_with_v_1"] - 1) < 0.02
            and facts["repeat_calls_differ"] and facts["call_sites_differ"])
  return {"check": f"cudnn_dropout_{rate}", "case": kind, **facts, "passed": passed}


def main() -> int:
  if jax.default_backend() != "gpu":
    print(f"cudnn_check needs a GPU; this jax runs on {jax.default_backend()}.",
          file=sys.stderr)
    return 2
  rng = np.random.default_rng(0)
  failed = 0
  for kind in ("causal", "causal_packed", "bidirectional", "bidirectional_packed", "cross",
               "cross_packed"):
    for check in (equal_at_rate_zero, dropout_properties):
      try:
        record = check(kind, rng)
      except Exception as e:  # a refused shape is a failed check, reported as such
        record = {"check": check.__name__, "case": kind, "passed": False,
                  "error": f"{type(e).__name__}: {e}"[:500]}
      failed += not record["passed"]
      print(json.dumps(record), flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
