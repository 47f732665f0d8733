"""Decoding from mT5: greedy, sampling and beam search over a key/value cache, and scoring.

Every decoder is jit-compiled with static shapes and returns padded fixed-length int32
tokens [batch, max_decode_length]: EOS is 1, padding 0, and everything after EOS is 0 (the
form `seqio.Evaluator` wants from a predict function). Decoding starts from token 0, mT5's
decoder start token, runs one cached step per token inside `jax.lax.while_loop`, and
stops as soon as every sequence has emitted EOS. `score` gives the teacher-forced
log-likelihood of given targets, for rank classification.

    options = DecodingOptions(method="beam", num_beams=4, max_decode_length=64)
    tokens = decode(params, config, encoder_input_tokens, options)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from aya_t5x.model import MT5
from aya_t5x.model_config import MT5Config

Array = jax.Array

PAD_ID = 0
EOS_ID = 1
# log(0) in beam scores: finite, so that sums and comparisons stay defined (T5X's value).
NEG_INF = -1.0e7
METHODS = ("greedy", "sample", "beam")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecodingOptions:
  """How `decode` turns inputs into outputs; hashable, so each setting compiles once.

  method: 'greedy', 'sample' (temperature, top_k, top_p) or 'beam' (num_beams,
    length_penalty_alpha).
  max_decode_length: the most new tokens, EOS included, and the width of the output.
  temperature: divides the logits before sampling; 0 samples greedily.
  top_k: sample among the k most likely tokens only; 0 keeps all.
  top_p: sample from the smallest set of most likely tokens whose probability reaches
    top_p (nucleus sampling); 1 keeps all. Applied after temperature and top_k.
  num_beams: beam width.
  length_penalty_alpha: beams are ranked by log-likelihood / ((5 + length) / 6) ** alpha
    (T5X's brevity penalty); 0 ranks by log-likelihood alone.
  """

  method: str = "greedy"
  max_decode_length: int = 256
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  num_beams: int = 4
  length_penalty_alpha: float = 0.6

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"DecodingOptions.method={self.method!r}; choose from {METHODS}.")
    checks = {
        "max_decode_length": self.max_decode_length >= 1,
        "temperature": self.temperature >= 0.0,
        "top_k": self.top_k >= 0,
        "top_p": 0.0 < self.top_p <= 1.0,
        "num_beams": self.num_beams >= 1,
        # The early-stopping bound of beam search holds only for a non-negative alpha.
        "length_penalty_alpha": self.length_penalty_alpha >= 0.0,
    }
    bad = ", ".join(f"{name}={getattr(self, name)!r}" for name, ok in checks.items() if not ok)
    if bad:
      raise ValueError(f"DecodingOptions: invalid {bad} (need max_decode_length >= 1, "
                       "temperature >= 0, top_k >= 0, 0 < top_p <= 1, num_beams >= 1, "
                       "length_penalty_alpha >= 0).")


# The recipe's open-ended generation (RECIPE.md section 5).
OPEN_ENDED = DecodingOptions(method="sample", temperature=0.9, top_p=0.8, max_decode_length=256)


def decode(params: dict, config: MT5Config, encoder_input_tokens: Array,
           options: DecodingOptions, rng: Array | None = None) -> Array:
  """Decodes int tokens [batch, in_length] (0 = padding) to int32 [batch, max_decode_length].

  Beam search returns its best beam; `rng` (a `jax.random.key`) is required for sampling.
  """
  if options.method == "greedy":
    return greedy_decode(params, config, encoder_input_tokens,
                         max_decode_length=options.max_decode_length)
  if options.method == "sample":
    if rng is None:
      raise ValueError("DecodingOptions(method='sample') needs an rng key: "
                       "decode(..., rng=jax.random.key(seed)).")
    return sample_decode(params, config, encoder_input_tokens, rng,
                         max_decode_length=options.max_decode_length,
                         temperature=options.temperature, top_k=options.top_k,
                         top_p=options.top_p)
  return beam_search(params, config, encoder_input_tokens, num_beams=options.num_beams,
                     max_decode_length=options.max_decode_length,
                     length_penalty_alpha=options.length_penalty_alpha).tokens[:, 0]


# ----------------------------------------------------------------------------------------
# The cached model
# ----------------------------------------------------------------------------------------


def _init_cache(params: dict, config: MT5Config, encoder_input_tokens: Array,
                max_decode_length: int) -> dict:
  """Encodes the inputs and builds the decoder cache (cross-attention keys projected once)."""
  module = MT5(config)
  encoded = module.apply({"params": params}, encoder_input_tokens, method=MT5.encode)
  no_tokens = jnp.zeros((encoder_input_tokens.shape[0], 0), jnp.int32)
  _, variables = module.apply(
      {"params": params}, encoded, encoder_input_tokens, no_tokens, decode=True,
      max_decode_length=max_decode_length, method=MT5.decode, mutable=["cache"])
  return variables["cache"]


class _LoopConstants(NamedTuple):
  """What every decoding step reads and none changes, in the layout the loop wants.

  On CPU, the decoder's kernels are stored [out, in], transposed once before the loop;
  `_step` transposes them back, and XLA folds that transpose into the dot's dimension
  numbers. Why: every step multiplies a few rows by each decoder kernel, reading the
  whole kernel from memory, and XLA's CPU dot reads a kernel faster when it contracts
  the kernel's minor dimension ([out, in], as PyTorch stores linear layers): mT5-small's
  512 x 32,128 output layer took 8.3 ms instead of 12.9 ms for 8 rows (one core).

  The barriers keep XLA from cancelling the transposes made here against those in
  `_step`. On GPU and TPU the layouts are left alone: XLA lays out their dots itself,
  and the copies would cost memory. (The cached keys and values are already stored
  heads-major, the order the attention products read; see `layers.MultiHeadAttention`.)
  """

  params: dict
  cross_attention: dict  # flattened cache path -> cached key or value


def _transposes_here() -> bool:
  return jax.default_backend() == "cpu"


def _is_kernel(path: tuple, x: Array) -> bool:
  return x.ndim == 2 and getattr(path[-1], "key", None) == "kernel"


def _is_cross_attention(path: tuple) -> bool:
  return "encoder_decoder_attention" in path


def _loop_constants(params: dict, cache: dict) -> tuple[_LoopConstants, dict]:
  """Splits the constants off the cache; returns them and the cache the loop carries."""
  flat = traverse_util.flatten_dict(cache)
  cross = {path: x for path, x in flat.items() if _is_cross_attention(path)}
  carried = traverse_util.unflatten_dict({p: x for p, x in flat.items() if p not in cross})
  if not _transposes_here():
    return _LoopConstants(params, cross), carried
  barrier = jax.lax.optimization_barrier
  decoder = jax.tree_util.tree_map_with_path(
      lambda path, x: barrier(x.T) if _is_kernel(path, x) else x, params["decoder"])
  return _LoopConstants({**params, "decoder": decoder}, cross), carried


def _step(constants: _LoopConstants, config: MT5Config, cache: dict,
          encoder_input_tokens: Array, tokens: Array, max_decode_length: int
          ) -> tuple[Array, dict]:
  """Logits [batch, vocab] after the previous tokens [batch], and the advanced cache.

  `cache` is the part of the cache the loop carries (see `_loop_constants`).
  """
  params, cross = constants.params, constants.cross_attention
  if _transposes_here():
    params = {**params, "decoder": jax.tree_util.tree_map_with_path(
        lambda path, x: x.T if _is_kernel(path, x) else x, params["decoder"])}
  full = traverse_util.unflatten_dict({**traverse_util.flatten_dict(cache), **cross})
  logits, variables = MT5(config).apply(
      {"params": params, "cache": full}, None, encoder_input_tokens, tokens[:, None],
      decode=True, max_decode_length=max_decode_length, method=MT5.decode,
      mutable=["cache"])
  advanced = traverse_util.flatten_dict(variables["cache"])
  advanced = traverse_util.unflatten_dict(
      {path: x for path, x in advanced.items() if not _is_cross_attention(path)})
  logits = logits[:, 0].astype(jnp.float32)
  return nn.with_logical_constraint(logits, ("batch", "vocab")), advanced


# ----------------------------------------------------------------------------------------
# Greedy and sampling
# ----------------------------------------------------------------------------------------


def _argmax(logits: Array) -> Array:
  """`jnp.argmax` over the last axis (the first of equal maxima), in two plain reductions.

  XLA's CPU argmax is one reduction over (value, index) pairs that does not vectorise:
  1.2 ms for 8 x 32,128 logits against 0.4 ms for this (one core). NaN logits give the
  last id instead of the NaN's.
  """
  vocab = logits.shape[-1]
  ids = jnp.arange(vocab, dtype=jnp.int32)
  best = jnp.max(logits, axis=-1, keepdims=True)
  return jnp.minimum(jnp.min(jnp.where(logits == best, ids, vocab), axis=-1), vocab - 1)


def _select_tokens(logits: Array, rng: Array, temperature: float, top_k: int,
                   top_p: float) -> Array:
  """Next tokens [batch] from logits [batch, vocab]: argmax, or a filtered sample."""
  if temperature == 0.0:
    return _argmax(logits)
  logits = logits / temperature
  if top_k == 0 and top_p >= 1.0:
    return jax.random.categorical(rng, logits)
  # Sort once (descending; equal logits keep the lower id first, like argmax); both
  # filters then act on ranks, and sampling a rank cannot leave the kept set.
  vocab = logits.shape[-1]
  values, ids = jax.lax.top_k(logits, min(top_k, vocab) if top_k else vocab)
  if top_p < 1.0:
    probs = jax.nn.softmax(values, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # The first token's mass_before is exactly 0, so the most likely token always stays.
    values = jnp.where(mass_before < top_p, values, -jnp.inf)
  rank = jax.random.categorical(rng, values)
  return jnp.take_along_axis(ids, rank[:, None], axis=-1)[:, 0]


class _SamplingState(NamedTuple):
  step: Array      # int32 scalar: the position being decoded
  tokens: Array    # int32 [batch, length]
  previous: Array  # int32 [batch]: the decoder input of this step
  ended: Array     # bool [batch]: EOS emitted
  cache: dict


def _sample_loop(params: dict, config: MT5Config, encoder_input_tokens: Array, rng: Array,
                 max_decode_length: int, temperature: float, top_k: int, top_p: float
                 ) -> Array:
  inputs = jnp.asarray(encoder_input_tokens, jnp.int32)
  batch = inputs.shape[0]
  constants, cache = _loop_constants(
      params, _init_cache(params, config, inputs, max_decode_length))

  def not_done(s: _SamplingState) -> Array:
    return (s.step < max_decode_length) & ~jnp.all(s.ended)

  def advance(s: _SamplingState) -> _SamplingState:
    logits, cache = _step(constants, config, s.cache, inputs, s.previous, max_decode_length)
    # Keys per step from one key: reproducible, and independent of how far others ran.
    new = _select_tokens(logits, jax.random.fold_in(rng, s.step), temperature, top_k, top_p)
    new = jnp.where(s.ended, PAD_ID, new).astype(jnp.int32)
    tokens = jax.lax.dynamic_update_slice(s.tokens, new[:, None], (0, s.step))
    tokens = nn.with_logical_constraint(tokens, ("batch", "length"))
    return _SamplingState(s.step + 1, tokens, new, s.ended | (new == EOS_ID), cache)

  initial = _SamplingState(
      step=jnp.zeros((), jnp.int32),
      tokens=jnp.full((batch, max_decode_length), PAD_ID, jnp.int32),
      previous=jnp.full((batch,), PAD_ID, jnp.int32),
      ended=jnp.zeros((batch,), jnp.bool_),
      cache=cache)
  return jax.lax.while_loop(not_done, advance, initial).tokens


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length"))
def greedy_decode(params: dict, config: MT5Config, encoder_input_tokens: Array, *,
                  max_decode_length: int) -> Array:
  """The most likely next token at every step; int32 [batch, max_decode_length]."""
  return _sample_loop(params, config, encoder_input_tokens, jax.random.key(0),
                      max_decode_length, 0.0, 0, 1.0)


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length", "temperature",
                                             "top_k", "top_p"))
def sample_decode(params: dict, config: MT5Config, encoder_input_tokens: Array, rng: Array, *,
                  max_decode_length: int, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> Array:
  """Ancestral sampling with temperature, top-k and top-p; int32 [batch, max_decode_length].

  The same `rng` gives the same tokens. Filters apply in Hugging Face's order:
  temperature, then top-k, then top-p on the renormalised remainder.
  """
  return _sample_loop(params, config, encoder_input_tokens, rng, max_decode_length,
                      temperature, top_k, top_p)


# ----------------------------------------------------------------------------------------
# Beam search
# ----------------------------------------------------------------------------------------


def brevity_penalty(length: Array | int, alpha: float) -> Array:
  """T5X's length normalisation ((5 + length) / 6) ** alpha; length counts EOS."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


class BeamSearchResult(NamedTuple):
  tokens: Array  # int32 [batch, num_beams, max_decode_length], best beam first
  scores: Array  # float32 [batch, num_beams]: log-likelihood / brevity_penalty(length)


class _BeamState(NamedTuple):
  step: Array             # int32 scalar
  alive: Array            # int32 [batch, beams, length]: sequences without EOS
  alive_log_probs: Array  # float32 [batch, beams], best first
  finished: Array         # int32 [batch, beams, length]
  finished_scores: Array  # float32 [batch, beams], best first; NEG_INF where empty
  cache: dict             # rows are example * beams + beam


def _reorder_beams(cache: dict, rows: Array) -> dict:
  """Gathers the self-attention caches of the surviving beams' parents.

  The cache index is shared, and the cross-attention keys (the same for every beam of
  one example) are loop constants, so only the self-attention buffers move.
  """
  def gather(path, x):
    if any(getattr(entry, "key", None) == "self_attention" for entry in path):
      return jnp.take(x, rows, axis=0)
    return x
  return jax.tree_util.tree_map_with_path(gather, cache)


@functools.partial(jax.jit, static_argnames=("config", "num_beams", "max_decode_length",
                                             "length_penalty_alpha"))
def beam_search(params: dict, config: MT5Config, encoder_input_tokens: Array, *,
                num_beams: int, max_decode_length: int, length_penalty_alpha: float = 0.6
                ) -> BeamSearchResult:
  """Beam search with T5X's brevity penalty; all beams with their scores, best first.

  Each step extends every live beam by every token and ranks the continuations by
  log-likelihood: those among the best num_beams that end in EOS join the finished beams
  (scored with the penalty), and the best num_beams without EOS stay alive. A sequence
  that reaches max_decode_length without EOS finishes there and competes on its score.
  Both rules are Hugging Face's (with length_penalty=0 and alpha=0 the results are the
  same); T5X also finishes EOS continuations ranked below num_beams, and ranks
  unfinished sequences below every finished one. The loop stops when no live beam can
  beat the worst finished one.
  """
  inputs = jnp.asarray(encoder_input_tokens, jnp.int32)
  batch, beams, length, vocab = inputs.shape[0], num_beams, max_decode_length, config.vocab_size
  cache = _init_cache(params, config, inputs, length)
  # Every beam of an example starts from the example's cache.
  cache = jax.tree.map(lambda x: jnp.repeat(x, beams, axis=0) if x.ndim else x, cache)
  inputs = jnp.repeat(inputs, beams, axis=0)
  highest_penalty = brevity_penalty(length, length_penalty_alpha)
  constants, cache = _loop_constants(params, cache)

  def gather_beams(x: Array, index: Array) -> Array:
    x = jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)
    return nn.with_logical_constraint(x, ("batch", None, "length")[:x.ndim])

  def not_done(s: _BeamState) -> Array:
    # Log-likelihoods only fall and, with alpha >= 0, the penalty is largest at full
    # length, so this bounds every score a live beam can still reach.
    best_reachable = s.alive_log_probs[:, 0] / highest_penalty
    return (s.step < length) & jnp.any(best_reachable > s.finished_scores[:, -1])

  def advance(s: _BeamState) -> _BeamState:
    previous = jax.lax.dynamic_index_in_dim(s.alive, jnp.maximum(s.step - 1, 0), axis=2,
                                            keepdims=False)
    previous = jnp.where(s.step == 0, PAD_ID, previous).reshape(batch * beams)
    logits, cache = _step(constants, config, s.cache, inputs, previous, length)
    log_probs = jax.nn.log_softmax(logits).reshape(batch, beams, vocab)
    candidates = (s.alive_log_probs[:, :, None] + log_probs).reshape(batch, beams * vocab)
    # Each beam has one EOS continuation, so 2 * beams candidates leave >= beams alive.
    top_log_probs, top_ids = jax.lax.top_k(candidates, 2 * beams)
    parents, new_tokens = top_ids // vocab, (top_ids % vocab).astype(jnp.int32)
    sequences = jax.lax.dynamic_update_slice(
        gather_beams(s.alive, parents), new_tokens[:, :, None], (0, 0, s.step))
    ends = new_tokens == EOS_ID
    # Only the best num_beams candidates are the beam; the others are spares that keep
    # num_beams alive, and finish nothing (with one beam this is greedy decoding).
    in_beam = jnp.arange(2 * beams) < beams
    finishes = in_beam & (ends | (s.step == length - 1))
    new_scores = jnp.where(
        finishes, top_log_probs / brevity_penalty(s.step + 1, length_penalty_alpha), NEG_INF)
    finished_scores, best = jax.lax.top_k(
        jnp.concatenate([s.finished_scores, new_scores], axis=1), beams)
    finished = gather_beams(jnp.concatenate([s.finished, sequences], axis=1), best)
    alive_log_probs, best = jax.lax.top_k(jnp.where(ends, NEG_INF, top_log_probs), beams)
    rows = gather_beams(parents, best) + jnp.arange(batch)[:, None] * beams
    return _BeamState(s.step + 1, gather_beams(sequences, best), alive_log_probs, finished,
                      finished_scores, _reorder_beams(cache, rows.reshape(-1)))

  # Only the first beam is live at the start, so that the first step does not fill the
  # beams with copies of the same continuations.
  first_only = jnp.where(jnp.arange(beams) == 0, 0.0, NEG_INF)
  initial = _BeamState(
      step=jnp.zeros((), jnp.int32),
      alive=jnp.full((batch, beams, length), PAD_ID, jnp.int32),
      alive_log_probs=jnp.broadcast_to(first_only, (batch, beams)),
      finished=jnp.full((batch, beams, length), PAD_ID, jnp.int32),
      finished_scores=jnp.full((batch, beams), NEG_INF, jnp.float32),
      cache=cache)
  final = jax.lax.while_loop(not_done, advance, initial)
  return BeamSearchResult(final.finished, final.finished_scores)


