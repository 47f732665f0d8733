"""A run remembers: config.gin, vocabulary.json and languages.json in MODEL_DIR, read back
by infer, eval (`--task`, no gin) and convert; `--print_config`; a missing checkpoint
folder is the first error; a task without validation trains with train-eval off."""

import hashlib
import json

import pytest

import gin
from aya_t5x import cli, run_record, testing
from aya_t5x.data import languages
from aya_t5x.vocab import vocabulary as vocab_lib
from tests.data import fixtures

TINY = testing.TINY
LABELS = ("ee", "aowa")  # Tswana "yes" and "no"


def _run_flags(model_dir, manifest, spm, name, steps=2, *extra):
  return ["--gin_file", "models/mt5_tiny.gin", "--gin_file", "runs/finetune.gin",
          "--gin_file", "mixtures/vocabulary.gin", f"--gin.VOCABULARY_PATH='{spm}'",
          f"--gin.TASK_MANIFEST='{manifest}'", f"--gin.MIXTURE_OR_TASK_NAME='{name}'",
          f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}",
          "--gin.BATCH_SIZE=8", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 8}",
          "--gin.EVAL_EVERY_STEPS=2", "--gin.EVAL_BATCHES=1",
          f"--gin.MT5Config.vocab_size={TINY.vocab_size}",
          f"--gin.MT5Config.d_model={TINY.d_model}", f"--gin.MT5Config.d_kv={TINY.d_kv}",
          f"--gin.MT5Config.d_ff={TINY.d_ff}", "--gin.train.log_every=1", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A tiny run on a Tswana task (an added language) with train and test splits only."""
  root = tmp_path_factory.mktemp("run_record")
  rows = [{"inputs": f"Potso {i}: a o a itse?", "targets": LABELS[i % 2]} for i in range(24)]
  fixtures.write_jsonl(root / "data" / "train.jsonl", rows[:16])
  fixtures.write_jsonl(root / "data" / "test.jsonl", rows[16:])
  text = root / "text.txt"
  text.write_text("\n".join(f"{r['inputs']} {r['targets']}" for r in rows) + "\n")
  spm = vocab_lib.train_sentencepiece([text], root / "spm.model", vocab_size=60)
  manifest = root / "tasks.json"
  assert cli.main(["languages", "add", "tsn", "--name", "Tswana", "--script", "Latn",
                   "--group", "LR", "--manifest", str(manifest)]) == 0
  assert cli.main(["tasks", "add", "tswana_yn", "--path", str(root / "data"), "--language",
                   "Setswana", "--manifest", str(manifest)]) == 0
  languages.clear_user_languages()  # what train knows comes from the manifest
  model_dir = root / "run"
  import contextlib
  import io

  out = io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    code = cli.main(["train", *_run_flags(model_dir, manifest, spm, "tswana_yn")])
  assert code == 0, out.getvalue()[-3000:]
  languages.clear_user_languages()
  return {"root": root, "run": model_dir, "spm": spm, "manifest": manifest,
          "log": out.getvalue()}


@pytest.mark.slow
def test_the_run_records_its_config_vocabulary_and_languages(trained):
  run = trained["run"]
  config = (run / "config.gin").read_text()
  # config.gin parses back as gin and binds what the run used.
  gin.clear_config()
  gin.parse_config(config, skip_unknown=True)
  assert gin.query_parameter("%MIXTURE_OR_TASK_NAME") == "tswana_yn"
  assert gin.query_parameter("%TASK_MANIFEST") == str(trained["manifest"])
  gin.clear_config()
  assert run_record.recorded_macro(run, "TRAIN_STEPS") == 2
  record = json.loads((run / "vocabulary.json").read_text())
  assert record["path"] == str(trained["spm"])
  assert record["sha256"] == hashlib.sha256(trained["spm"].read_bytes()).hexdigest()
  assert run_record.recorded_vocabulary(run / "checkpoints" / "2") == str(trained["spm"])
  recorded = json.loads((run / "languages.json").read_text())
  assert [lang["code"] for lang in recorded["languages"]] == ["tn"]
  assert recorded["task_manifest"] == str(trained["manifest"])


@pytest.mark.slow
def test_a_task_without_validation_trains_with_train_eval_off_said_once(trained):
  log = trained["log"]
  assert log.count("train_eval is off for this run") == 1
  assert "has no 'validation' split" in log and "KeyError" not in log
  assert (trained["run"] / "checkpoints" / "2").is_dir()


@pytest.mark.slow
def test_eval_task_without_gin_reports_language_and_group(trained, capsys):
  out_dir = trained["root"] / "eval"
  assert cli.main(["eval", "--checkpoint", str(trained["run"]), "--task", "tswana_yn",
                   "--metric", "rank_classification", "--split", "test",
                   "--output_dir", str(out_dir)]) == 0
  report = json.loads((out_dir / "eval.json").read_text())
  (task,) = report["tasks"]
  assert (task["language"], task["language_name"], task["group"]) == ("tn", "Tswana", "LR")
  assert task["split"] == "test" and task["examples"] == 8
  assert 0 <= task["metrics"]["accuracy"] <= 100
  assert report["benchmarks"][0]["groups"]["LR"] == task["score"]
  assert cli.main(["eval", "--checkpoint", str(trained["run"]), "--task", "tswana_yn",
                   "--metric", "chrf", "--split", "test", "--max_examples", "2",
                   "--output_dir", str(out_dir / "chrf")]) == 0
  (task,) = json.loads((out_dir / "chrf" / "eval.json").read_text())["tasks"]
  assert task["primary_metric"] == "chrf" and task["examples"] == 2


@pytest.mark.slow
def test_infer_and_convert_read_the_recorded_vocabulary(trained, capsys):
  prompts = trained["root"] / "prompts.jsonl"
  prompts.write_text('{"inputs": "Potso 3: a o a itse?"}\n')
  out = trained["root"] / "out.jsonl"
  assert cli.main(["infer", "--checkpoint", str(trained["run"]), "--input", str(prompts),
                   "--output", str(out), "--max_decode_length", "4"]) == 0
  assert json.loads(out.read_text())["line"] == 1
  hf = trained["root"] / "hf"
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(trained["run"]),
                   str(hf)]) == 0
  assert (hf / "spiece.model").read_bytes() == trained["spm"].read_bytes()
  from transformers import T5Tokenizer

  tokenizer = T5Tokenizer.from_pretrained(str(hf))
  vocabulary = vocab_lib.sentencepiece_vocabulary(str(trained["spm"]))
  text = "Potso 3: a o a itse?"
  assert tokenizer(text).input_ids == list(vocabulary.encode(text)) + [1]


@pytest.mark.slow
def test_a_changed_vocabulary_is_caught_by_its_fingerprint(trained, tmp_path, capsys):
  import shutil

  run = tmp_path / "copy"
  shutil.copytree(trained["run"], run)
  record = json.loads((run / "vocabulary.json").read_text())
  changed = tmp_path / "changed.model"
  changed.write_bytes(trained["spm"].read_bytes() + b"\0")
  record["path"] = str(changed)
  (run / "vocabulary.json").write_text(json.dumps(record))
  assert cli.main(["infer", "--checkpoint", str(run), "--input", "x", "--output", "y"]) == 2
  assert "has changed since the run" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["infer", "--input", "prompts.jsonl", "--output", "out.jsonl"],
    ["eval", "--output_dir", "out", "--task", "t", "--metric", "chrf"],
    ["eval", "--output_dir", "out", "--gin_file", "eval/demo.gin"],
])
def test_a_missing_checkpoint_folder_is_the_first_error(tmp_path, capsys, command):
  missing = tmp_path / "no_such_run"
  assert cli.main([*command, "--checkpoint", str(missing)]) == 2
  err = capsys.readouterr().err
  assert f"checkpoint '{missing}' does not exist" in err
  assert "No model size configured" not in err


def test_convert_names_a_missing_checkpoint_first(tmp_path, capsys):
  missing = tmp_path / "no_such_run"
  assert cli.main(["convert", "--from", "aya_t5x", "--to", "hf", str(missing),
                   str(tmp_path / "hf")]) == 2
  assert f"checkpoint '{missing}' does not exist" in capsys.readouterr().err


def test_print_config_prints_the_resolved_macros_and_does_not_train(tmp_path, capsys):
  model_dir = tmp_path / "run"
  assert cli.main(["train", "--gin_file", "models/mt5_tiny.gin", "--gin_file",
                   "runs/finetune.gin", f"--gin.MODEL_DIR='{model_dir}'",
                   "--gin.MIXTURE_OR_TASK_NAME='my_task'", "--gin.TRAIN_STEPS=7",
                   "--gin.BATCH_SIZE=%TRAIN_STEPS", "--print_config"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert "MIXTURE_OR_TASK_NAME = 'my_task'" in lines
  assert "TRAIN_STEPS = 7" in lines and "BATCH_SIZE = 7" in lines  # a macro of a macro
  assert "TASK_MANIFEST = None" in lines and "LANGUAGES_FILE = None" in lines
  assert not model_dir.exists()
  assert cli.main(["train", "--gin_file", "models/mt5_tiny.gin", "--gin_file",
                   "runs/finetune.gin", "--print_config"]) == 2
  assert "These gin macros must be set" in capsys.readouterr().err
