"""Tests of aya_t5x.checkpoints.t5x_legacy: the legacy T5X msgpack + TensorStore layout.

The layout is checked with tools other than the module itself (plain `msgpack`, `json`
and a direct `tensorstore` open), so a writer and reader that agree on a wrong format
would still fail.
"""

import json
import re
import shutil

import ml_dtypes
import msgpack
import numpy as np
import pytest
import tensorstore as ts
from flax import serialization, traverse_util

from aya_t5x.checkpoints.t5x_legacy import (
    read_t5x_checkpoint,
    read_t5x_step,
    write_t5x_checkpoint,
)

QUERY = "encoder/layers_0/attention/query/kernel"
QUERY_DIR = "target.encoder.layers_0.attention.query.kernel"


@pytest.fixture
def params(rng):
  """A small parameter tree with mT5's T5X names."""
  shapes = {
      "token_embedder/embedding": (32, 8),
      QUERY: (8, 16),
      "encoder/layers_0/pre_attention_layer_norm/scale": (8,),
      "encoder/relpos_bias/rel_embedding": (2, 32),
      "decoder/logits_dense/kernel": (8, 32),
  }
  flat = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
  return traverse_util.unflatten_dict(flat, sep="/")


@pytest.fixture
def checkpoint(tmp_path, params):
  path = tmp_path / "checkpoint_1000"
  write_t5x_checkpoint(params, path, step=1000)
  return path


def _assert_same_tree(got, want):
  got_flat = traverse_util.flatten_dict(got, sep="/")
  want_flat = traverse_util.flatten_dict(want, sep="/")
  assert sorted(got_flat) == sorted(want_flat)
  for name, value in want_flat.items():
    assert isinstance(got_flat[name], np.ndarray), name
    assert got_flat[name].dtype == value.dtype, name
    np.testing.assert_array_equal(got_flat[name], value, err_msg=name)


def test_layout_is_msgpack_index_plus_one_zarr_array_per_parameter(checkpoint):
  assert (checkpoint / "checkpoint").is_file()
  zarray = json.loads((checkpoint / QUERY_DIR / ".zarray").read_text())
  assert zarray["zarr_format"] == 2
  assert zarray["shape"] == [8, 16]
  assert zarray["dtype"] == "<f4"
  assert zarray["compressor"]["id"] == "gzip"
  assert all(s % c == 0 for s, c in zip(zarray["shape"], zarray["chunks"], strict=True))

  # The index, decoded with plain msgpack (no flax): version 3, parameters under
  # optimizer/target as TensorStore specs with paths relative to the checkpoint.
  index = msgpack.unpackb((checkpoint / "checkpoint").read_bytes(), raw=False)
  assert index["version"] == 3
  spec = index["optimizer"]["target"]["encoder"]["layers_0"]["attention"]["query"]["kernel"]
  assert spec["driver"] == "zarr"
  assert spec["kvstore"]["driver"] == "file"
  assert spec["kvstore"]["path"].rstrip("/") == QUERY_DIR
  assert spec["metadata"]["shape"] == [8, 16]
  assert set(index["optimizer"]["state"]) == {"step", "param_states"}


def test_round_trip_gives_the_same_tree_and_arrays(checkpoint, params):
  _assert_same_tree(read_t5x_checkpoint(checkpoint), params)
  assert read_t5x_step(checkpoint) == 1000


def test_reads_from_the_checkpoint_file_path_too(checkpoint, params):
  _assert_same_tree(read_t5x_checkpoint(checkpoint / "checkpoint"), params)


def test_array_opened_directly_with_tensorstore_matches(checkpoint, params):
  store = ts.open({
      "driver": "zarr",
      "kvstore": {"driver": "file", "path": str(checkpoint / "target.decoder.logits_dense.kernel")},
  }).result()
  np.testing.assert_array_equal(store.read().result(), params["decoder"]["logits_dense"]["kernel"])


