"""The reference model of DPO and IPO: precomputed log-probs written into the pairs, or a
frozen copy loaded beside the policy.

`write_reference_logprobs` scores every pair of a file with a reference checkpoint and
writes the file again with a `reference` field per record: the per-token log-probs of
the chosen and rejected targets (EOS included, never cut), the pair's digest (its texts)
and the reference's fingerprint (checkpoint parameters, model config, vocabulary and
the prompt length the encoder saw). Training refuses a record whose digest does not
match its texts, a file mixing fingerprints, and a run whose input length differs
from the one the fingerprint names (the prompt's truncation changes every log-prob).

`load_frozen_reference` loads the live reference for `PreferenceObjective(reference=
'live')`: the same architecture and vocabulary as the policy or a one-line refusal; its
parameters are placed with the policy's shardings and never enter the optimizer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aya_t5x.model_config import MT5Config
from aya_t5x.preference import pairs as pairs_lib
from aya_t5x.preference.pairs import ReferenceMismatchError

ARCHITECTURE_FIELDS = ("vocab_size", "d_model", "num_heads", "d_kv", "d_ff",
                       "num_encoder_layers", "num_decoder_layers",
                       "relative_attention_num_buckets", "relative_attention_max_distance")
_INPUTS = re.compile(r"/inputs=(\d+)$")


def check_same_architecture(policy: MT5Config, reference: MT5Config, source: str) -> None:
  for field in ARCHITECTURE_FIELDS:
    a, b = getattr(policy, field), getattr(reference, field)
    if a != b:
      raise ReferenceMismatchError(
          f"reference {source}: {field} is {b} but the policy's is {a}; DPO needs the "
          "reference to be the same model as the policy (usually the SFT checkpoint the "
          "run starts from)")


def fingerprint(params: Any, config: MT5Config, vocabulary_path: str | os.PathLike,
                inputs_length: int) -> str:
  """A digest of what the reference log-probs depend on, ending in '/inputs=N'."""
  digest = hashlib.blake2b(digest_size=12)
  for field in ARCHITECTURE_FIELDS:
    digest.update(f"{field}={getattr(config, field)};".encode())
  digest.update(Path(vocabulary_path).read_bytes())
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0],
                           key=lambda t: jax.tree_util.keystr(t[0])):
    value = np.asarray(leaf, np.float64)
    digest.update(f"{jax.tree_util.keystr(path)}{value.shape}{value.sum():.10e}"
                  f"{np.abs(value).sum():.10e}".encode())
  return f"{digest.hexdigest()}/inputs={inputs_length}"


def fingerprint_inputs_length(value: str) -> int | None:
  match = _INPUTS.search(value or "")
  return int(match.group(1)) if match else None


def _buckets(n: int, multiple: int = 16) -> int:
  return max(multiple, -(-n // multiple) * multiple)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReferenceReport:
  written: int
  skipped: pairs_lib.Skipped
  fingerprint: str


@functools.partial(jax.jit, static_argnames=("config", "vocab_tile_size"))
def _pair_token_log_probs(params: Any, batch: dict, config: MT5Config,
                          vocab_tile_size: int | None) -> jax.Array:
  from aya_t5x.model import MT5
  from aya_t5x.preference.objective import target_log_probs

  token_lp, _ = target_log_probs(MT5(config), params, batch, rng=jax.random.key(0),
                                 enable_dropout=False, vocab_tile_size=vocab_tile_size)
  return token_lp


def pair_token_log_probs(params: Any, config: MT5Config, prompts: np.ndarray,
                         chosen: np.ndarray, rejected: np.ndarray, *,
                         vocab_tile_size: int | None = 8192) -> tuple[np.ndarray, np.ndarray]:
  """Per-token log-probs [batch, length] of both answers (0 = padding), by the same code
  as the live reference (the prompt encoded once, the vocabulary tiled)."""
  batch = {"encoder_input_tokens": prompts}
  for side, targets in (("chosen", chosen), ("rejected", rejected)):
    batch[f"{side}_target_tokens"] = targets
    batch[f"{side}_input_tokens"] = np.pad(targets, ((0, 0), (1, 0)))[:, :-1]
    batch[f"{side}_loss_weights"] = (targets > 0).astype(np.int32)
  tile = vocab_tile_size if vocab_tile_size and vocab_tile_size < config.vocab_size else None
  token_lp = np.asarray(_pair_token_log_probs(
      params, jax.tree.map(jnp.asarray, batch), config, tile))
  return token_lp[:len(prompts)], token_lp[len(prompts):]


def _encode(vocabulary, text: str) -> list[int]:
  return list(vocabulary.encode(text)) + [1]  # EOS, as the task appends it


def write_reference_logprobs(params: Any, config: MT5Config, vocabulary,
                             vocabulary_path: str | os.PathLike, pairs_path: str | os.PathLike,
                             output: str | os.PathLike, *, inputs_length: int,
                             batch_size: int = 16, language: str | None = None
                             ) -> ReferenceReport:
  """Scores every good pair of `pairs_path` and writes them with their `reference`."""
  mark = fingerprint(params, config, vocabulary_path, inputs_length)
  skipped = pairs_lib.Skipped()

  def scored() -> Iterator[dict[str, Any]]:
    batch: list[tuple[dict, pairs_lib.Pair]] = []

    def flush():
      prompts = [_encode(vocabulary, p.prompt)[:inputs_length] for _, p in batch]
      sides = {side: [_encode(vocabulary, getattr(p, side)) for _, p in batch]
               for side in ("chosen", "rejected")}
      rows = batch_size  # one shape for every batch: one compile
      prompt_array = np.zeros((rows, _buckets(max(map(len, prompts)))), np.int32)
      for i, tokens in enumerate(prompts):
        prompt_array[i, :len(tokens)] = tokens
      width = _buckets(max(len(t) for side in sides.values() for t in side))
      arrays = {}
      for side, tokens in sides.items():
        arrays[side] = np.zeros((rows, width), np.int32)
        for i, row in enumerate(tokens):
          arrays[side][i, :len(row)] = row
      chosen, rejected = pair_token_log_probs(params, config, prompt_array, arrays["chosen"],
                                              arrays["rejected"])
      logps = {"chosen": chosen, "rejected": rejected}
      for i, (record, pair) in enumerate(batch):
        reference = {"digest": pair.digest(), "fingerprint": mark}
        for side, tokens in sides.items():
          reference[side] = [float(x) for x in logps[side][i, :len(tokens[i])]]
        yield {**{k: v for k, v in record.items() if k != "reference"},
               **pair.record(), "reference": reference}

    for _, record, pair in pairs_lib.read_pairs(pairs_path, language=language,
                                                skipped=skipped):
      batch.append((record, pair))
      if len(batch) == batch_size:
        yield from flush()
        batch = []
    if batch:
      yield from flush()

  written = pairs_lib.write_pairs(scored(), output)
  return ReferenceReport(written=written, skipped=skipped, fingerprint=mark)


def check_run_lengths(task_fingerprint: str | None, inputs_length: int, name: str) -> None:
  """Refuses precomputed log-probs scored with another prompt length than the run's."""
  scored = fingerprint_inputs_length(task_fingerprint or "")
  if task_fingerprint and scored != inputs_length:
    raise ReferenceMismatchError(
        f"{name}: its reference log-probs were computed with prompts cut at {scored} tokens, "
        f"but TASK_FEATURE_LENGTHS['inputs'] is {inputs_length}; set it to {scored} or "
        "rerun `aya-t5x preference reference-logprobs --inputs_length "
        f"{inputs_length}`")


def load_frozen_reference(checkpoint: str, policy: MT5Config, param_shardings: Any) -> Any:
  """The live reference's parameters, checked against the policy and placed like its
  parameters (stacked when the policy scans its layers)."""
  from aya_t5x import layer_stack
  from aya_t5x.checkpoints import loading

  stored = loading.stored_config(checkpoint)
  if stored is not None:
    check_same_architecture(policy, stored, checkpoint)
  per_layer = dataclasses.replace(policy, scan_layers=False)
  try:
    params = loading.load_params(checkpoint, per_layer)
  except ValueError as e:
    raise ReferenceMismatchError(
        f"reference {checkpoint} does not match the policy's architecture or vocabulary: "
        f"{str(e).splitlines()[0]}") from e
  if policy.scan_layers:
    params = layer_stack.stack_layers(params)
  return jax.device_put(params, param_shardings)
