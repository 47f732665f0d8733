"""`aya-t5x demo --preference`: a DPO round on top of the demo's SFT model, and its win rate.

After the SFT run of the first scheme:

1. prompts: up to `prompts_per_language` training records per language from the
   corpus's training sources (`PAIR_SOURCES`: every task type, with their answers);
2. the SFT model samples `num_samples` answers per prompt; the programmatic judge
   (`aya_t5x.preference.rewards.programmatic`: chrF against the reference answer, a bonus
   for the exact answer, times the share of unrepeated word 3-grams) ranks them, and each
   prompt's best and worst answers become a pair (`preference.online`);
3. DPO (`runs/preference.gin`, the SFT parameters as the start and the frozen reference)
   trains on those pairs for `steps` steps at the demo's sizes;
4. on held-out prompts (the demo's evaluation sets, `held_out_per_task` per task and
   language), the SFT and DPO models answer greedily and the same judge compares the two
   answers: a win when DPO's scores higher, a tie when equal. The report gives the win
   rate (wins over all compared prompts) per language and overall with Wilson 95%
   intervals, under `report.json`'s key `preference.win_rate`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aya_t5x import reporting
from aya_t5x.demo import corpus as demo_corpus

# Training sources whose prompts make the pairs: together every language and task type
# of the held-out sets (data_provenance is English; the others cover the rest).
PAIR_SOURCES = ("aya_translated", "data_provenance", "xp3x", "aya_templated",
                "sharegpt_command")
TASK = "demo_preference"


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreferenceOptions:
  """The preference round's sizes (`aya-t5x demo --preference_steps` etc.)."""

  steps: int = 300
  prompts_per_language: int = 48
  num_samples: int = 4
  held_out_per_task: int = 10
  learning_rate: float = 2e-4
  beta: float = 0.1
  gin_bindings: Sequence[str] = ()


def _language(value: str) -> str | None:
  from aya_t5x.data import languages

  found = languages.find_language(value) or languages.find_language(value.split("_")[0])
  return found.code if found else None


