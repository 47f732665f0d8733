"""Each attention implementation equals the XLA reference, forward and gradients.

Pallas runs in interpret mode on CPU; cuDNN cannot run here, so its argument plumbing
(`attention.jax_nn_attention`) is checked through jax's own reference implementation
of the same call (`implementation='xla'`), and its kernel is left to the GPU check.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from aya_t5x import attention, flash_dropout, model, optim, partitioning, testing, train_step
from aya_t5x.model_config import MT5Config
from aya_t5x.testing.packed_batches import packed_batch


def pallas(query, key, value, bias):
  return attention.pallas_tpu_attention(query, key, value, bias)


def jax_nn(query, key, value, bias):
  return attention.jax_nn_attention(query, key, value, bias, implementation="xla")


def reference(query, key, value, bias):
  logits = jnp.einsum("bhqd,bhkd->bhqk", query, key) + bias.additive(query.shape[2])
  return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits, axis=-1), value)


def _case(kind: str, rng):
  """(q, k, v, relative table and its expansion, bias builder, valid query mask)."""
  # The Pallas kernel's segment ids come in blocks of 128 keys.
  batch, heads, d, q_len = 2, 2, 8, 128
  k_len = 256 if kind == "cross" else q_len
  ids = packed_batch(int(rng.integers(100)), batch=batch, inputs=k_len, targets=q_len)
  query_ids, key_ids = ids["decoder_segment_ids"], ids["encoder_segment_ids"]
  if kind != "cross":
    key_ids = query_ids
  arrays = [jnp.asarray(rng.normal(size=(batch, heads, n, d)), jnp.float32)
            for n in (q_len, k_len, k_len)]
  relative = (None if kind == "cross" else
              jnp.asarray(rng.normal(size=(1, heads, q_len, k_len)), jnp.float32))
  packed = kind != "padded"
  key_valid = jnp.asarray(key_ids > 0)
  if kind == "padded":  # unpacked rows, padding at the end
    key_valid = jnp.asarray(np.arange(k_len)[None] < np.array([[k_len - 5], [k_len]]))

  def bias(rel):
    return attention.AttentionBias(
        relative=rel, key_valid=key_valid,
        query_segment_ids=jnp.asarray(query_ids) if packed else None,
        key_segment_ids=jnp.asarray(key_ids) if packed else None, causal=kind == "causal")

  query_valid = (query_ids > 0) if packed else np.ones((batch, q_len), bool)
  return arrays, relative, bias, jnp.asarray(query_valid)[:, None, :, None]


# Interpret-mode Pallas is slow on CPU: three cases cover its segment ids (packed, causal),
# a relative bias absent and unequal lengths (cross), and unpacked padding.
@pytest.mark.parametrize("implementation,kind", [
    *((pallas, kind) for kind in ("causal", "cross", "padded")),
    *((jax_nn, kind) for kind in ("causal", "bidirectional", "cross", "padded"))])
def test_fused_attention_equals_xla_forward_and_gradients(implementation, kind):
  rng = np.random.default_rng(len(kind))
  (query, key, value), relative, bias, query_valid = _case(kind, rng)
  cotangent = jnp.asarray(rng.normal(size=query.shape), jnp.float32)

  def loss(fn, q, k, v, rel):
    # Padded query rows attend differently per kernel and are ignored downstream.
    return jnp.sum(fn(q, k, v, bias(rel)) * cotangent * query_valid)

  args = (query, key, value, relative)
  argnums = (0, 1, 2) if relative is None else (0, 1, 2, 3)
  # Interpret mode for the backward pass's kernels too (traced after the forward).
  with pltpu.force_tpu_interpret_mode():
    got = jax.value_and_grad(lambda *a: loss(implementation, *a), argnums)(*args)
  want = jax.value_and_grad(lambda *a: loss(reference, *a), argnums)(*args)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for name, g, w in zip(("query", "key", "value", "relative"), got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("preset", ["megatron", "data_parallel"])
def test_pallas_attention_runs_per_device_on_a_sharded_mesh(preset):
  # Rows over 'data' and (megatron) heads over 'model': the kernel runs inside a
  # shard_map on each device's block and must give the unsharded reference.
  rng = np.random.default_rng(7)
  (query, key, value), relative, bias, query_valid = _case("causal", rng)
  cotangent = jnp.asarray(rng.normal(size=query.shape), jnp.float32)
  part = partitioning.Partitioner(num_partitions=2,
                                  logical_axis_rules=partitioning.preset_rules(preset))
  mesh = part.mesh(jax.devices()[:4])

  def loss(fn, q, k, v, rel):
    return jnp.sum(fn(q, k, v, bias(rel)) * cotangent * query_valid)

  args = (query, key, value, relative)
  grad = jax.jit(jax.value_and_grad(lambda *a: loss(pallas, *a), (0, 1, 2, 3)))
  with pltpu.force_tpu_interpret_mode(), jax.set_mesh(mesh), part.rules_context():
    lowered = grad.lower(*args)
    got = grad(*args)
  assert "shard_map" in lowered.as_text() or "sdy.manual_computation" in lowered.as_text()
  want = jax.value_and_grad(lambda *a: loss(reference, *a), (0, 1, 2, 3))(*args)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for name, g, w in zip(("query", "key", "value", "relative"), got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def test_configuration_errors_name_the_fix():
  base = dict(vocab_size=64, d_model=16, num_heads=2, d_ff=32, num_encoder_layers=1,
              num_decoder_layers=1)
  with pytest.raises(ValueError, match="choose from"):
    MT5Config(**base, attention_implementation="flash")
  with pytest.raises(ValueError, match="needs bfloat16 or float16"):
    MT5Config(**base, attention_implementation="cudnn")
  with pytest.raises(ValueError, match="attention_dropout_rate must be in"):
    MT5Config(**base, attention_dropout_rate=1.0)
  assert MT5Config(**base, dropout_rate=0.1).attention_dropout == 0.1
  assert MT5Config(**base, dropout_rate=0.1, attention_dropout_rate=0.0).attention_dropout == 0
  # cuDNN's dropout cannot pair a scanned layer's forward and backward masks: refused
  # while training, with the setting and the fix named; deterministic passes run.
  config = MT5Config(**base, attention_implementation="cudnn", dtype="bfloat16",
                     dropout_rate=0.1, scan_layers=True)
  tokens = jnp.ones((1, 4), jnp.int32)
  params = model.init_params(config, jax.random.key(0))
  with pytest.raises(ValueError, match=r"cannot apply MT5Config.attention_dropout_rate=0.1.*"
                     r"scan_layers=False.*attention_dropout_rate=0.0"):
    model.MT5(config).apply({"params": params}, tokens, tokens, enable_dropout=True,
                            rngs={"dropout": jax.random.key(1)})


def test_cudnn_dropout_needs_a_jax_that_takes_it(monkeypatch):
  assert attention.cudnn_dropout_refusal() is None  # jax 0.10.2, the pinned version
  monkeypatch.setattr(jax, "__version_info__", (0, 4, 9))
  assert "needs jax >= 0.4.31" in attention.cudnn_dropout_refusal()
  assert attention.dropout_refusal("cudnn", 0.1, scan_layers=False)
  assert attention.dropout_refusal("cudnn", 0.0, scan_layers=True) is None
  assert attention.dropout_refusal("pallas_tpu", 0.1, scan_layers=True) is None


@pytest.mark.parametrize("platform,dtype,scan,rate,want", [
    ("tpu", "bfloat16", True, 0.1, "pallas_tpu"),
    ("tpu", "float32", False, 0.0, "pallas_tpu"),
    ("gpu", "bfloat16", False, 0.1, "cudnn"),
    ("gpu", "float32", False, 0.0, "xla"),       # cuDNN takes bf16/fp16 only
    ("gpu", "bfloat16", True, 0.1, "xla"),       # cuDNN dropout refused under scan
    ("gpu", "bfloat16", True, 0.0, "cudnn"),
    ("cpu", "bfloat16", False, 0.1, "xla")])
def test_auto_chooses_the_platforms_fused_kernel(platform, dtype, scan, rate, want):
  config = dataclasses.replace(testing.TINY, attention_implementation="auto", dtype=dtype,
                               scan_layers=scan, dropout_rate=rate)
  assert attention.choose_implementation(config, platform).attention_implementation == want
  explicit = dataclasses.replace(config, attention_implementation="xla")
  assert attention.choose_implementation(explicit, platform) is explicit


def test_cudnn_call_gets_layout_masks_rate_and_a_seed_per_call_site(monkeypatch):
  # The internal cuDNN function cannot run here: a stand-in computes attention from
  # exactly the arguments it is given (jax.nn's reference), and records them.
  from jax._src.cudnn import fused_attention_stablehlo as cudnn

  calls = []

  def stand_in(query, key, value, bias, mask, q_seqlen, kv_seqlen, *, scale, mask_type,
               seed, dropout_rate, qkv_layout):
    calls.append(dict(mask_type=mask_type, seed=seed, rate=dropout_rate,
                      layout=qkv_layout, lengths=kv_seqlen is not None))
    assert qkv_layout == "BNTH" and scale == 1.0
    out = jax.nn.dot_product_attention(
        *(jnp.swapaxes(x, 1, 2) for x in (query, key, value)), bias=bias, mask=mask,
        scale=1.0, is_causal=mask_type == cudnn.MaskType.CAUSAL,
        key_value_seq_lengths=kv_seqlen, implementation="xla")
    return jnp.swapaxes(out, 1, 2)

  monkeypatch.setattr(cudnn, "dot_product_attention", stand_in)
  rng = np.random.default_rng(3)
  for kind, mask_type in (("causal", cudnn.MaskType.CAUSAL),
                          ("padded", cudnn.MaskType.PADDING),
                          ("cross", cudnn.MaskType.NO_MASK)):
    (query, key, value), relative, bias, query_valid = _case(kind, rng)
    got = attention.fused_attention("cudnn", query, key, value, bias(relative),
                                    call_site="decoder/layers_0/self_attention")
    want = reference(query, key, value, bias(relative))
    np.testing.assert_allclose(got * query_valid, want * query_valid, rtol=1e-5, atol=1e-6)
    assert calls[-1]["mask_type"] == mask_type and calls[-1]["rate"] == 0
  attention.fused_attention("cudnn", query, key, value, bias(relative), dropout_rate=0.1,
                            call_site="decoder/layers_1/self_attention")
  assert calls[-1]["rate"] == 0.1
  assert calls[-1]["seed"] != calls[-2]["seed"]  # another layer, another Philox stream
  assert calls[-2]["seed"] == attention.cudnn_seed("decoder/layers_0/self_attention")


# --------------------------------------------------------------------------------------
# The Pallas kernel with dropout (aya_t5x.flash_dropout)
# --------------------------------------------------------------------------------------


def test_pallas_kernel_at_rate_0_equals_jax_flash_attention():
  # The kernel the pallas_tpu path ran before this one: jax's own flash attention.
  from jax.experimental.pallas.ops.tpu import flash_attention as flash

  rng = np.random.default_rng(11)
  (query, key, value), relative, bias, query_valid = _case("causal", rng)
  cotangent = jnp.asarray(rng.normal(size=query.shape), jnp.float32)
  query_ids, key_ids = bias(relative).segment_ids(query.shape[2])

  def jax_flash(q, k, v, rel):
    blocks = flash.BlockSizes(
        block_q=128, block_k_major=128, block_k=128, block_b=1, block_q_major_dkv=128,
        block_k_major_dkv=128, block_k_dkv=128, block_q_dkv=128, block_k_major_dq=128,
        block_k_dq=128, block_q_dq=128)
    return flash.flash_attention(
        q, k, v, ab=jnp.broadcast_to(rel, q.shape[:3] + (k.shape[2],)),
        segment_ids=flash.SegmentIds(q=query_ids, kv=key_ids), causal=True, sm_scale=1.0,
        block_sizes=blocks)

  def ours(q, k, v, rel):
    return flash_dropout.flash_attention(q, k, v, rel, query_ids, key_ids, causal=True)

  def loss(fn):
    return lambda *a: jnp.sum(fn(*a) * cotangent * query_valid)

  with pltpu.force_tpu_interpret_mode():
    got = jax.value_and_grad(loss(ours), (0, 1, 2, 3))(query, key, value, relative)
    want = jax.value_and_grad(loss(jax_flash), (0, 1, 2, 3))(query, key, value, relative)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for name, g, w in zip(("query", "key", "value", "relative"), got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def masked_reference(query, key, value, bias, *, rate, seed, batch_offset=0):
  """Plain jnp attention with dropout, its keep mask recomputed from the kernel's hash."""
  batch, heads, q_len, _ = query.shape
  k_len = key.shape[2]
  logits = jnp.einsum("bhqd,bhkd->bhqk", query, key) + bias.additive(q_len)
  weights = jax.nn.softmax(logits, axis=-1)
  keep = flash_dropout.keep_mask(
      jnp.int32(seed), batch_offset + jnp.arange(batch)[:, None, None, None],
      jnp.arange(heads)[None, :, None, None], jnp.arange(q_len)[None, None, :, None],
      jnp.arange(k_len)[None, None, None, :], rate)
  weights = jnp.where(keep, weights / (1 - rate), 0.0)
  return jnp.einsum("bhqk,bhkd->bhqd", weights, value)


