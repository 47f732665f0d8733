"""The `tasks` and `mixture` subcommands, run through argparse as aya_t5x.cli runs them."""

import argparse
import json

import pytest

import aya_t5x.mixtures  # noqa: F401  (the CLI registers the schemes and sources;
import aya_t5x.tasks  # noqa: F401  these tests call the handlers directly)
from aya_t5x.data import commands
from tests.data import fixtures


def run(argv, capsys):
  parser = argparse.ArgumentParser(prog="aya-t5x")
  commands.add_commands(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(argv)
  args.gin_bindings = []
  assert args.handler(args) == 0
  return capsys.readouterr().out


def test_tasks_add_list_inspect(tmp_path, capsys, small_vocabulary):
  data = fixtures.write_jsonl(tmp_path / "qa.jsonl", [
      {"q": f"Swali namba {i}?", "a": f"Jibu namba {i}."} for i in range(5)])
  manifest = tmp_path / "tasks.json"
  out = run(["tasks", "add", "sw_qa", "--path", str(data), "--language", "Swahili",
             "--inputs_key", "q", "--targets_key", "a", "--manifest", str(manifest)], capsys)
  assert "added task sw_qa" in out and "read 5, kept 5" in out
  assert json.loads(manifest.read_text())["tasks"][0]["language"] == "sw"  # normalised

  out = run(["tasks", "list", "--manifest", str(manifest)], capsys)
  assert "aya_dataset" in out and "sharegpt_command" in out and "sw_qa" in out

  out = run(["tasks", "inspect", "sw_qa", "--manifest", str(manifest), "-n", "1",
             "--vocabulary", small_vocabulary.sentencepiece_model_file], capsys)
  assert "inputs:    Swali namba 0?" in out and "targets:   Jibu namba 0." in out
  ids = small_vocabulary.encode("Swali namba 0?") + [1]
  assert f"tokenized: inputs {ids}" in out
  assert "lengths over 5 examples" in out and "inputs  tokens:" in out


def test_tasks_add_with_template(tmp_path, capsys):
  data = fixtures.write_jsonl(tmp_path / "t.jsonl", [{"tweet": "I love it", "label": "good"}])
  manifest = tmp_path / "tasks.json"
  run(["tasks", "add", "tweets", "--path", str(data), "--language", "en", "--manifest",
       str(manifest), "--template_inputs", "Classify: {{tweet}}",
       "--template_targets", "I would classify it as: {{label}}"], capsys)
  out = run(["tasks", "inspect", "tweets", "--manifest", str(manifest)], capsys)
  assert "inputs:    Classify: I love it" in out
  assert "targets:   I would classify it as: good" in out


def test_inspect_a_source(tmp_path, capsys):
  path, _ = fixtures.write_xp3x(tmp_path)
  out = run(["tasks", "inspect", "xp3x", "--path", str(path), "-n", "1", "--language", "fr"],
            capsys)
  assert "template_pruning" in out and "language fr" in out


def test_errors_name_the_fix(tmp_path, capsys):
  data = fixtures.write_jsonl(tmp_path / "qa.jsonl", [{"q": "x", "a": "y"}])
  with pytest.raises(ValueError, match="'xx' is not a known language"):
    run(["tasks", "add", "t", "--path", str(data), "--language", "xx", "--inputs_key", "q",
         "--targets_key", "a", "--manifest", str(tmp_path / "m.json")], capsys)
  with pytest.raises(ValueError, match="give its data with --path"):
    run(["tasks", "inspect", "aya_dataset", "--manifest", str(tmp_path / "m.json")], capsys)
  with pytest.raises(ValueError, match="Did you mean human_heavy"):
    run(["mixture", "report", "human_heavvy", "--steps", "1", "--batch", "1"], capsys)
  with pytest.raises(ValueError, match="write it as NAME=PATH"):
    run(["mixture", "report", "human_heavy", "--steps", "1", "--batch", "1", "--source",
         "aya_dataset"], capsys)


def test_mixture_report_writes_three_files(tmp_path, capsys):
  out = run(["mixture", "report", "translation_heavy", "--steps", "30000", "--batch", "256",
             "--out", str(tmp_path / "r")], capsys)
  assert "| aya_translated | 47.50 |" in out
  assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
      "aya_translation_heavy.json", "aya_translation_heavy.md", "aya_translation_heavy.png"]


def test_mixture_report_from_gin(tmp_path, capsys, small_vocabulary):
  sources = fixtures.write_all_sources(tmp_path / "data")
  parser = argparse.ArgumentParser(prog="aya-t5x")
  commands.add_commands(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(["mixture", "report", "human_heavy", "--steps", "10", "--batch",
                            "4", "--gin_file", "mixtures/human_heavy.gin", "--out",
                            str(tmp_path / "r")])
  args.gin_bindings = [f"VOCABULARY_PATH = '{small_vocabulary.sentencepiece_model_file}'",
                       f"AYA_SOURCES = {sources!r}"]
  import gin

  try:
    assert args.handler(args) == 0
  finally:
    gin.clear_config()
  out = capsys.readouterr().out
  assert "sizes scanned" in out and "| sw | Swahili | LR |" in out
  # Counted in the mixture's own tokens (VOCABULARY_PATH), as with --vocabulary.
  written = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
  assert all("tokens_per_example" in task for task in written["tasks"])
