"""aya_t5x.decoding against Hugging Face `generate`, the teacher-forced pass and brute force."""

import dataclasses
import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from aya_t5x import decoding, model, testing
from aya_t5x.checkpoints import hf
from aya_t5x.testing.models import hf_reference_model, hf_state_dict_numpy
from tests.test_model import padded_batch, shift_right

MAX_LEN = 10


def reference_with_eos(config, inputs):
  """The random reference, with EOS given the output row of the token it emits most.

  A random model almost never emits EOS; after the swap greedy sequences end at
  different lengths, so stopping and padding are exercised.
  """
  reference = hf_reference_model(config)
  tokens = hf_generate(reference, inputs, MAX_LEN, do_sample=False)
  counts = np.bincount(tokens[:, 1:].ravel(), minlength=config.vocab_size)
  counts[:2] = 0
  frequent = int(np.argmax(counts))
  with torch.no_grad():
    weight = reference.lm_head.weight
    weight[[1, frequent]] = weight[[frequent, 1]]
  return reference


def hf_generate(reference, inputs, max_len, **kwargs):
  """Hugging Face `generate` as aya_t5x returns it: no start token, [batch, max_len].

  HF fills finished beams with EOS rather than padding (its fill value is
  `pad_token_id or eos_token_id`, and the pad id is 0), so everything after the first
  EOS is set to 0.
  """
  with torch.no_grad():
    out = reference.generate(
        input_ids=torch.from_numpy(inputs), attention_mask=torch.from_numpy(inputs != 0),
        max_new_tokens=max_len, decoder_start_token_id=0, eos_token_id=1, pad_token_id=0,
        **kwargs)
  sequences = getattr(out, "sequences", out).numpy()[:, 1:]
  sequences = np.pad(sequences, ((0, 0), (0, max_len - sequences.shape[1])))
  after_eos = np.cumsum(sequences == 1, axis=1) - (sequences == 1) > 0
  tokens = np.where(after_eos, 0, sequences)
  return (tokens, out.sequences_scores.numpy()) if hasattr(out, "sequences_scores") else tokens


def assert_padded_after_eos(tokens):
  tokens = np.asarray(tokens)
  assert tokens.dtype == np.int32
  after_eos = np.cumsum(tokens == 1, axis=-1) - (tokens == 1) > 0
  assert np.all(tokens[after_eos] == 0)


@functools.cache
def build(config):
  """(config, reference, params, inputs): a padded batch of 6 and the converted weights."""
  inputs = padded_batch(np.random.default_rng(0), config.vocab_size, 6, 11, 2)
  reference = reference_with_eos(config, inputs)
  params = hf.params_from_hf_state_dict(hf_state_dict_numpy(reference), config)
  return config, reference, params, inputs


@pytest.fixture(scope="module", params=[testing.TINY, testing.TINY_UNEVEN],
                ids=["tiny", "uneven"])
def setup(request):
  return build(request.param)


def greedy_of(setup):
  config, _, params, inputs = setup
  return np.asarray(decoding.greedy_decode(params, config, inputs, max_decode_length=MAX_LEN))


def test_greedy_equals_hugging_face(setup):
  config, reference, params, inputs = setup
  greedy = greedy_of(setup)
  expected = hf_generate(reference, inputs, MAX_LEN, do_sample=False, num_beams=1)
  np.testing.assert_array_equal(greedy, expected)
  options = decoding.DecodingOptions(method="greedy", max_decode_length=MAX_LEN)
  np.testing.assert_array_equal(decoding.decode(params, config, inputs, options), greedy)
  assert greedy.shape == (6, MAX_LEN)
  assert_padded_after_eos(greedy)
  # The batch exercises both ways to stop: EOS after some tokens, and the length limit.
  ends = (greedy == 1).any(axis=1)
  assert ends.any() and not ends.all() and (greedy[ends, 0] != 1).any()


@functools.partial(jax.jit, static_argnums=(1, 4))
def stepwise_and_full_logits(params, config, inputs, decoder_inputs, cache_length):
  """Logits of the cached path, one decoder token per call, and of the full pass."""
  net = model.MT5(config)
  encoded = net.apply({"params": params}, inputs, method=net.encode)
  call = functools.partial(net.apply, method=net.decode, decode=True,
                           max_decode_length=cache_length, mutable=["cache"])
  _, variables = call({"params": params}, encoded, inputs, decoder_inputs[:, :0])

  def step(cache, tokens):
    logits, variables = call({"params": params, "cache": cache}, None, inputs, tokens[:, None])
    return variables["cache"], logits[:, 0]

  _, logits = jax.lax.scan(step, variables["cache"], decoder_inputs.T)
  return jnp.transpose(logits, (1, 0, 2)), net.apply({"params": params}, inputs, decoder_inputs)


def test_cached_steps_equal_teacher_forced_pass(setup):
  config, _, params, inputs = setup
  decoder_inputs = shift_right(np.random.default_rng(2).integers(0, config.vocab_size, (6, 9)))
  # A cache longer than the targets: unwritten positions must stay invisible.
  stepped, full = stepwise_and_full_logits(params, config, inputs, decoder_inputs, 12)
  np.testing.assert_allclose(stepped, full, atol=1e-5, rtol=0)