@pytest.mark.parametrize("kind", ["causal", "cross", "padded"])
def test_pallas_dropout_equals_the_reference_with_the_same_mask(kind):
  rng = np.random.default_rng(20 + len(kind))
  (query, key, value), relative, bias, query_valid = _case(kind, rng)
  cotangent = jnp.asarray(rng.normal(size=query.shape), jnp.float32)
  rate, seed = 0.3, -123456789

  def loss(fn, q, k, v, rel):
    return jnp.sum(fn(q, k, v, bias(rel)) * cotangent * query_valid)

  def kernel(q, k, v, b):
    return attention.pallas_tpu_attention(q, k, v, b, dropout_rate=rate, seed=seed)

  def ref(q, k, v, b):
    return masked_reference(q, k, v, b, rate=rate, seed=seed)

  args = (query, key, value, relative)
  argnums = (0, 1, 2) if relative is None else (0, 1, 2, 3)
  with pltpu.force_tpu_interpret_mode():
    got = jax.value_and_grad(lambda *a: loss(kernel, *a), argnums)(*args)
  want = jax.value_and_grad(lambda *a: loss(ref, *a), argnums)(*args)
  undropped = jax.value_and_grad(lambda *a: loss(reference, *a), argnums)(*args)
  assert abs(float(want[0] - undropped[0])) > 1e-2  # the mask matters at this rate
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for name, g, w in zip(("query", "key", "value", "relative"), got[1], want[1]):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def test_keep_rate_is_one_minus_p_and_masks_differ_by_seed_row_and_head():
  rate, n = 0.1, 4 * 512 * 512
  positions = jnp.arange(512)

  def mask(seed, batch, head):
    return np.asarray(flash_dropout.keep_mask(
        jnp.int32(seed), jnp.int32(batch), jnp.int32(head), positions[:, None],
        positions[None, :], rate))

  masks = [mask(7, 0, 0), mask(8, 0, 0), mask(7, 1, 0), mask(7, 0, 1)]
  kept = np.mean(np.stack(masks))
  sigma = np.sqrt(rate * (1 - rate) / n)
  assert abs(kept - (1 - rate)) < 3 * sigma, (kept, sigma)
  # Another seed, row or head: independent masks agree on p^2 + (1-p)^2 of positions.
  agree = rate**2 + (1 - rate) ** 2
  for other in masks[1:]:
    assert abs(np.mean(masks[0] == other) - agree) < 0.01
  # Within one mask, rows and columns are not copies of each other.
  assert not np.array_equal(masks[0][0], masks[0][1])
  assert not np.array_equal(masks[0][:, 0], masks[0][:, 1])


