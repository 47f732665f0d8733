"""Inference on files: JSONL prompts in, JSONL completions out, from any checkpoint.

The checkpoint may be a training run's MODEL_DIR (its latest step), one step folder of
it, or a parameter checkpoint in any format `aya_t5x.checkpoints.formats` reads
(`aya_t5x.checkpoints.loading` finds the parameters and the model in each).
Prompts are batched in input-length order (less padding), decoded with
`aya_t5x.decoding`, and written back in the input order with their line numbers.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from aya_t5x import decoding
from aya_t5x.model_config import MT5Config


@dataclasses.dataclass(frozen=True)
class InferenceReport:
  written: int
  skipped: dict[int, str]  # line number -> why (empty or malformed prompt)


def _read_prompts(path: Path, key: str
                  ) -> tuple[list[tuple[int, str, dict]], dict[int, str]]:
  prompts, skipped = [], {}
  if not path.exists():
    raise FileNotFoundError(f"prompt file {path} does not exist (JSONL, one object with "
                            f"a {key!r} field per line).")
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        text = record[key]
      except (json.JSONDecodeError, KeyError, TypeError) as e:
        skipped[number] = f"{path}:{number}: not a JSON object with a {key!r} field ({e})"
        continue
      if not isinstance(text, str) or not text.strip():
        skipped[number] = f"{path}:{number}: field {key!r} is empty or not a string"
        continue
      # The record's other fields (id, language, ...) travel with its completion.
      prompts.append((number, text, {k: v for k, v in record.items() if k != key}))
  return prompts, skipped


def infer_jsonl(params: Any, config: MT5Config, vocabulary, input_path: str | os.PathLike,
                output_path: str | os.PathLike, options: decoding.DecodingOptions, *,
                batch_size: int = 16, max_input_length: int = 512, input_key: str = "inputs",
                seed: int = 0) -> InferenceReport:
  """Decodes every prompt of `input_path` and writes `{"line", "inputs", "completion"}`
  plus the input record's other fields (an `id` or `language` for the judge, say).

  Malformed lines are skipped, counted and reported, never fatal; the output is written
  to a temporary file and renamed, so a failure never leaves half a file.
  """
  input_path, output_path = Path(input_path), Path(output_path)
  prompts, skipped = _read_prompts(input_path, input_key)
  encoded = [(n, text, np.asarray(vocabulary.encode(text), np.int32)[:max_input_length - 1])
             for n, text, _ in prompts]
  order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][2]))
  completions: dict[int, str] = {}
  rng = jax.random.key(seed)
  for start in range(0, len(order), batch_size):
    chunk = [encoded[i] for i in order[start:start + batch_size]]
    # Widths rounded up to a multiple of 32: few distinct shapes, few compilations.
    width = min(-(-(max(len(ids) for _, _, ids in chunk) + 1) // 32) * 32, max_input_length)
    tokens = np.zeros((batch_size, width), np.int32)  # fixed batch: one compilation
    for row, (_, _, ids) in enumerate(chunk):
      tokens[row, :len(ids)] = ids
      tokens[row, len(ids)] = 1  # EOS
    rng, key = jax.random.split(rng)
    out = np.asarray(decoding.decode(params, config, tokens, options, rng=key))
    for row, (number, _, _) in enumerate(chunk):
      ids = out[row]
      ids = ids[:np.argmax(ids == 1)] if (ids == 1).any() else ids
      completions[number] = vocabulary.decode([int(t) for t in ids if t > 1])
  output_path.parent.mkdir(parents=True, exist_ok=True)
  partial = output_path.with_name(output_path.name + ".partial")
  with open(partial, "w", encoding="utf-8") as f:
    for number, text, extra in prompts:
      f.write(json.dumps({**extra, "line": number, "inputs": text,
                          "completion": completions[number]}, ensure_ascii=False) + "\n")
  partial.replace(output_path)
  return InferenceReport(written=len(prompts), skipped=skipped)
