"""The aya-t5x command: model-info sizes, gin flags and their errors, a fast --help."""

import os
import subprocess
import sys

import pytest

from aya_t5x import cli


@pytest.mark.parametrize("size,published", [
    ("small", "0.30B"), ("base", "0.58B"), ("large", "1.23B"), ("xl", "3.74B"),
    ("xxl", "12.9B")])
def test_model_info_gives_the_published_sizes(size, published, capsys):
  assert cli.main(["model-info", "--gin_file", f"gin/models/mt5_{size}.gin"]) == 0
  out = capsys.readouterr().out
  assert f"parameters: {published} " in out
  assert "token_embedder" in out and "GiB" in out


def test_gin_binding_overrides_the_file(capsys):
  assert cli.main(["model-info", "--gin_file", "models/mt5_small.gin",
                   "--gin.MT5Config.num_decoder_layers=4"]) == 0
  assert "layers=8/4" in capsys.readouterr().out


@pytest.mark.parametrize("args,expected", [
    (["--gin.MT5Config.d_modle=4"], "Did you mean MT5Config.d_model"),
    (["--gin.MT5Confg.d_model=4"], "Did you mean MT5Config"),
    (["--gin_file", "models/mt5_smal.gin"], "mt5_small.gin"),
    ([], "No model size configured"),
])
def test_gin_mistakes_name_the_fix(args, expected, capsys):
  base = [] if "--gin_file" in args else ["--gin_file", "models/mt5_tiny.gin"]
  if not args:
    base = []
  assert cli.main(["model-info", *base, *args]) == 2
  assert expected in capsys.readouterr().err


def test_binding_without_value_is_a_usage_error():
  with pytest.raises(SystemExit):
    cli.main(["model-info", "--gin.MT5Config.d_model"])