def test_bfloat16_keeps_its_dtype(tmp_path, rng):
  params = {"encoder": {"scale": rng.standard_normal(8).astype(ml_dtypes.bfloat16)}}
  write_t5x_checkpoint(params, tmp_path)
  assert json.loads((tmp_path / "target.encoder.scale" / ".zarray").read_text())["dtype"] == (
      "bfloat16")
  _assert_same_tree(read_t5x_checkpoint(tmp_path), params)


def test_inline_arrays_and_foreign_or_old_style_paths(checkpoint, params):
  """Arrays stored in the msgpack itself; specs with another machine's paths or old style."""
  index = serialization.msgpack_restore((checkpoint / "checkpoint").read_bytes())
  target = index["optimizer"]["target"]
  target["encoder"]["layers_0"]["attention"]["query"]["kernel"]["kvstore"] = {
      "driver": "gcs", "bucket": "t5x-dummy-bucket",
      "path": f"pretrained_models/t5x/mt5_xxl/checkpoint_1000000/{QUERY_DIR}/"}
  target["decoder"]["logits_dense"]["kernel"]["kvstore"]["path"] = (
      "/home/someone/old_run/target.decoder.logits_dense.kernel")
  # TensorStore < 0.1.14 kept the path beside the kvstore.
  relpos = target["encoder"]["relpos_bias"]["rel_embedding"]
  relpos["kvstore"] = {"driver": "file"}
  relpos["path"] = "target.encoder.relpos_bias.rel_embedding"
  inline_scale = np.arange(8, dtype=np.float32)
  target["encoder"]["layers_0"]["pre_attention_layer_norm"]["scale"] = inline_scale
  (checkpoint / "checkpoint").write_bytes(serialization.msgpack_serialize(index))

  expected = traverse_util.unflatten_dict(
      traverse_util.flatten_dict(params) | {
          ("encoder", "layers_0", "pre_attention_layer_norm", "scale"): inline_scale})
  _assert_same_tree(read_t5x_checkpoint(checkpoint), expected)


def test_missing_array_names_the_parameter_and_path(checkpoint):
  shutil.rmtree(checkpoint / QUERY_DIR)
  with pytest.raises(ValueError, match=re.escape(QUERY.replace("/", "."))) as error:
    read_t5x_checkpoint(checkpoint)
  assert str(checkpoint / QUERY_DIR) in str(error.value)


def test_corrupt_array_chunk_names_the_parameter(checkpoint):
  (checkpoint / QUERY_DIR / "0.0").write_bytes(b"not gzip data")
  with pytest.raises(ValueError, match=re.escape(QUERY.replace("/", "."))):
    read_t5x_checkpoint(checkpoint)


def test_shape_differing_from_the_index_names_the_parameter(checkpoint):
  index = serialization.msgpack_restore((checkpoint / "checkpoint").read_bytes())
  index["optimizer"]["target"]["token_embedder"]["embedding"]["metadata"]["shape"] = [64, 8]
  (checkpoint / "checkpoint").write_bytes(serialization.msgpack_serialize(index))
  with pytest.raises(ValueError, match=r"token_embedder\.embedding.*\(32, 8\).*\(64, 8\)"):
    read_t5x_checkpoint(checkpoint)


def test_corrupt_msgpack_names_the_file(checkpoint):
  (checkpoint / "checkpoint").write_bytes(b"\xc1 this is not msgpack")
  with pytest.raises(ValueError, match=re.escape(str(checkpoint / "checkpoint"))):
    read_t5x_checkpoint(checkpoint)


def test_missing_path_names_it(tmp_path):
  missing = tmp_path / "checkpoint_7"
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
    read_t5x_checkpoint(missing)
  missing.mkdir()
  with pytest.raises(FileNotFoundError, match=re.escape(str(missing / "checkpoint"))):
    read_t5x_checkpoint(missing)


def test_refuses_to_overwrite_a_checkpoint(checkpoint, params):
  with pytest.raises(FileExistsError, match="checkpoint"):
    write_t5x_checkpoint(params, checkpoint)
