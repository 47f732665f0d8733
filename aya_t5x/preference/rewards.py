"""Reward functions by name, for ranking sampled answers without an LLM judge.

A reward function is `reward(prompt, answer, example) -> float` (higher is better), where
`example` is the prompt's record (it may hold a reference answer under 'targets' or
'reference', and the 'language'). `get_reward(name)` returns a built-in by name, or any
importable callable given as 'package.module:function'.

Built-ins:
- 'no_repetition': 1 minus the share of repeated word 3-grams (0 for an empty answer).
- 'reference_chrf': chrF (0-1) of the answer against the record's reference answer.
- 'programmatic': what the demo's judge uses: reference_chrf, plus 1 when the answer
  equals the reference (the right option or the exact translation), times no_repetition,
  and 0 for an empty answer. It rewards an answer in the prompt's language (chrF against
  a reference in that language), the right option and no repetition.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

Reward = Callable[[str, str, Mapping[str, Any]], float]


def no_repetition(prompt: str, answer: str, example: Mapping[str, Any]) -> float:
  del prompt, example
  words = answer.split()
  grams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
  if not words:
    return 0.0
  if not grams:
    return 1.0
  return len(set(grams)) / len(grams)


def _reference(example: Mapping[str, Any]) -> str:
  for key in ("reference", "targets", "target"):
    if isinstance(example.get(key), str):
      return example[key]
  raise ValueError("this reward needs the prompt's reference answer: give each prompt "
                   "record a 'targets' (or 'reference') field")


def reference_chrf(prompt: str, answer: str, example: Mapping[str, Any]) -> float:
  del prompt
  from sacrebleu.metrics import CHRF

  if not answer.strip():
    return 0.0
  return CHRF().sentence_score(answer, [_reference(example)]).score / 100.0


def programmatic(prompt: str, answer: str, example: Mapping[str, Any]) -> float:
  if not answer.strip():
    return 0.0
  exact = float(answer.strip() == _reference(example).strip())
  return (reference_chrf(prompt, answer, example) + exact) * no_repetition(prompt, answer,
                                                                           example)


REWARDS: dict[str, Reward] = {"no_repetition": no_repetition,
                              "reference_chrf": reference_chrf, "programmatic": programmatic}


def get_reward(name: str) -> Reward:
  """A built-in reward by name, or 'package.module:function'."""
  if name in REWARDS:
    return REWARDS[name]
  if ":" in name:
    module, function = name.split(":", 1)
    try:
      return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
      raise ValueError(f"--reward {name!r}: cannot import it ({e})") from None
  raise ValueError(f"--reward {name!r} is unknown: choose from {sorted(REWARDS)} or give "
                   "'package.module:function'")