def test_scores_equal_hugging_face_log_likelihoods(setup):
  config, reference, params, inputs = setup
  targets = padded_batch(np.random.default_rng(3), config.vocab_size, 6, 8, 1)
  with torch.no_grad():
    logits = reference(input_ids=torch.from_numpy(inputs),
                       attention_mask=torch.from_numpy(inputs != 0),
                       decoder_input_ids=torch.from_numpy(shift_right(targets))).logits
  expected = torch.log_softmax(logits, -1).gather(-1, torch.from_numpy(targets)[..., None])
  expected = np.where(targets != 0, expected[..., 0].numpy(), 0.0)
  got = decoding.score(params, config, inputs, targets)
  np.testing.assert_allclose(got.token_log_likelihoods, expected, atol=1e-4, rtol=0)
  np.testing.assert_allclose(got.log_likelihood, expected.sum(-1), atol=1e-4, rtol=0)


def test_beam_search_equals_hugging_face(setup):
  config, reference, params, inputs = setup
  # HF divides by length ** length_penalty, T5X by ((5 + length) / 6) ** alpha: the two
  # agree at 0; other alphas are checked against brute force below.
  expected, expected_scores = hf_generate(
      reference, inputs, MAX_LEN, num_beams=4, num_return_sequences=4, length_penalty=0.0,
      early_stopping=False, output_scores=True, return_dict_in_generate=True)
  got = decoding.beam_search(params, config, inputs, num_beams=4, max_decode_length=MAX_LEN,
                             length_penalty_alpha=0.0)
  # All four beams, best first, with their scores.
  np.testing.assert_array_equal(np.asarray(got.tokens).reshape(-1, MAX_LEN), expected)
  np.testing.assert_allclose(np.asarray(got.scores).ravel(), expected_scores, atol=1e-4, rtol=0)
  assert_padded_after_eos(got.tokens)
  # Finished beams of several lengths, and a sequence cut at the length limit.
  assert (got.tokens[:, 0] == 1).any(axis=1).any() and not (got.tokens == 1).any(-1).all()
  options = decoding.DecodingOptions(method="beam", num_beams=4, max_decode_length=MAX_LEN,
                                     length_penalty_alpha=0.0)
  np.testing.assert_array_equal(decoding.decode(params, config, inputs, options),
                                got.tokens[:, 0])


def test_one_beam_and_top_k_1_and_tiny_top_p_are_greedy():
  config, _, params, inputs = setup = build(testing.TINY)
  greedy = greedy_of(setup)
  one_beam = decoding.beam_search(params, config, inputs, num_beams=1,
                                  max_decode_length=MAX_LEN, length_penalty_alpha=0.0)
  np.testing.assert_array_equal(one_beam.tokens[:, 0], greedy)
  for top_k, top_p in ((1, 1.0), (0, 1e-6)):
    sampled = decoding.sample_decode(params, config, inputs, jax.random.key(0),
                                     max_decode_length=MAX_LEN, top_k=top_k, top_p=top_p)
    np.testing.assert_array_equal(sampled, greedy)


@functools.partial(jax.jit, static_argnums=(1,))
def log_probs_of(params, config, inputs, targets):
  logits = model.MT5(config).apply({"params": params}, inputs,
                                   jnp.pad(targets[:, :-1], ((0, 0), (1, 0))))
  return jax.nn.log_softmax(logits)


def sampling_probs(params, config, inputs, tokens, temperature):
  """The distributions the tokens were sampled from, before filtering [batch, length, vocab]."""
  log_probs = np.asarray(log_probs_of(params, config, inputs, tokens), np.float64) / temperature
  probs = np.exp(log_probs - log_probs.max(-1, keepdims=True))
  return probs / probs.sum(-1, keepdims=True)


def sampled_ranks(probs, tokens):
  """Each sampled token's probability rank and the mass of the tokens above it."""
  chosen = np.take_along_axis(probs, tokens[..., None], -1)
  above = probs > chosen
  # Up to and including EOS; the padding after it was not sampled.
  real = (np.cumsum(tokens == 1, axis=1) - (tokens == 1)) == 0
  return above.sum(-1)[real], np.where(above, probs, 0).sum(-1)[real]


def test_sampling_is_reproducible_and_respects_top_k_and_top_p():
  config, _, params, inputs = build(testing.TINY)
  many = np.repeat(inputs, 40, axis=0)
  sample = functools.partial(decoding.sample_decode, params, config, many,
                             max_decode_length=MAX_LEN, temperature=1.5, top_k=3)
  first = np.asarray(sample(jax.random.key(7)))
  np.testing.assert_array_equal(sample(jax.random.key(7)), first)
  assert not np.array_equal(sample(jax.random.key(8)), first)
  assert_padded_after_eos(first)
  probs = sampling_probs(params, config, many, first, 1.5)
  ranks, _ = sampled_ranks(probs, first)
  assert ranks.max() == 2 and np.all(np.bincount(ranks) > 50)  # only the top 3, all used


  options = dataclasses.replace(decoding.OPEN_ENDED, max_decode_length=MAX_LEN)
  nucleus = np.asarray(decoding.decode(params, config, many, options, rng=jax.random.key(9)))
  assert_padded_after_eos(nucleus)
  ranks, mass_above = sampled_ranks(
      sampling_probs(params, config, many, nucleus, options.temperature), nucleus)
  assert np.all(mass_above < options.top_p + 1e-5) and ranks.max() > 0
  with pytest.raises(ValueError, match="rng"):
    decoding.decode(params, config, many, options)


