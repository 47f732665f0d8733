"""The online round: sampling from a checkpoint, ranking by reward or judge, best vs worst."""

import json

import jax

from aya_t5x import cli
from aya_t5x.checkpoints import native
from aya_t5x.evaluation.judging.backends import JudgeItemError
from aya_t5x.model import init_params
from aya_t5x.preference import online, rewards
from aya_t5x.testing import vocabularies
from tests.preference.test_training import TINY


class LongerIsBetter:
  """A judge that prefers the longer answer (ties when equal; one item fails)."""

  description = "longer-is-better"

  def complete_all(self, prompts):
    for index, prompt in enumerate(prompts):
      a = prompt.user.split("Answer (A):\n")[1].split("\n\nAnswer (B):")[0]
      b = prompt.user.split("Answer (B):\n")[1].split("\n\nWhich answer")[0]
      if "fail" in (a, b):
        yield index, JudgeItemError("timeout")
      elif len(a) == len(b):
        yield index, "Preferred: TIE"
      else:
        yield index, f"Preferred: Answer ({'A' if len(a) > len(b) else 'B'})"


def test_judge_round_robin_keeps_best_and_worst():
  prompts = [online.Prompt(id="0", prompt="q0", language="sw", example={}),
             online.Prompt(id="1", prompt="q1", language="sw", example={})]
  answers = [["aa", "a", "aaaa", "aaa"], ["same", "same", "fail", "same"]]
  scores, outcomes = online.scores_by_judge(LongerIsBetter(), prompts, answers, seed=3)
  assert scores[0] == [1.0, 0.0, 3.0, 2.0]
  assert sum(outcomes.values()) == 12 and outcomes["decisive"] == 6
  made = online.best_and_worst(prompts, answers, scores)
  assert [(p.chosen, p.rejected) for p in made.pairs] == [("aaaa", "a")]
  assert made.report["skipped"]["total"] == 1  # all 1.5: equal scores


def test_rewards():
  example = {"targets": "the cat sees the dog"}
  assert rewards.get_reward("programmatic")("q", "the cat sees the dog", example) > \
      rewards.get_reward("programmatic")("q", "the the the the the the", example)
  assert rewards.no_repetition("", "a b c a b c a b c", {}) < 1.0
  assert rewards.get_reward("aya_t5x.preference.rewards:no_repetition") is rewards.no_repetition


def test_generate_command_with_a_reward(tmp_path, capsys):
  spm = vocabularies.train_vocabulary(vocabularies.write_sentences(tmp_path / "t.txt"), tmp_path)
  native.save_params(init_params(TINY, jax.random.key(0)), TINY, tmp_path / "policy")
  sentences = vocabularies.multilingual_sentences(8)
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps({"prompt": s, "targets": s, "language": "en"}) + "\n"
                             for s in sentences) + json.dumps({"prompt": "x"}) + "\n")
  out = tmp_path / "round.jsonl"
  assert cli.main(["preference", "generate", "--prompts", str(prompts), "--checkpoint",
                   str(tmp_path / "policy"), "--vocabulary", str(spm), "--num_samples", "3",
                   "--max_decode_length", "8", "--reward", "programmatic",
                   "--output", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "unknown or missing language None" in printed
  pairs = [json.loads(line) for line in out.read_text().splitlines()]
  report = json.loads((tmp_path / "round.jsonl.report.json").read_text())
  assert report["prompts"] == 8 and len(pairs) + report["skipped"]["total"] == 8
  for pair in pairs:
    example = {"targets": pair["prompt"]}
    assert rewards.programmatic("", pair["chosen"], example) > rewards.programmatic(
        "", pair["rejected"], example)
