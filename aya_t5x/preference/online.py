"""The online round: sample N answers per prompt from a checkpoint, rank them with a judge
or a reward function, and keep the best and the worst as the next round's pairs.

Ranking:
- a reward function (`rewards.get_reward`) scores each answer; the highest and lowest
  scores make the pair;
- a judge (`aya_t5x.evaluation.judging`: an HTTP endpoint or a local model) compares every
  two answers of a prompt once, in a seeded random order (`judging.pairwise.shown_first`); an
  answer's score is its wins plus half its ties. Unparseable or failed verdicts count as
  ties and are reported.

A prompt whose best and worst answers score the same (all answers alike, or all tied) is
dropped and counted; so are prompts whose two answers are the same text (`pairs.check_record`).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aya_t5x.preference import pairs as pairs_lib


@dataclasses.dataclass(frozen=True, kw_only=True)
class Prompt:
  id: str
  prompt: str
  language: str
  example: Mapping[str, Any]


def read_prompts(path, *, language: str | None = None, skipped: pairs_lib.Skipped
                 ) -> list[Prompt]:
  """Prompts of a JSONL/parquet file: 'prompt' or 'inputs', 'language', optional 'id'."""
  from aya_t5x.data import languages, readers

  prompts = []
  for location, record in readers.iter_records(path):
    if isinstance(record, readers.MalformedRecord):
      skipped.add("unreadable record", str(location))
      continue
    text = record.get("prompt", record.get("inputs"))
    if not isinstance(text, str) or not text.strip():
      skipped.add("missing or empty 'prompt'/'inputs'", str(location))
      continue
    name = record.get("language", language)
    found = languages.find_language(name) if isinstance(name, str) else None
    if found is None:
      skipped.add(f"unknown or missing language {name!r}", str(location))
      continue
    prompts.append(Prompt(id=str(record.get("id", len(prompts))), prompt=text,
                          language=found.code, example=record))
  return prompts


def sample_answers(params: Any, config, vocabulary, prompts: Sequence[Prompt], *,
                   num_samples: int, options, batch_size: int = 32,
                   max_input_length: int = 1024, seed: int = 0) -> list[list[str]]:
  """`num_samples` sampled answers per prompt (the prompt repeated, one draw per row)."""
  from aya_t5x import decoding
  from aya_t5x.evaluation import predict

  inputs = [np.asarray(list(vocabulary.encode(p.prompt)) + [decoding.EOS_ID], np.int32)
            for p in prompts for _ in range(num_samples)]
  outputs, _ = predict.generate(
      params, config, inputs, predict.Batching(batch_size=batch_size,
                                               max_input_length=max_input_length),
      options, seed=seed)
  texts = [vocabulary.decode([int(t) for t in ids if t > decoding.EOS_ID]) for ids in outputs]
  return [texts[i * num_samples:(i + 1) * num_samples] for i in range(len(prompts))]


def scores_by_reward(reward, prompt: Prompt, answers: Sequence[str]) -> list[float]:
  return [float(reward(prompt.prompt, answer, prompt.example)) for answer in answers]


def scores_by_judge(judge, prompts: Sequence[Prompt], answers: Sequence[Sequence[str]],
                    *, seed: int = 0) -> tuple[list[list[float]], collections.Counter]:
  """Round-robin wins (+ half ties) of each answer, judged pairwise once per two answers."""
  from aya_t5x.evaluation.judging import backends, pairwise

  items, where = [], []
  for p_index, (prompt, options) in enumerate(zip(prompts, answers, strict=True)):
    for i, j in itertools.combinations(range(len(options)), 2):
      key = f"{prompt.id}:{i}:{j}"
      first = pairwise.shown_first(seed, key)
      a, b = (options[i], options[j]) if first else (options[j], options[i])
      items.append(pairwise.pairwise_prompt(prompt.prompt, a, b))
      where.append((p_index, i, j, first))
  scores = [[0.0] * len(options) for options in answers]
  outcomes: collections.Counter = collections.Counter()
  for index, reply in judge.complete_all(items):
    p_index, i, j, first = where[index]
    verdict = None if isinstance(reply, backends.JudgeItemError) else (
        pairwise.parse_preference(reply))
    if verdict in ("A", "B"):
      i_won = (verdict == "A") == first
      scores[p_index][i if i_won else j] += 1.0
      outcomes["decisive"] += 1
    else:
      scores[p_index][i] += 0.5
      scores[p_index][j] += 0.5
      outcomes["tie" if verdict == "TIE" else "failed or unparseable"] += 1
  return scores, outcomes


def best_and_worst(prompts: Sequence[Prompt], answers: Sequence[Sequence[str]],
                   scores: Sequence[Sequence[float]]) -> pairs_lib.PairSet:
  """The next round's pairs: each prompt's best-scored answer against its worst."""
  pairs, skipped = [], pairs_lib.Skipped()
  for prompt, options, values in zip(prompts, answers, scores, strict=True):
    order = sorted(range(len(options)), key=lambda k: (-values[k], k))
    best, worst = order[0], order[-1]
    if values[best] == values[worst]:
      skipped.add("all answers scored the same", prompt.id)
      continue
    checked = pairs_lib.check_record({"prompt": prompt.prompt, "chosen": options[best],
                                      "rejected": options[worst],
                                      "language": prompt.language})
    if isinstance(checked, str):
      skipped.add(checked, prompt.id)
      continue
    pairs.append(checked)
  per_language = collections.Counter(p.language for p in pairs)
  return pairs_lib.PairSet(pairs=pairs, report={
      "prompts": len(prompts), "pairs": len(pairs), "languages": dict(sorted(
          per_language.items())), "skipped": skipped.as_dict(),
      "skipped_lines": skipped.lines()})