def test_sharded_dropout_kernel_draws_the_global_mask_on_each_device():
  # Rows over 'data' and heads over 'model': each device hashes global indices, so the
  # sharded result equals the unsharded reference, and no two devices share a mask.
  rng = np.random.default_rng(9)
  (query, key, value), relative, bias, query_valid = _case("causal", rng)
  part = partitioning.Partitioner(num_partitions=2,
                                  logical_axis_rules=partitioning.preset_rules("megatron"))
  mesh = part.mesh(jax.devices()[:4])
  fn = jax.jit(lambda q, k, v, r: attention.pallas_tpu_attention(
      q, k, v, bias(r), dropout_rate=0.2, seed=5))
  with pltpu.force_tpu_interpret_mode(), jax.set_mesh(mesh), part.rules_context():
    got = fn(query, key, value, relative)
  want = masked_reference(query, key, value, bias(relative), rate=0.2, seed=5)
  np.testing.assert_allclose(got * query_valid, want * query_valid, rtol=1e-5, atol=1e-6)


SCHEDULE = optim.LearningRateSchedule(base_learning_rate=1e-2)
OPTIMIZER = optim.make_optimizer(SCHEDULE)


# Interpret-mode Pallas runs each kernel's grid step by step in Python: a model of one
# layer per stack and one head, two rows, keeps the trajectory test to seconds.
SMALL = dataclasses.replace(testing.TINY, num_heads=1, num_encoder_layers=1,
                            num_decoder_layers=1)