# ----------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------


class ScoreResult(NamedTuple):
  token_log_likelihoods: Array  # float32 [batch, length], 0 where the weight is 0
  log_likelihood: Array         # float32 [batch]: their sum


@functools.partial(jax.jit, static_argnames=("config",))
def score(params: dict, config: MT5Config, encoder_input_tokens: Array, target_tokens: Array,
          target_weights: Array | None = None) -> ScoreResult:
  """Teacher-forced log-likelihood of targets [batch, length] given the inputs.

  For rank classification: score every answer option as the target and pick the highest
  `log_likelihood`. Target id 0 is padding unless `target_weights` (float [batch, length],
  0 = ignore) says otherwise.
  """
  targets = jnp.asarray(target_tokens, jnp.int32)
  decoder_inputs = jnp.pad(targets[:, :-1], ((0, 0), (1, 0)), constant_values=PAD_ID)
  logits = MT5(config).apply({"params": params}, jnp.asarray(encoder_input_tokens, jnp.int32),
                             decoder_inputs)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  token_ll = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  weights = targets != PAD_ID if target_weights is None else target_weights > 0
  token_ll = nn.with_logical_constraint(jnp.where(weights, token_ll, 0.0), ("batch", "length"))
  return ScoreResult(token_ll, jnp.sum(token_ll, axis=-1))