def test_help_does_not_import_the_heavy_libraries():
  code = ("import sys, contextlib, io\n"
          "from aya_t5x import cli\n"
          "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
          "  cli.main(['--help'])\n"
          "heavy = [m for m in ('jax', 'flax', 'tensorflow', 'seqio', 'torch') "
          "if m in sys.modules]\n"
          "print(heavy)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True).stdout
  assert out.strip() == "[]"


def test_a_bad_language_table_is_an_error_line_not_a_traceback(tmp_path):
  from aya_t5x.data import languages

  rows = languages.TABLE.read_text(encoding="utf-8").splitlines()
  header, first = rows[0], rows[1].split(",")
  first[header.split(",").index("group")] = "MR" if first[6] != "3" else "HR"
  bad = tmp_path / "languages.csv"
  bad.write_text("\n".join([header, ",".join(first), *rows[2:]]) + "\n", encoding="utf-8")
  code = ("import sys\nfrom pathlib import Path\nfrom aya_t5x.data import languages\n"
          f"languages.TABLE = Path({str(bad)!r})\n"
          "from aya_t5x import cli\nsys.exit(cli.main(['--help']))\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
  assert result.returncode == 2
  assert result.stderr.startswith("aya-t5x: error: ") and "Traceback" not in result.stderr
  assert f"{bad}:2: group" in result.stderr


def test_a_folder_named_like_an_include_does_not_break_gin(tmp_path):
  """Under `python -m` the working folder is importable; a runs/ there is no gin package."""
  (tmp_path / "runs").mkdir()
  (tmp_path / "models").mkdir()
  result = subprocess.run(
      [sys.executable, "-m", "aya_t5x.cli", "model-info", "--gin_file", "models/mt5_tiny.gin",
       "--gin_file", "runs/aya_recipe.gin"], cwd=tmp_path, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "parameters:" in result.stdout


def test_the_renamed_topology_folder_still_works_and_names_the_new_path(caplog):
  import gin
  from aya_t5x import gin_config

  def partitioning(path):
    gin_config.parse_gin(["models/mt5_xxl.gin", "runs/aya_recipe.gin", path])
    return (gin.query_parameter("MT5Config.remat_policy"),
            gin.query_parameter("MT5Config.scan_layers"),
            gin.query_parameter("train.num_microbatches"))

  new = partitioning("topologies/xxl_v4_128.gin")
  assert not [r for r in caplog.records if "has moved" in r.getMessage()]
  old = partitioning("aya/xxl_v4_128.gin")
  assert old == new
  moved = [r.getMessage() for r in caplog.records if "has moved" in r.getMessage()]
  assert moved and "'topologies/xxl_v4_128.gin'" in moved[0]


_START_UP_NOISE = ("cudart_stub", "cpu_feature_guard", "E0000", "libtpu", "TPU_WORKER_HOSTNAMES",
                   "absl::InitializeLog")


def _as_a_user_runs(command: list[str], tmp_path) -> subprocess.CompletedProcess:
  """Runs a command without the suite's own quieting variables (conftest sets them)."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "JAX_PLATFORMS", "XLA_FLAGS")}
  return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path,
                        timeout=300)


def test_a_command_that_loads_tensorflow_and_jax_prints_only_its_own_lines(tmp_path):
  # gin loads the trainer (jax) and the input pipeline (seqio, so TensorFlow) before it
  # finds the unset macros; the error must be the whole of stderr.
  result = _as_a_user_runs([sys.executable, "-m", "aya_t5x.cli", "train", "--gin_file",
                            "models/mt5_tiny.gin", "--gin_file", "runs/finetune.gin"], tmp_path)
  assert result.returncode == 2
  assert result.stderr.startswith("aya-t5x train: error: These gin macros must be set"), (
      result.stderr)


@pytest.mark.parametrize("verbose", [False, True])
def test_start_up_messages_are_hidden_unless_asked_for(verbose, tmp_path):
  result = _as_a_user_runs(
      [sys.executable, "-c", "from aya_t5x import startup\n"
       f"print(startup.quiet_start(verbose={verbose}))\n"
       "import tensorflow, jax\nprint(jax.devices())"], tmp_path)
  assert result.returncode == 0, result.stderr
  assert "CpuDevice" in result.stdout
  noise = [n for n in _START_UP_NOISE if n in result.stderr]
  # On this CPU machine TensorFlow always reports its missing CUDA driver, and libtpu (CI
  # installs it) probes for a TPU: with --verbose those lines are there, as without aya_t5x.
  assert bool(noise) == verbose, result.stderr


@pytest.mark.parametrize("binding,fix", [
    ("MODEL_DIR=/tmp/x", "--gin.MODEL_DIR=\"'/tmp/x'\""),
    ("MODEL_DIR=gs://bucket/run", "--gin.MODEL_DIR=\"'gs://bucket/run'\""),
    ("MIXTURE_OR_TASK_NAME=my task", "--gin.MIXTURE_OR_TASK_NAME=\"'my task'\""),
])
def test_a_gin_string_without_inner_quotes_names_the_binding_and_the_fix(binding, fix,
                                                                        capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(["train", "--gin_file", "models/mt5_tiny.gin", "--gin_file",
              "runs/finetune.gin", f"--gin.{binding}"])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("usage: aya-t5x train")
  error = err.strip().splitlines()[-1]
  assert error.startswith(f"aya-t5x train: error: --gin.{binding}: gin cannot parse the value")
  assert error.endswith(fix)


def test_a_broken_gin_literal_is_named_without_a_quoting_hint(capsys):
  with pytest.raises(SystemExit):
    cli.main(["model-info", "--gin.TASK_FEATURE_LENGTHS={'inputs': 16"])
  error = capsys.readouterr().err.strip().splitlines()[-1]
  assert "--gin.TASK_FEATURE_LENGTHS={'inputs': 16: gin cannot parse the value" in error
  assert "quotes of its own" not in error


def test_train_help_lists_the_run_macros(capsys):
  with pytest.raises(SystemExit):
    cli.main(["train", "--help"])
  out = capsys.readouterr().out
  macros = out[out.index("run macros (runs/finetune.gin"):].splitlines()[1:]
  listed = {line.split()[0]: line.split(None, 1)[1] for line in macros if line.strip()}
  assert listed["MODEL_DIR"] == "required" and listed["MIXTURE_OR_TASK_NAME"] == "required"
  assert listed["TRAIN_STEPS"].startswith("default 10000; fine-tuning steps")
  assert listed["INITIAL_CHECKPOINT_PATH"].startswith("default None; an aya_t5x, T5X")
  assert {"BATCH_SIZE", "LEARNING_RATE", "TASK_FEATURE_LENGTHS", "TASK_MANIFEST"} <= set(listed)
  assert not any(name.startswith("train.") for name in listed)  # bindings, not macros


@pytest.mark.parametrize("argv,usage,named", [
    (["infer", "--checkpoint", "c", "--input", "i", "--output", "o", "--prompt", "hi"],
     "usage: aya-t5x infer", "'--prompt'"),
    (["infer", "--checkpoint", "c", "--input", "i", "--output", "o", "--inptu_key", "q"],
     "usage: aya-t5x infer", "did you mean --input_key"),
    (["model-info", "--gin_fle", "models/mt5_tiny.gin"], "usage: aya-t5x model-info",
     "did you mean --gin_file"),
])
def test_a_misspelled_subcommand_flag_prints_the_subcommand_usage(argv, usage, named, capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.main(argv)
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith(usage), err
  assert "COMMAND" not in err  # not the top-level usage
  assert "unrecognised argument" in err and named in err


def test_train_prints_its_own_lines_first(tmp_path):
  from aya_t5x.testing.tiny_runs import gin_args

  result = _as_a_user_runs([sys.executable, "-m", "aya_t5x.cli", "train",
                            *gin_args(tmp_path / "run", 1)], tmp_path)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("initialised from random weights"), result.stdout
  # stderr holds one note, in the program's words: no logging format, no library lines.
  assert result.stderr.splitlines() == [
      next(line for line in result.stderr.splitlines() if line.startswith("note: Training "
                                                                          "reads its tasks"))]