def trajectory(config, loss, steps=3):
  step = jax.jit(train_step.make_train_step(config, OPTIMIZER, SCHEDULE, loss, seed=0))
  params = model.init_params(dataclasses.replace(config, attention_implementation="xla"),
                             jax.random.key(0))
  state = train_step.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                opt_state=OPTIMIZER.init(params))
  losses, accuracies = [], []
  with pltpu.force_tpu_interpret_mode():
    for i in range(steps):
      state, metrics = step(state, packed_batch(i, batch=2, inputs=128, targets=128))
      losses.append(float(metrics["loss"]))
      accuracies.append(float(metrics["accuracy"]))
  return np.array(losses), np.array(accuracies)


def test_tiled_loss_and_flash_attention_follow_the_reference_trajectory():
  loss = train_step.LossConfig(normalization="average_per_sequence", z_loss=1e-3,
                               label_smoothing=0.1)
  want = trajectory(SMALL, loss)
  got = trajectory(dataclasses.replace(SMALL, attention_implementation="pallas_tpu"),
                   dataclasses.replace(loss, vocab_tile_size=48))
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  np.testing.assert_allclose(got[1], want[1])


@pytest.mark.slow  # two interpret-mode train step compiles
def test_dropout_seeds_differ_by_step_and_layer_and_repeat_after_a_resume(monkeypatch):
  # The kernel's seed comes from the layer's 'dropout' rng, itself from (seed, step):
  # record each call's seed as the jitted train step runs.
  seeds = []
  draw = attention.dropout_seed

  def recorded(rng):
    seed = draw(rng)
    jax.debug.callback(lambda s: seeds.append(int(s)), seed)
    return seed

  monkeypatch.setattr(attention, "dropout_seed", recorded)
  config = dataclasses.replace(SMALL, attention_implementation="pallas_tpu",
                               dropout_rate=0.1)
  loss = train_step.LossConfig()
  params = model.init_params(dataclasses.replace(config, attention_implementation="xla"),
                             jax.random.key(0))
  state = train_step.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                                opt_state=OPTIMIZER.init(params))
  batches = [packed_batch(i, batch=2, inputs=128, targets=128) for i in range(2)]

  def make_step():
    return jax.jit(train_step.make_train_step(config, OPTIMIZER, SCHEDULE, loss, seed=0))

  def run(state, batch, step):
    with pltpu.force_tpu_interpret_mode():
      new_state, metrics = step(state, batch)
      jax.effects_barrier()
    drawn = sorted(seeds)
    seeds.clear()
    return new_state, float(metrics["loss"]), drawn

  step = make_step()
  after_first, _, first = run(state, batches[0], step)
  _, second_loss, second = run(after_first, batches[1], step)
  # A resumed run: a fresh step function from the state the checkpoint held.
  restored = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), after_first)
  _, resumed_loss, resumed = run(restored, batches[1], make_step())
  # Encoder self-attention, decoder self- and cross-attention: three seeds per step.
  assert len(first) == 3 and len(set(first)) == 3
  assert not set(first) & set(second)
  assert resumed == second and resumed_loss == second_loss


