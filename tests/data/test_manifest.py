"""The task manifest: splits kept apart, all-or-nothing writes, manifest-relative paths,
empty files refused, added languages, and mixtures usable by name in another process."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from aya_t5x import cli
from aya_t5x.data import languages, manifest, registration
from tests.data import fixtures


def _qa(path, n, prefix="Swali", **extra):
  return fixtures.write_jsonl(path, [{"question": f"{prefix} {i}?", "answer": f"Jibu {i}.",
                                      **extra} for i in range(n)])


def _add(*args):
  return cli.main(["tasks", "add", *args])


def test_manifest_add_and_load(tmp_path, small_vocabulary):
  data = _qa(tmp_path / "qa.jsonl", 4)
  path = tmp_path / "tasks.json"
  entry = {"name": "swahili_qa", "splits": {"train": str(data)}, "language": "Kiswahili",
           "inputs_key": "question", "targets_key": "answer"}
  manifest.add_task(path, entry)
  stored = json.loads(path.read_text())["tasks"]
  assert stored == [{**entry, "language": "sw", "splits": {"train": "qa.jsonl"}}]
  with pytest.raises(ValueError, match="exists already; pass --replace"):
    manifest.add_task(path, entry)
  with pytest.raises(ValueError, match=r"qa.jsonl:1: the record has no field 'questions'"):
    manifest.add_task(path, {**entry, "name": "typo", "inputs_key": "questions"})
  (loaded,) = manifest.load_manifest(str(path), small_vocabulary)
  assert loaded.train_size == 4


def test_splits_from_flags_and_from_a_folder_are_never_merged(tmp_path, capsys):
  folder = tmp_path / "data"
  _qa(folder / "train.jsonl", 6)
  _qa(folder / "validation.jsonl", 3, prefix="Dev")
  _qa(folder / "test.jsonl", 2, prefix="Test")
  path = tmp_path / "m.json"
  assert _add("qa", "--path", str(folder), "--language", "sw", "--inputs_key", "question",
              "--targets_key", "answer", "--manifest", str(path)) == 0
  assert "train 6, validation 3, test 2 examples" in capsys.readouterr().out
  (entry,) = manifest.read(path).tasks
  assert entry["splits"] == {"train": "data/train.jsonl", "validation": "data/validation.jsonl",
                             "test": "data/test.jsonl"}
  plan = registration.plan_source_tasks(manifest.spec_of_entry(entry),
                                        manifest.read(path).data_of(entry))
  (info,) = plan.tasks
  assert dict(info.sizes) == {"train": 6, "validation": 3, "test": 2}
  assert _add("qa2", "--train", str(folder / "train.jsonl"), "--validation",
              str(folder / "validation.jsonl"), "--language", "sw", "--inputs_key",
              "question", "--targets_key", "answer", "--manifest", str(path)) == 0
  out = capsys.readouterr().out
  assert "train 6, validation 3 examples" in out and "no validation split" not in out
  assert _add("qa3", "--train", str(folder / "train.jsonl"), "--language", "sw",
              "--inputs_key", "question", "--targets_key", "answer",
              "--manifest", str(path)) == 0
  assert "no validation split: a run on it trains with train-eval off" in \
      capsys.readouterr().out


def test_a_folder_with_a_stray_file_is_refused(tmp_path, capsys):
  folder = tmp_path / "data"
  _qa(folder / "train.jsonl", 2)
  _qa(folder / "extra.jsonl", 2)
  assert _add("qa", "--path", str(folder), "--language", "sw",
              "--manifest", str(tmp_path / "m.json")) == 2
  assert "extra.jsonl belong to no split" in capsys.readouterr().err
  assert not (tmp_path / "m.json").exists()


def test_a_failed_add_leaves_the_manifest_as_it_was(tmp_path, capsys):
  path = tmp_path / "m.json"
  good = _qa(tmp_path / "good.jsonl", 3)
  assert _add("good", "--train", str(good), "--language", "sw", "--inputs_key", "question",
              "--targets_key", "answer", "--manifest", str(path)) == 0
  before = path.read_bytes()
  bad = fixtures.write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a"}],
                             extra_lines=[b"{broken"])
  for args in (["--train", str(bad)],                       # a malformed line
               ["--train", str(good), "--test", str(bad)],  # a malformed later split
               ["--train", str(tmp_path / "missing.jsonl")]):
    assert _add("bad", *args, "--language", "sw", "--inputs_key", "question",
                "--targets_key", "answer", "--manifest", str(path)) == 2
    assert path.read_bytes() == before
  assert "bad.jsonl:2" in capsys.readouterr().err
  assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.json")] == []


def test_empty_files_and_filtered_out_files_are_refused_with_the_reason(tmp_path, capsys):
  path = tmp_path / "m.json"
  empty = tmp_path / "empty.jsonl"
  empty.write_text("")
  assert _add("e", "--train", str(empty), "--language", "sw", "--manifest", str(path)) == 2
  assert "split train: " in (err := capsys.readouterr().err) and "is empty" in err
  # Every record's language is one no table knows: the filter removes them all.
  other = fixtures.write_jsonl(tmp_path / "other.jsonl", [
      {"inputs": "a", "targets": "b", "lang": "tn"}] * 3)
  assert _add("o", "--train", str(other), "--language_key", "lang",
              "--manifest", str(path)) == 2
  err = capsys.readouterr().err
  assert "no example of" in err and "left after the filters" in err and "mt5_languages" in err
  assert not path.exists()


def test_paths_are_relative_to_the_manifest_not_the_current_folder(tmp_path, monkeypatch,
                                                                  small_vocabulary):
  project = tmp_path / "project"
  _qa(project / "data" / "train.jsonl", 5)
  path = project / "config" / "tasks.json"
  monkeypatch.chdir(project)
  assert _add("qa", "--train", "data/train.jsonl", "--language", "sw", "--inputs_key",
              "question", "--targets_key", "answer", "--manifest", "config/tasks.json") == 0
  assert manifest.read(path).tasks[0]["splits"] == {"train": "../data/train.jsonl"}
  # Moved with its data, read from anywhere.
  moved = tmp_path / "moved"
  project.rename(moved)
  monkeypatch.chdir(tmp_path)
  (loaded,) = manifest.load_manifest(str(moved / "config" / "tasks.json"), small_vocabulary)
  assert loaded.train_size == 5


def test_an_older_entry_with_a_path_still_loads(tmp_path, small_vocabulary):
  _qa(tmp_path / "qa.jsonl", 3)
  path = tmp_path / "m.json"
  path.write_text(json.dumps({"tasks": [{"name": "old", "path": "qa.jsonl", "language": "sw",
                                         "inputs_key": "question", "targets_key": "answer"}]}))
  (loaded,) = manifest.load_manifest(str(path), small_vocabulary)
  assert loaded.train_size == 3


def test_bad_manifest_names_the_field(tmp_path):
  path = tmp_path / "tasks.json"
  path.write_text(json.dumps({"tasks": [{"name": "x y", "path": "p"}]}))
  with pytest.raises(ValueError, match=r"task 0: field 'name' 'x y'"):
    manifest.read(path)
  path.write_text(json.dumps({"tasks": [{"name": "x", "splits": {"dev2": "p"}}]}))
  with pytest.raises(ValueError, match=r"task 0: split 'dev2'"):
    manifest.read(path)
  path.write_text(json.dumps({"tasks": [], "languages": [{"code": "tn", "name": "Tswana",
                                                           "script": "Latin", "group": "LR"}]}))
  with pytest.raises(ValueError, match=r"language 0: .*ISO 15924"):
    manifest.read(path)
  path.write_text('{"tasks": [')
  with pytest.raises(ValueError, match=r"tasks.json:1: broken JSON"):
    manifest.read(path)


def test_an_added_language_is_a_task_language_from_its_manifest(tmp_path, capsys,
                                                                small_vocabulary):
  data = fixtures.write_jsonl(tmp_path / "tn.jsonl", [
      {"inputs": f"Potso {i}", "targets": f"Karabo {i}", "lang": "tsn"} for i in range(4)])
  path = tmp_path / "m.json"
  assert _add("tswana", "--train", str(data), "--language", "tn",
              "--manifest", str(path)) == 2
  assert "aya-t5x languages add tn" in capsys.readouterr().err
  assert cli.main(["languages", "add", "Setswana", "--name", "Tswana", "--script", "Latn",
                   "--group", "LR", "--manifest", str(path)]) == 0
  languages.clear_user_languages()  # a new process knows it from the manifest only
  assert _add("tswana", "--train", str(data), "--language_key", "lang",
              "--manifest", str(path)) == 0
  languages.clear_user_languages()
  (loaded,) = manifest.load_manifest(str(path), small_vocabulary)
  assert [t.name for t in loaded.tasks] == ["tswana.tn"]
  assert loaded.tasks[0].resource_group == "LR"
  assert languages.get_language("tsn").name == "Tswana"
  assert not languages.is_mt5_language("tn")


def _mixture_manifest(tmp_path):
  path = tmp_path / "m.json"
  _qa(tmp_path / "a.jsonl", 30)
  _qa(tmp_path / "b.jsonl", 10, prefix="B")
  for name in ("a", "b"):
    assert _add(f"task_{name}", "--train", str(tmp_path / f"{name}.jsonl"), "--language", "sw",
                "--inputs_key", "question", "--targets_key", "answer",
                "--manifest", str(path)) == 0
  return path


@pytest.mark.parametrize("rate_by, tasks, expected", [
    (None, ["task_a=3", "task_b=1"], {"task_a": 0.75, "task_b": 0.25}),
    ("examples", ["task_a", "task_b=3"], {"task_a": 0.5, "task_b": 0.5}),
    ("temperature:2", ["task_a", "task_b"],
     {"task_a": 3 ** 0.5 / (3 ** 0.5 + 1), "task_b": 1 / (3 ** 0.5 + 1)}),
])
def test_mixture_rates(tmp_path, rate_by, tasks, expected):
  path = _mixture_manifest(tmp_path)
  args = ["mixture", "add", "mix", "--manifest", str(path)]
  for task in tasks:
    args += ["--task", task]
  assert cli.main(args + (["--rate_by", rate_by] if rate_by else [])) == 0
  read_back = manifest.read(path)
  plan = manifest.plan_mixture(read_back, "mix", manifest.plan_tasks(read_back))
  assert plan.task_rates == pytest.approx(expected)


def test_mixture_add_refuses_unknown_tasks_and_leaves_the_manifest(tmp_path, capsys):
  path = _mixture_manifest(tmp_path)
  before = path.read_bytes()
  assert cli.main(["mixture", "add", "mix", "--task", "task_c=1", "--manifest", str(path)]) == 2
  assert "mixture member 'task_c' is no task of the manifest" in capsys.readouterr().err
  assert cli.main(["mixture", "add", "mix", "--task", "task_a", "--manifest", str(path)]) == 2
  assert "give its rate (TASK=RATE), or --rate_by" in capsys.readouterr().err
  assert path.read_bytes() == before


def test_mixture_report_of_a_manifest_mixture(tmp_path, capsys):
  path = _mixture_manifest(tmp_path)
  assert cli.main(["mixture", "add", "mix", "--task", "task_a=1", "--task", "task_b=1",
                   "--manifest", str(path)]) == 0
  assert cli.main(["mixture", "report", "mix", "--manifest", str(path), "--steps", "10",
                   "--batch", "4", "--out", str(tmp_path / "rep")]) == 0
  report = json.loads((tmp_path / "rep" / "mix.json").read_text())
  epochs = {t["task"]: t["epochs"] for t in report["tasks"]}
  assert epochs == pytest.approx({"task_a": 20 / 30, "task_b": 20 / 10})
  # The same through gin's TASK_MANIFEST.
  assert cli.main(["mixture", "report", "mix", "--steps", "10", "--batch", "4", "--out",
                   str(tmp_path / "rep2"), "--gin_file", "runs/finetune.gin",
                   f"--gin.TASK_MANIFEST='{path}'"]) == 0


def test_a_mixture_by_name_in_two_processes(tmp_path, small_vocabulary):
  """`mixture add` here; two other processes (two hosts) read it by name through gin."""
  path = _mixture_manifest(tmp_path)
  assert cli.main(["mixture", "add", "mix", "--task", "task_a=1", "--task", "task_b=1",
                   "--manifest", str(path)]) == 0
  spm = small_vocabulary.sentencepiece_model_file
  script = textwrap.dedent(f"""
      import json, gin, seqio
      from aya_t5x import configurables, gin_config, input_pipeline
      gin_config.parse_gin(["runs/finetune.gin", "mixtures/vocabulary.gin"], [
          "VOCABULARY_PATH={spm!r}", "TASK_MANIFEST={str(path)!r}",
          "MIXTURE_OR_TASK_NAME='mix'", "MODEL_DIR='unused'", "BATCH_SIZE=4",
          "USE_PACKING=False", "TASK_FEATURE_LENGTHS={{'inputs': 8, 'targets': 8}}"])
      with gin.config_scope("train"):
        config = configurables.CONFIGURABLES["DatasetConfig"]()
      batch = next(iter(input_pipeline.BatchIterator(config)))
      mix = seqio.get_mixture_or_task("mix")
      print(json.dumps({{"tasks": sorted(t.name for t in mix.tasks),
                        "rates": [mix.get_rate(t) for t in mix.tasks],
                        "batch": batch["encoder_input_tokens"].tolist()}}))
      """)
  outputs = []
  for _ in range(2):
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr[-2000:]
    outputs.append(json.loads(out.stdout.strip().splitlines()[-1]))
  assert outputs[0]["tasks"] == ["task_a", "task_b"]
  assert outputs[0]["rates"] == pytest.approx([0.5, 0.5])
  assert outputs[0] == outputs[1] and len(outputs[0]["batch"]) == 4


def test_mixture_report_of_any_registered_mixture(tmp_path, monkeypatch, small_vocabulary):
  """A mixture a user's module registers with seqio: rates as registered, sizes known."""
  _qa(tmp_path / "a.jsonl", 30)
  _qa(tmp_path / "b.jsonl", 10, prefix="B")
  spm = small_vocabulary.sentencepiece_model_file
  (tmp_path / "my_mixture_module.py").write_text(textwrap.dedent(f"""
      import seqio
      from aya_t5x.data import registration
      from aya_t5x.vocab import vocabulary
      vocab = vocabulary.sentencepiece_vocabulary({spm!r})
      for name in ("a", "b"):
        registration.register_jsonl_task(
            f"mod_{{name}}", {str(tmp_path)!r} + f"/{{name}}.jsonl", vocabulary=vocab,
            language="sw", inputs_key="question", targets_key="answer")
      if "my_mod_mix" in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove("my_mod_mix")
      seqio.MixtureRegistry.add("my_mod_mix", [("mod_a", 3.0), ("mod_b", 1.0)])
      """))
  monkeypatch.chdir(tmp_path)
  monkeypatch.syspath_prepend(str(tmp_path))
  assert cli.main(["mixture", "report", "my_mod_mix", "--module", "my_mixture_module",
                   "--steps", "10", "--batch", "4", "--out", str(tmp_path / "rep")]) == 0
  report = json.loads((tmp_path / "rep" / "my_mod_mix.json").read_text())
  rates = {t["task"]: t["rate"] for t in report["tasks"]}
  assert rates == pytest.approx({"mod_a": 0.75, "mod_b": 0.25})
  assert {t["task"]: t["examples_available"] for t in report["tasks"]} == {"mod_a": 30,
                                                                          "mod_b": 10}


def test_a_languages_file_adds_languages_without_tasks(tmp_path):
  from aya_t5x import input_pipeline

  path = tmp_path / "languages.json"
  assert cli.main(["languages", "add", "tzm-Tfng", "--name", "Central Atlas Tamazight",
                   "--group", "LR", "--manifest", str(path)]) == 0
  languages.clear_user_languages()
  input_pipeline.register_languages_file(str(path))
  found = languages.get_language("tzm_Tfng")
  assert (found.code, found.script, found.group) == ("tzm", "Tfng", "LR")
  with pytest.raises(input_pipeline.DataConfigError, match="LANGUAGES_FILE .* does not exist"):
    input_pipeline.register_languages_file(str(tmp_path / "missing.json"))
