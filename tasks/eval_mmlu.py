"""Multilingual MMLU (Okapi's translation) in 31 languages: 5-shot rank classification.

Published by Okapi (nlp-uoregon/mlmm-evaluation) as `m_mmlu/<lang>_test.json` and
`<lang>_dev.json`: a JSON array of {instruction, option_a..option_d, answer (a letter)}.
Put the files under `<eval data>/mmlu/`. The five shots are the first five records of
the dev file, the same for every question; the model scores the letters A-D as targets.
Prompts longer than the input length lose their beginning (the first shot), never the
question.
"""

from __future__ import annotations

from pathlib import Path

from aya_t5x.evaluation import eval_sets, formats

NUM_SHOTS = 5
HEADER = "The following are multiple choice questions (with answers)."


def _question(record, answer: str = "") -> str:
  options = "\n".join(f"{letter}. {option}"
                      for letter, option in zip(formats.MMLU_LETTERS, record["options"]))
  return f"{record['question']}\n{options}\nAnswer:{' ' + answer if answer else ''}"


def few_shot_template(shots):
  """The 5-shot template: the shots with their answers, then the question."""
  solved = "\n\n".join(_question(s, formats.MMLU_LETTERS[s["answer"]]) for s in shots)

  def template(record):
    return (f"{HEADER}\n\n{solved}\n\n{_question(record)}", list(formats.MMLU_LETTERS),
            record["answer"])

  return template


class OkapiMmlu(eval_sets.Benchmark):
  def files(self, root: Path, key: str) -> dict[str, Path]:
    return {"examples": root / f"{key}_test.json", "shots": root / f"{key}_dev.json"}

  def rows(self, files, key):
    shots = formats.read_okapi_mmlu(files["shots"])
    if len(shots) < NUM_SHOTS:
      raise formats.FormatError(f"{files['shots']}: {len(shots)} records; {NUM_SHOTS}-shot "
                                f"evaluation needs at least {NUM_SHOTS}.")
    return eval_sets.rank_rows(formats.read_okapi_mmlu(files["examples"]),
                                [few_shot_template(shots[:NUM_SHOTS])])


MMLU = eval_sets.add_benchmark(OkapiMmlu(
    name="mmlu", title="Multilingual MMLU (Okapi, 5-shot)", kind="rank", split="test",
    folder="mmlu", data_format=formats.OKAPI_MMLU, max_input_length=1024,
    max_target_length=8, truncate="left",
    languages=("ar", "bn", "ca", "da", "de", "es", "eu", "fr", "gu", "hi", "hr", "hu", "hy",
               "id", "it", "kn", "ml", "mr", "ne", "nl", "pt", "ro", "ru", "sk", "sr", "sv",
               "ta", "te", "uk", "vi", "zh")))
