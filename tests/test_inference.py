"""aya-t5x infer: JSONL in and out, in order, bad lines counted, same tokens as decoding."""

import dataclasses
import json

import jax
import numpy as np
import pytest
import seqio

from aya_t5x import cli, decoding, inference, model, testing
from aya_t5x.checkpoints import native

CONFIG = dataclasses.replace(testing.TINY, vocab_size=259)  # seqio.ByteVocabulary


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  params = model.init_params(CONFIG, jax.random.key(3))
  path = tmp_path_factory.mktemp("ckpt") / "params"
  native.save_params(params, CONFIG, path)
  return params, path


def test_completions_match_direct_greedy_decoding_and_bad_lines_are_counted(saved, tmp_path):
  params, path = saved
  prompts = ["translate to Swahili: 3 0 7", "a much longer prompt than the others, really", "x"]
  lines = [json.dumps({"inputs": prompts[0], "id": "a7", "language": "sw"}), "{broken",
           json.dumps({"inputs": prompts[1]}),
           json.dumps({"other": 1}), json.dumps({"inputs": prompts[2]})]
  (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
  vocabulary = seqio.ByteVocabulary()
  options = decoding.DecodingOptions(method="greedy", max_decode_length=12)
  report = inference.infer_jsonl(params, CONFIG, vocabulary, tmp_path / "in.jsonl",
                                 tmp_path / "out.jsonl", options, batch_size=2)
  assert report.written == 3 and sorted(report.skipped) == [2, 4]
  rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert [r["line"] for r in rows] == [1, 3, 5]
  assert (rows[0]["id"], rows[0]["language"]) == ("a7", "sw")  # other fields travel along
  assert not list(tmp_path.glob("*.partial"))
  for row, prompt in zip(rows, prompts):
    tokens = np.asarray([list(vocabulary.encode(prompt)) + [1]], np.int32)
    out = np.asarray(decoding.greedy_decode(params, CONFIG, tokens, max_decode_length=12))[0]
    out = out[:np.argmax(out == 1)] if (out == 1).any() else out
    assert row["completion"] == vocabulary.decode([int(t) for t in out if t > 1])


def test_cli_reads_any_checkpoint_and_needs_a_vocabulary(saved, tmp_path, capsys):
  _, path = saved
  (tmp_path / "in.jsonl").write_text(json.dumps({"q": "hello"}) + "\n")
  args = ["infer", "--checkpoint", str(path), "--input", str(tmp_path / "in.jsonl"),
          "--output", str(tmp_path / "out.jsonl"), "--input_key", "q",
          "--max_decode_length", "4", "--gin_file", "models/mt5_tiny.gin",
          "--gin.MT5Config.vocab_size=259", f"--gin.MT5Config.d_model={CONFIG.d_model}",
          f"--gin.MT5Config.d_kv={CONFIG.d_kv}", f"--gin.MT5Config.d_ff={CONFIG.d_ff}"]
  with pytest.raises(SystemExit):
    cli.main(args)
  assert "--vocabulary" in capsys.readouterr().err
  assert cli.main([*args, "--task", "test_bytes", "--module", "aya_t5x.testing.fixture_tasks"]) == 0
  assert "wrote 1 completions" in capsys.readouterr().out
  assert json.loads((tmp_path / "out.jsonl").read_text())["inputs"] == "hello"
  # Prompts under another field: nothing written is an error, not a success.
  wrong_key = [a if a != "q" else "prompt" for a in args]
  assert cli.main([*wrong_key, "--task", "test_bytes", "--module",
                   "aya_t5x.testing.fixture_tasks"]) == 2
  assert "is the prompt's field --input_key 'prompt'?" in capsys.readouterr().err
