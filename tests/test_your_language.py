"""docs/your_language.md, run literally: its bash blocks, in order, in one bash session.

The fixture language is Dhivehi in Thaana, a script the fixture base vocabulary (trained
on the test sentences of five other scripts, no byte fallback) lacks; the base model is
the tiny gin model with random weights. Only the variables the page shows as overridable
are set (paths to the fixtures and small sizes); every command is the page's own.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aya_t5x.testing import vocabularies
from tests.data import fixtures

DOC = Path(__file__).resolve().parents[1] / "docs" / "your_language.md"


def bash_blocks(markdown: str) -> list[str]:
  return re.findall(r"^```bash\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def _base_model(folder: Path, vocabulary: Path) -> Path:
  """A random tiny model (models/mt5_tiny.gin) in aya_t5x's checkpoint format."""
  import jax

  from aya_t5x import configurables, gin_config, model  # noqa: F401  (gin's MT5Config)
  from aya_t5x.checkpoints import formats

  gin_config.parse_gin(["models/mt5_tiny.gin"])
  config = gin_config.configured_model()
  params = model.init_params(config, jax.random.key(0))
  formats.save_params(jax.tree.map(lambda a: a, params), config, folder, fmt="aya_t5x")
  return folder


def _fixtures(root: Path) -> dict[str, str]:
  from aya_t5x.vocab import vocabulary

  sentences = vocabularies.new_script_sentences(count=200, seed=1)
  rows = [{"inputs": a, "targets": b} for a, b in zip(sentences, sentences[1:])]
  data = root / "dhivehi"
  fixtures.write_jsonl(data / "train.jsonl", rows[:48])
  fixtures.write_jsonl(data / "validation.jsonl", rows[48:56])
  fixtures.write_jsonl(data / "test.jsonl", rows[56:64])
  text = root / "dhivehi.txt"
  text.write_text("\n".join(vocabularies.new_script_sentences(count=300, seed=2)) + "\n",
                  encoding="utf-8")
  base_text = vocabularies.write_sentences(root / "base.txt")
  spm = vocabulary.train_sentencepiece([base_text], root / "base.model", vocab_size=400)
  return {"LANGUAGE_DATA": str(data), "LANGUAGE_TEXT": str(text), "BASE_VOCABULARY": str(spm),
          "BASE_CHECKPOINT": str(_base_model(root / "base_checkpoint", spm)),
          "MODEL_GIN": "models/mt5_tiny.gin", "PIECES": "200", "STEPS": "2", "BATCH": "8",
          "INPUT_LENGTH": "32", "TARGET_LENGTH": "32", "WORK": str(root / "work")}


def test_every_variable_the_test_sets_is_one_the_page_shows():
  shown = set(re.findall(r"^(\w+)=\$\{\1:-", bash_blocks(DOC.read_text())[0], re.MULTILINE))
  assert shown == {"LANGUAGE_DATA", "LANGUAGE_TEXT", "BASE_VOCABULARY", "BASE_CHECKPOINT",
                   "MODEL_GIN", "PIECES", "STEPS", "BATCH", "INPUT_LENGTH", "TARGET_LENGTH",
                   "WORK"}


@pytest.mark.slow
def test_the_tutorial_runs_literally(tmp_path):
  blocks = bash_blocks(DOC.read_text())
  assert len(blocks) >= 7
  env = {**os.environ, **_fixtures(tmp_path),
         "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
  script = "\n".join(blocks)
  run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
  assert run.returncode == 0, (run.stdout[-4000:], run.stderr[-4000:])
  work = tmp_path / "work"
  # Step 1-2: the language and the task with its three splits.
  manifest = json.loads((work / "tasks.json").read_text())
  assert [lang["code"] for lang in manifest["languages"]] == ["dv"]
  assert set(manifest["tasks"][0]["splits"]) == {"train", "validation", "test"}
  # Steps 3-4: the base vocabulary cannot write Thaana; the extension can, on held-out text.
  before = json.loads((work / "coverage_before" / "vocab_report.json").read_text())["dv"]
  after = json.loads((work / "coverage_after" / "vocab_report.json").read_text())["dv"]
  assert before["unknown_share"] > 0.3 and after["unknown_share"] == 0
  assert "\u078b" in json.dumps(before["uncovered_characters"], ensure_ascii=False)  # ދ
  # Step 5: the run with train-eval on (the task has validation) and its records.
  assert "train_eval is off" not in run.stdout + run.stderr
  assert {"config.gin", "vocabulary.json", "languages.json"} <= {
      p.name for p in (work / "run").iterdir()}
  assert "MIXTURE_OR_TASK_NAME = 'dhivehi_qa'" in run.stdout  # from --print_config
  # Step 6: the report names the language and its group.
  (task,) = json.loads((work / "eval" / "eval.json").read_text())["tasks"]
  assert (task["language"], task["language_name"], task["group"]) == ("dv", "Dhivehi", "LR")
  assert task["split"] == "test" and task["examples"] == 8
  # Step 7: completions for every test prompt, and a Hugging Face export that loads.
  assert len((work / "completions.jsonl").read_text().splitlines()) == 8
  from transformers import MT5ForConditionalGeneration, T5Tokenizer

  hf = MT5ForConditionalGeneration.from_pretrained(str(work / "hf"))
  vocab_size = json.loads((work / "base_extended" / "mt5_config.json").read_text())[
      "vocab_size"]
  assert hf.config.vocab_size == vocab_size >= 512
  from sentencepiece import SentencePieceProcessor

  pieces = [SentencePieceProcessor(model_file=str(path)).get_piece_size()
            for path in (tmp_path / "base.model", work / "extended.model")]
  assert pieces[1] > pieces[0] and vocab_size >= pieces[1]
  tokenizer = T5Tokenizer.from_pretrained(str(work / "hf"))
  sentence = json.loads((tmp_path / "dhivehi" / "test.jsonl").read_text().splitlines()[0])
  assert tokenizer.unk_token_id not in tokenizer(sentence["inputs"]).input_ids