@pytest.mark.parametrize("kind", ["causal", "padded", "bidirectional", "cross"])
def test_cudnn_call_at_rate_0_matches_what_jax_nn_passed_before(kind, monkeypatch):
  # The cudnn path called jax.nn.dot_product_attention(implementation='cudnn') before it
  # took dropout; at rate 0 the internal function must get the same arrays and mask type
  # (jax.nn in [batch, length, heads, d], ours in [batch, heads, length, d]).
  from jax._src.cudnn import fused_attention_stablehlo as cudnn
  from jax._src.nn import functions

  calls = []

  def record(layout_to_bnth):
    def stand_in(query, key, value, bias=None, mask=None, q_seqlen=None, kv_seqlen=None,
                 *, scale, mask_type, qkv_layout="BTNH", seed=42, dropout_rate=0.0,
                 **unused):
      arrays = [layout_to_bnth(x) if qkv_layout == "BTNH" else x for x in (query, key, value)]
      calls.append(dict(arrays=arrays, bias=bias, mask=mask, q_seqlen=q_seqlen,
                        kv_seqlen=kv_seqlen, scale=scale, mask_type=mask_type,
                        rate=dropout_rate))
      return query
    return stand_in

  rng = np.random.default_rng(len(kind) + 40)
  (query, key, value), relative, bias, _ = _case(kind, rng)
  monkeypatch.setattr(functions, "cudnn_dot_product_attention",
                      record(lambda x: jnp.swapaxes(x, 1, 2)))
  mask, lengths = attention._cudnn_mask(bias(relative), query.shape[2])
  jax.nn.dot_product_attention(
      *(jnp.swapaxes(x, 1, 2) for x in (query, key, value)), bias=relative, mask=mask,
      scale=1.0, is_causal=bias(relative).causal, key_value_seq_lengths=lengths,
      implementation="cudnn")
  monkeypatch.setattr(cudnn, "dot_product_attention", record(lambda x: x))
  attention.fused_attention("cudnn", query, key, value, bias(relative), call_site="x")
  before, now = calls
  for name in ("scale", "mask_type", "rate"):
    assert before[name] == now[name], name
  for a, b in zip(before["arrays"], now["arrays"]):
    np.testing.assert_array_equal(a, b)
  for name in ("bias", "mask", "q_seqlen", "kv_seqlen"):
    if before[name] is None:
      assert now[name] is None, name
    else:
      np.testing.assert_array_equal(before[name], now[name], err_msg=name)
