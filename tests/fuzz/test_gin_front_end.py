"""Fuzzed gin command lines: `--gin.NAME=VALUE` flags, stray arguments and gin files.

`aya-t5x model-info` (parses gin and builds the model's shapes, no allocation) must
answer 0 or print one error line and answer 2 (argparse's usage errors exit 2): a
TypeError or a gin traceback from a mistyped value is a crash.
"""

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from aya_t5x import cli
from tests.fuzz.inputs import INPUTS, TEXT

NAMES = st.one_of(st.sampled_from([
    "MT5Config.d_model", "MT5Config.num_heads", "MT5Config.vocab_size", "MT5Config.dtype",
    "MT5Config.mlp_activations", "MT5Config.scan_layers", "MT5Config.remat_policy",
    "MODEL_DIR", "TRAIN_STEPS", "train.seed", "Partitioner.num_partitions",
    "MT5Config.d_kv", "MT5Config.nope"]), st.text(max_size=12))
VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1e9", "None", "True", "'x'", "\"x\"", "[1, 2", "{", "@x()",
                     "%MISSING", "('gelu',)", "'bfloat16'", "3.5", "[]", "nan", "", "'", "\\"]),
    st.integers().map(str), TEXT)
ARGS = st.lists(st.one_of(
    st.tuples(NAMES, VALUES).map(lambda nv: f"--gin.{nv[0]}={nv[1]}"),
    st.sampled_from(["--gin.MT5Config.d_model", "--gin.", "--gin_file", "--unknown", "-x",
                     "--gin_search_paths"]),
    TEXT.map(lambda t: t[:30])), max_size=4)


@given(ARGS, st.one_of(st.none(), st.binary(max_size=200), TEXT.map(
    lambda t: t.encode("utf-8", "surrogatepass")), st.tuples(NAMES, VALUES).map(
        lambda nv: f"{nv[0]} = {nv[1]}\n".encode("utf-8", "surrogatepass"))))
@example(args=["--gin.MT5Config.d_model='x'"], gin_file=None)
@example(args=[], gin_file=b"\xff\xfe")
def test_model_info_command_line(tmp_path_factory, capsys, args, gin_file):
  INPUTS["gin command line"] += 1
  files = ["--gin_file", "models/mt5_tiny.gin"]
  if gin_file is not None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.gin"
    path.write_bytes(gin_file)
    files += ["--gin_file", str(path)]
  try:
    status = cli.main(["model-info", *files, *args])
  except SystemExit as e:  # argparse's usage error: one line, exit 2
    status = e.code
  err = capsys.readouterr().err
  assert status in (0, 2), (status, err[-2000:])
  assert "Traceback" not in err
  if status == 2:
    assert "error" in err


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  import gin

  gin.clear_config()
