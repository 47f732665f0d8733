"""aya_t5x.model against the reference: Hugging Face transformers' MT5ForConditionalGeneration."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from aya_t5x import layers, losses, model, testing
from aya_t5x.checkpoints import hf
from aya_t5x.testing.models import hf_reference_model, hf_state_dict_numpy


def padded_batch(rng, vocab, batch, max_len, min_len=1):
  """Token batch [batch, max_len] with ids in [2, vocab), a final EOS (1), then padding."""
  tokens = np.zeros((batch, max_len), np.int64)
  for row in range(batch):
    n = rng.integers(min_len, max_len + 1)
    tokens[row, :n - 1] = rng.integers(2, vocab, n - 1)
    tokens[row, n - 1] = 1
  return tokens


def shift_right(targets):
  return np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)


@pytest.mark.parametrize("config", [testing.TINY, testing.TINY_UNEVEN], ids=["tiny", "uneven"])
def test_logits_and_loss_equal_hugging_face(config, rng):
  reference = hf_reference_model(config)
  params = hf.params_from_hf_state_dict(hf_state_dict_numpy(reference), config)
  # Long enough inputs that relative distances pass max_distance and use every bucket.
  inputs = padded_batch(rng, config.vocab_size, batch=4, max_len=150, min_len=3)
  targets = padded_batch(rng, config.vocab_size, batch=4, max_len=40, min_len=2)
  decoder_inputs = shift_right(targets)

  with torch.no_grad():
    out = reference(input_ids=torch.from_numpy(inputs),
                    attention_mask=torch.from_numpy(inputs != 0),
                    decoder_input_ids=torch.from_numpy(decoder_inputs),
                    labels=torch.from_numpy(np.where(targets == 0, -100, targets)))
  ref_logits = out.logits.numpy()

  logits = model.MT5(config).apply({"params": params}, jnp.asarray(inputs),
                                   jnp.asarray(decoder_inputs))
  real = targets != 0
  np.testing.assert_allclose(np.asarray(logits)[real], ref_logits[real], atol=1e-4, rtol=0)
  token_loss, _ = losses.token_cross_entropy(logits, jnp.asarray(targets))
  loss, _ = losses.normalized_loss(token_loss, jnp.asarray(real, jnp.float32),
                                   normalization="num_real_target_tokens")
  np.testing.assert_allclose(float(loss), out.loss.item(), atol=1e-4, rtol=0)


def test_relative_position_buckets_equal_hugging_face():
  from transformers.models.t5.modeling_t5 import T5Attention

  relative = np.arange(-1100, 1100)
  for bidirectional in (True, False):
    for buckets, distance in ((32, 128), (16, 20)):
      expected = T5Attention._relative_position_bucket(
          torch.from_numpy(relative), bidirectional=bidirectional,
          num_buckets=buckets, max_distance=distance).numpy()
      got = layers.relative_position_bucket(
          jnp.asarray(relative), bidirectional=bidirectional, num_buckets=buckets,
          max_distance=distance)
      np.testing.assert_array_equal(np.asarray(got), expected)


def test_packed_segments_do_not_attend_across(rng):
  """Two examples packed in one row give the logits each gives alone."""
  config = testing.TINY
  params = model.init_params(config, jax.random.key(1))
  net = model.MT5(config)
  a_in, b_in = rng.integers(2, config.vocab_size, 7), rng.integers(2, config.vocab_size, 5)
  a_out, b_out = rng.integers(2, config.vocab_size, 4), rng.integers(2, config.vocab_size, 6)

  def alone(x, y):
    return net.apply({"params": params}, jnp.asarray(x)[None],
                     jnp.asarray(shift_right(y[None])))[0]

  def seg(lengths, width):
    ids = np.zeros(width, np.int32)
    pos = np.zeros(width, np.int32)
    start = 0
    for i, n in enumerate(lengths):
      ids[start:start + n] = i + 1
      pos[start:start + n] = np.arange(n)
      start += n
    return ids[None], pos[None]

  packed_in = np.concatenate([a_in, b_in, [0, 0]])[None]
  dec_in = np.concatenate([shift_right(a_out[None])[0], shift_right(b_out[None])[0], [0]])
  enc_seg, enc_pos = seg([7, 5], 14)
  dec_seg, dec_pos = seg([4, 6], 11)
  packed = net.apply({"params": params}, jnp.asarray(packed_in), jnp.asarray(dec_in[None]),
                     encoder_segment_ids=jnp.asarray(enc_seg),
                     decoder_segment_ids=jnp.asarray(dec_seg),
                     encoder_positions=jnp.asarray(enc_pos),
                     decoder_positions=jnp.asarray(dec_pos))[0]
  np.testing.assert_allclose(packed[:4], alone(a_in, a_out), atol=1e-5)
  np.testing.assert_allclose(packed[4:10], alone(b_in, b_out), atol=1e-5)


def test_parameters_carry_t5x_names_and_logical_axes():
  axes = model.param_logical_axes(testing.TINY)
  assert tuple(axes["token_embedder"]["embedding"]) == ("vocab", "embed")
  layer = axes["encoder"]["layers_0"]
  assert tuple(layer["attention"]["query"]["kernel"]) == ("embed", "joined_kv")
  assert tuple(layer["attention"]["out"]["kernel"]) == ("joined_kv", "embed")
  assert tuple(layer["mlp"]["wi_1"]["kernel"]) == ("embed", "mlp")
  assert tuple(axes["encoder"]["relpos_bias"]["rel_embedding"]) == ("heads", "relpos_buckets")
  assert tuple(axes["decoder"]["logits_dense"]["kernel"]) == ("embed", "vocab")
  assert set(axes["decoder"]["layers_0"]) == {
      "pre_self_attention_layer_norm", "self_attention", "pre_cross_attention_layer_norm",
      "encoder_decoder_attention", "pre_mlp_layer_norm", "mlp"}
  # Every leaf has one logical name per dimension.
  shapes = model.param_shapes(testing.TINY)
  for spec, shape in zip(jax.tree.leaves(axes, is_leaf=lambda x: isinstance(
      x, jax.sharding.PartitionSpec)), jax.tree.leaves(shapes)):
    assert len(spec) == len(shape.shape) and all(spec)


def attention_logit_operand_dtypes(fn, *args) -> set[tuple[str, str]]:
  """The operand dtypes of every query-key product in `fn`'s program.

  A product is found by its output: [batch, heads, query length, key length] in float32,
  with both lengths among the test's (12 and 6, unlike d_kv = 8); the program is walked
  into its sub-programs (jit, remat, custom derivatives).
  """
  found = set()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        out = eqn.outvars[0].aval
        if (out.ndim == 4 and out.dtype == jnp.float32 and out.shape[1] == testing.TINY.num_heads
            and set(out.shape[2:]) <= {12, 6}):
          found.add(tuple(str(v.aval.dtype) for v in eqn.invars))
      for value in eqn.params.values():
        for sub in value if isinstance(value, (list, tuple)) else [value]:
          inner = getattr(sub, "jaxpr", sub)
          if hasattr(inner, "eqns"):
            walk(inner)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


@pytest.mark.parametrize("float32_attention_logits", [True, False])
def test_bfloat16_activations_stay_close_to_float32(rng, float32_attention_logits):
  import dataclasses
  config = testing.TINY
  params = model.init_params(config, jax.random.key(2))
  inputs = jnp.asarray(padded_batch(rng, config.vocab_size, 2, 12))
  dec = jnp.asarray(shift_right(padded_batch(rng, config.vocab_size, 2, 6)))
  f32 = model.MT5(config).apply({"params": params}, inputs, dec)
  bf16_model = model.MT5(dataclasses.replace(
      config, dtype="bfloat16", float32_attention_logits=float32_attention_logits))
  bf16 = bf16_model.apply({"params": params}, inputs, dec)
  # Logits stay in the activation dtype (no float32 copy of a 250k-wide tensor).
  assert bf16.dtype == jnp.bfloat16 and f32.dtype == jnp.float32
  bf16 = bf16.astype(jnp.float32)
  assert jnp.max(jnp.abs(bf16 - f32)) < 0.1 * jnp.max(jnp.abs(f32))
  assert jnp.max(jnp.abs(bf16 - f32)) > 0  # the setting really changed the compute
  # What the setting decides: queries and keys enter their product in float32, or in
  # bfloat16 (accumulated in float32 either way). Encoder, decoder and cross attention.
  operands = attention_logit_operand_dtypes(
      lambda p, i, d: bf16_model.apply({"params": p}, i, d), params, inputs, dec)
  expected = "float32" if float32_attention_logits else "bfloat16"
  assert operands == {(expected, expected)}
  assert attention_logit_operand_dtypes(  # the float32 model, for the finder itself
      lambda p, i, d: model.MT5(config).apply({"params": p}, i, d), params, inputs, dec) == {
          ("float32", "float32")}


def test_dropout_only_with_rng_and_flag(rng):
  import dataclasses
  config = dataclasses.replace(testing.TINY, dropout_rate=0.5)
  params = model.init_params(config, jax.random.key(3))
  net = model.MT5(config)
  inputs = jnp.asarray(padded_batch(rng, config.vocab_size, 2, 10))
  dec = jnp.asarray(shift_right(padded_batch(rng, config.vocab_size, 2, 6)))
  a = net.apply({"params": params}, inputs, dec)
  b = net.apply({"params": params}, inputs, dec)
  c = net.apply({"params": params}, inputs, dec, enable_dropout=True,
                rngs={"dropout": jax.random.key(0)})
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_config_rejects_bad_values():
  with pytest.raises(ValueError, match="mlp_activations"):
    model.MT5Config(d_model=8, num_heads=1, d_ff=8, num_encoder_layers=1,
                    num_decoder_layers=1, mlp_activations=("gleu", "linear"))
  with pytest.raises(ValueError, match="d_model"):
    model.MT5Config(d_model=0, num_heads=1, d_ff=8, num_encoder_layers=1,
                    num_decoder_layers=1)


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_rematerialised_gradients_equal_plain_ones(policy, rng):
  import dataclasses
  config = dataclasses.replace(testing.TINY, dropout_rate=0.1)
  params = model.init_params(config, jax.random.key(4))
  inputs = jnp.asarray(padded_batch(rng, config.vocab_size, 2, 10))
  targets_np = padded_batch(rng, config.vocab_size, 2, 6)
  targets, decoder_inputs = jnp.asarray(targets_np), jnp.asarray(shift_right(targets_np))

  def loss(cfg):
    def fn(p):
      logits = model.MT5(cfg).apply({"params": p}, inputs, decoder_inputs,
                                    enable_dropout=True, rngs={"dropout": jax.random.key(9)})
      return losses.token_cross_entropy(logits, targets)[0].sum()
    return jax.jit(jax.grad(fn))(params)

  plain = loss(config)
  remat = loss(dataclasses.replace(config, remat_policy=policy))
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(remat)):
    np.testing.assert_allclose(a, b, atol=1e-6)