def _prompts(corpus: demo_corpus.Corpus, per_language: int):
  """Up to `per_language` training prompts per language, spread over `PAIR_SOURCES`."""
  from aya_t5x.data import readers
  from aya_t5x.preference import online

  per_source = max(1, per_language // 3)
  taken: collections.Counter = collections.Counter()
  prompts = []
  for source in PAIR_SOURCES:
    for _, record in readers.iter_records(corpus.source_paths()[source]["train"]):
      code = _language(str(record.get("language", "")))
      if code is None or taken[(code, source)] >= per_source or taken[code] >= per_language:
        continue
      taken[code] += 1
      taken[(code, source)] += 1
      prompts.append(online.Prompt(id=f"{source}-{code}-{taken[(code, source)]}",
                                   prompt=record["inputs"], language=code, example=record))
  return prompts


def _held_out(corpus: demo_corpus.Corpus, per_task: int):
  from aya_t5x.preference import online

  prompts = []
  for (task, code), path in corpus.eval_files().items():
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    prompts += [online.Prompt(id=f"{task}.{code}.{i}", prompt=row["inputs"], language=code,
                              example=row) for i, row in enumerate(rows[:per_task])]
  return prompts


def _greedy(params, config, vocabulary, prompts, max_decode_length: int) -> list[str]:
  from aya_t5x import decoding
  from aya_t5x.evaluation import predict

  inputs = [np.asarray(list(vocabulary.encode(p.prompt)) + [decoding.EOS_ID], np.int32)
            for p in prompts]
  options = decoding.DecodingOptions(method="greedy", max_decode_length=max_decode_length)
  outputs, _ = predict.generate(params, config, inputs, predict.Batching(batch_size=64),
                                options)
  return [vocabulary.decode([int(t) for t in ids if t > decoding.EOS_ID]) for ids in outputs]


def win_rates(outcomes: Sequence[tuple[str, str]]) -> dict[str, Any]:
  """{'overall': row, 'languages': {code: row}} from (language, win|tie|loss) outcomes."""
  def row(items):
    counts = collections.Counter(items)
    judged = sum(counts.values())
    return {"judged": judged, "win": counts["win"], "tie": counts["tie"],
            "loss": counts["loss"], "win_rate": counts["win"] / judged if judged else None,
            "win_rate_ci95": reporting.wilson_interval(counts["win"], judged)}

  by_language = collections.defaultdict(list)
  for code, outcome in outcomes:
    by_language[code].append(outcome)
  return {"overall": row([o for _, o in outcomes]),
          "languages": {code: row(items) for code, items in sorted(by_language.items())}}


def run_round(corpus: demo_corpus.Corpus, sft_params: Any, out: Path, options: PreferenceOptions,
              seed: int, model_gin: str, demo_gin: str,
              progress: Callable[[str], None] = print) -> dict[str, Any]:
  """Builds the pairs, trains DPO and judges it against SFT (see the module docstring)."""
  from aya_t5x import configurables, decoding, gin_config
  from aya_t5x.checkpoints import native
  from aya_t5x.preference import online, pairs, rewards, tasks
  from aya_t5x.vocab import vocabulary as vocab_lib

  config = gin_config.configured_model()
  vocabulary = vocab_lib.sentencepiece_vocabulary(str(corpus.vocabulary_path))
  reward = rewards.get_reward("programmatic")
  sft_dir = out / "sft_params"
  if not (sft_dir / native.CONFIG_FILE).exists():
    native.save_params(sft_params, config, sft_dir)
  targets_length = 32

  pairs_path = out / "pairs.jsonl"
  if not pairs_path.exists():
    prompts = _prompts(corpus, options.prompts_per_language)
    progress(f"preference: sampling {options.num_samples} answers for {len(prompts)} prompts")
    answers = online.sample_answers(
        sft_params, config, vocabulary, prompts, num_samples=options.num_samples,
        options=decoding.DecodingOptions(method="sample", temperature=1.0,
                                         max_decode_length=targets_length), seed=seed)
    scores = [online.scores_by_reward(reward, p, a) for p, a in zip(prompts, answers,
                                                                     strict=True)]
    made = online.best_and_worst(prompts, answers, scores)
    pairs.write_pairs(made.pairs, pairs_path)
    (out / "pairs.report.json").write_text(json.dumps(made.report, indent=1))
  pair_report = json.loads((out / "pairs.report.json").read_text())
  registered = tasks.register_preference_tasks(TASK, pairs_path, vocabulary=vocabulary)
  task = registered.mixture or next(iter(registered.tasks))

  progress(f"preference: DPO for {options.steps} steps on {pair_report['pairs']} pairs")
  gin_config.parse_gin([model_gin, "runs/preference.gin", demo_gin], [
      f"MODEL_DIR={str(out / 'dpo')!r}", f"MIXTURE_OR_TASK_NAME={task!r}",
      f"INITIAL_CHECKPOINT_PATH={str(sft_dir)!r}", f"TRAIN_STEPS={options.steps}",
      f"LEARNING_RATE={options.learning_rate}", f"BETA={options.beta}",
      "DROPOUT_RATE=0.0", "train.evaluators=[]", "EVAL_EVERY_STEPS=0",
      f"train.seed={seed}", f"train.log_every={max(1, min(50, options.steps))}",
      *options.gin_bindings])
  result = configurables.configured_train()
  dpo_params = result.state.params

  held_out = _held_out(corpus, options.held_out_per_task)
  progress(f"preference: judging DPO against SFT on {len(held_out)} held-out prompts")
  sft_answers = _greedy(sft_params, config, vocabulary, held_out, targets_length)
  dpo_answers = _greedy(dpo_params, config, vocabulary, held_out, targets_length)
  outcomes = []
  for prompt, a, b in zip(held_out, dpo_answers, sft_answers, strict=True):
    dpo_score, sft_score = (reward(prompt.prompt, x, prompt.example) for x in (a, b))
    outcome = "win" if dpo_score > sft_score else "loss" if dpo_score < sft_score else "tie"
    outcomes.append((prompt.language, outcome))
  rows = [json.loads(line) for line in (out / "dpo" / "metrics.jsonl").read_text().splitlines()]
  train_rows = [r for r in rows if "train/loss" in r]
  return {"pairs": pair_report["pairs"], "pairs_per_language": pair_report["languages"],
          "steps": options.steps, "judge": "programmatic (aya_t5x.preference.rewards)",
          "dpo_first": {k: train_rows[0].get(f"train/{k}") for k in
                        ("loss", "reward_accuracy", "reward_margin")},
          "dpo_last": {k: train_rows[-1].get(f"train/{k}") for k in
                       ("loss", "reward_accuracy", "reward_margin", "kl_estimate")},
          "held_out_prompts": len(held_out), "win_rate": win_rates(outcomes)}


def markdown(result: dict[str, Any]) -> str:
  def pct(row):
    if row["win_rate"] is None:
      return "-"
    low, high = row["win_rate_ci95"]
    return f"{100 * row['win_rate']:.1f}% [{100 * low:.1f}, {100 * high:.1f}]"

  rates = result["win_rate"]
  lines = ["## Preference round: DPO against SFT", "",
           f"{result['pairs']} pairs from the programmatic judge; DPO for {result['steps']} "
           f"steps (last loss {result['dpo_last']['loss']:.4f}, reward accuracy "
           f"{result['dpo_last']['reward_accuracy']:.2f}). Held-out prompts: "
           f"{result['held_out_prompts']}.", "",
           "| language | judged | win | tie | loss | DPO win rate [95% CI] |",
           "|---|---|---|---|---|---|"]
  for code, row in [*rates["languages"].items(), ("overall", rates["overall"])]:
    lines.append(f"| {code} | {row['judged']} | {row['win']} | {row['tie']} | {row['loss']} "
                 f"| {pct(row)} |")
  return "\n".join(lines) + "\n"