def test_sampling_draws_the_first_token_from_the_softmax_at_its_temperature():
  """4,000 first tokens per temperature against softmax(logits / T), token by token.

  Each token's count is binomial: its frequency lies within 5 standard deviations of the
  true probability (a false alarm over 128 tokens has odds below 1e-4; the keys are fixed,
  so the outcome is too). The two temperatures' distributions differ by far more than that
  bound, so the check tells them apart: each sample set fails the other temperature's.
  """
  config, _, params, inputs = build(testing.TINY)
  samples, temperatures = 4000, (0.5, 2.0)
  first_step = {t: sampling_probs(params, config, inputs[:1], np.zeros((1, 1), np.int32), t)[0, 0]
                for t in temperatures}

  def within_bound(frequencies, probs):
    return np.all(np.abs(frequencies - probs) <= 5 * np.sqrt(probs * (1 - probs) / samples)
                  + 1 / samples)

  for t in temperatures:
    tokens = np.asarray(decoding.sample_decode(
        params, config, np.repeat(inputs[:1], samples, 0), jax.random.key(3),
        max_decode_length=1, temperature=t))[:, 0]
    frequencies = np.bincount(tokens, minlength=config.vocab_size) / samples
    assert within_bound(frequencies, first_step[t]), t
    other = next(u for u in temperatures if u != t)
    assert not within_bound(frequencies, first_step[other]), (t, other)


def test_beam_search_finds_the_best_sequence_under_its_length_penalty():
  """Brute force on a 5-token vocabulary: every sequence of up to 3 tokens, scored exactly."""
  config = dataclasses.replace(testing.TINY, vocab_size=5)
  reference = hf_reference_model(config, seed=3)
  params = hf.params_from_hf_state_dict(hf_state_dict_numpy(reference), config)
  inputs = padded_batch(np.random.default_rng(4), config.vocab_size, 3, 7, 3)
  length, alpha = 3, 2.0
  candidates = [list(p) + [1] for n in range(length) for p in itertools.product(
      [0, 2, 3, 4], repeat=n)] + [list(p) for p in itertools.product([0, 2, 3, 4], repeat=3)]
  sequences = np.array([c + [0] * (length - len(c)) for c in candidates], np.int32)
  lengths = np.array([len(c) for c in candidates])
  weights = (np.arange(length)[None] < lengths[:, None]).astype(np.float32)
  n = len(candidates)
  scored = decoding.score(params, config, np.repeat(inputs, n, 0), np.tile(sequences, (3, 1)),
                          np.tile(weights, (3, 1))).log_likelihood
  log_likelihood = np.asarray(scored).reshape(3, n)
  # 20 beams keep every live prefix (4, then 16), and all 4 x 5 continuations of the second
  # step rank inside the beam, so the search is exhaustive: it must find the exact optimum.
  got = decoding.beam_search(params, config, inputs, num_beams=20, max_decode_length=length,
                             length_penalty_alpha=alpha)
  best = np.argmax(log_likelihood / ((5 + lengths) / 6) ** alpha, axis=1)
  assert np.any(best != np.argmax(log_likelihood, axis=1))  # the penalty changes the answer
  np.testing.assert_array_equal(got.tokens[:, 0], sequences[best])
  np.testing.assert_allclose(
      got.scores[:, 0], log_likelihood[np.arange(3), best] / ((5 + lengths[best]) / 6) ** alpha,
      atol=1e-4, rtol=0)


def test_options_reject_bad_values():
  with pytest.raises(ValueError, match="method"):
    decoding.DecodingOptions(method="nucleus")
  with pytest.raises(ValueError, match="top_p=0.0"):
    decoding.DecodingOptions(method="sample", top_p=0.0)
  with pytest.raises(ValueError, match="length_penalty_alpha=-1"):
    decoding.DecodingOptions(method="beam", length_penalty_alpha=-1.0)


def test_sharded_decoding_gives_the_same_tokens():
  """On a 4 x 2 (data, model) mesh with megatron-style rules the logical constraints apply."""
  config, _, params, inputs = setup = build(testing.TINY)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))
  rules = (("batch", "data"), ("heads", "model"), ("vocab", "model"), ("mlp", "model"),
           ("joined_kv", "model"), ("embed", None), ("length", None), ("kv", None))
  many = np.repeat(inputs, 4, axis=0)  # 24 rows divide over the 4-way data axis
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    tokens = decoding.greedy_decode(params, config, many, max_decode_length=MAX_LEN)
  assert tokens.sharding.spec[0] == "data"
  np.testing.assert_array_equal(tokens, np.repeat(greedy_of(setup), 4, axis=0))
