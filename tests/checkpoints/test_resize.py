"""Growing a checkpoint to an extended vocabulary, checked against transformers itself."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm
import torch
import transformers
from flax import traverse_util

from aya_t5x import model, testing
from aya_t5x.checkpoints import formats, hf, native, resize, t5x_legacy
from aya_t5x.testing import vocabularies
from aya_t5x.testing.models import hf_reference_model, hf_state_dict_numpy
from aya_t5x.vocab import extension, vocabulary

OLD_PIECES = 300
OLD_ROWS = 304  # 4 padding rows past the pieces, as mT5 pads 250,100 pieces to 250,112 rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  folder = tmp_path_factory.mktemp("resize")
  base_text = vocabularies.write_sentences(folder / "base.txt")
  new_text = vocabularies.write_sentences(folder / "dv.txt", 150, seed=1, new_script=True)
  old = vocabulary.train_sentencepiece([base_text], folder / "base.model", vocab_size=300,
                                       model_type="bpe")
  new = extension.extend_vocabulary(old, [new_text], folder / "new.model", pieces=100).path
  config = dataclasses.replace(testing.TINY, vocab_size=OLD_ROWS)
  params = hf.params_from_hf_state_dict(hf_state_dict_numpy(hf_reference_model(config, seed=3)),
                                        config)
  native.save_params(params, config, folder / "old")
  return {"folder": folder, "old": old, "new": new, "config": config, "params": params}


@pytest.fixture(scope="module")
def resized(setup):
  result = resize.resize_checkpoint(setup["folder"] / "old", setup["folder"] / "resized",
                                    old_vocabulary=setup["old"], new_vocabulary=setup["new"])
  params, config = native.load_params(result.destination)
  return result, params, config


def _flat(params):
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}


def test_rows_grow_to_a_multiple_of_128_and_old_rows_are_bit_identical(setup, resized):
  result, params, config = resized
  pieces = spm.SentencePieceProcessor(model_file=str(setup["new"])).get_piece_size()
  assert pieces > OLD_ROWS  # the 4 padding rows are used first, then the table grows
  assert config.vocab_size == result.config.vocab_size == 512
  assert native.read_config(result.destination).vocab_size == 512  # the stored config
  old, new = _flat(setup["params"]), _flat(params)
  assert set(old) == set(new)
  # Every old piece's row and column is kept; the padding rows are the first new pieces'.
  for name, value in old.items():
    if name == "token_embedder/embedding":
      np.testing.assert_array_equal(new[name][:OLD_PIECES], value[:OLD_PIECES])
    elif name == "decoder/logits_dense/kernel":
      np.testing.assert_array_equal(new[name][:, :OLD_PIECES], value[:, :OLD_PIECES])
    else:
      np.testing.assert_array_equal(new[name], value, err_msg=name)


def test_new_rows_are_the_mean_of_their_old_sub_pieces(setup, resized):
  _, params, _ = resized
  old = spm.SentencePieceProcessor(model_file=str(setup["old"]))
  new = spm.SentencePieceProcessor(model_file=str(setup["new"]))
  embedding = np.asarray(setup["params"]["token_embedder"]["embedding"])
  kernel = np.asarray(setup["params"]["decoder"]["logits_dense"]["kernel"])
  grown_embedding = np.asarray(params["token_embedder"]["embedding"])
  grown_kernel = np.asarray(params["decoder"]["logits_dense"]["kernel"])
  checked = 0
  for i in range(old.get_piece_size(), new.get_piece_size()):
    piece = new.id_to_piece(i)
    if not piece.startswith("\u2581"):
      continue
    # Word-initial: the old model's own split of the word (its dummy prefix gives the '▁').
    ids = [j for j in old.encode(piece[1:]) if j != old.unk_id()] or [old.unk_id()]
    np.testing.assert_allclose(grown_embedding[i], embedding[ids].mean(0), rtol=1e-6)
    np.testing.assert_allclose(grown_kernel[:, i], kernel[:, ids].mean(1), rtol=1e-6)
    checked += 1
  assert checked >= 5
  inner = [i for i in range(old.get_piece_size(), new.get_piece_size())
           if not new.id_to_piece(i).startswith("\u2581")]
  # A piece inside a word of the new script is all unknown to the old model.
  np.testing.assert_array_equal(grown_embedding[inner[0]], embedding[old.unk_id()])


def test_logits_over_the_old_vocabulary_are_unchanged_for_covered_input(setup, resized):
  _, params, config = resized
  old = spm.SentencePieceProcessor(model_file=str(setup["old"]))
  ids = old.encode(vocabularies.multilingual_sentences(2, seed=5))
  inputs = np.zeros((2, 16), np.int32)
  for row, sentence in enumerate(ids):
    inputs[row, :min(15, len(sentence))] = sentence[:15]
  decoder_inputs = jnp.asarray(np.concatenate([np.zeros((2, 1), np.int32), inputs[:, :7]], 1))
  want = model.MT5(setup["config"]).apply({"params": setup["params"]}, jnp.asarray(inputs),
                                          decoder_inputs)
  got = model.MT5(config).apply({"params": params}, jnp.asarray(inputs), decoder_inputs)
  assert got.shape[-1] == 512
  np.testing.assert_allclose(np.asarray(got)[..., :OLD_PIECES],
                             np.asarray(want)[..., :OLD_PIECES],
                             rtol=1e-5, atol=1e-5)


def test_hf_export_of_the_resized_checkpoint_gives_the_same_logits(setup, resized, tmp_path):
  result, params, config = resized
  formats.save_params(params, config, tmp_path / "hf", fmt="hf")
  reloaded = transformers.MT5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
  assert reloaded.config.vocab_size == 512
  inputs = torch.tensor([[5, 9, 330, 1, 0], [7, 7, 2, 400, 1]])  # new ids too
  decoder_inputs = torch.tensor([[0, 4, 350], [0, 3, 3]])
  with torch.no_grad():
    want = reloaded(input_ids=inputs, attention_mask=inputs != 0,
                    decoder_input_ids=decoder_inputs).logits.numpy()
  ours = model.MT5(config).apply({"params": params}, jnp.asarray(inputs.numpy()),
                                 jnp.asarray(decoder_inputs.numpy()))
  np.testing.assert_allclose(np.asarray(ours), want, atol=1e-4)


def test_hf_and_t5x_checkpoints_resize_in_their_own_format(setup, tmp_path):
  config, params = setup["config"], setup["params"]
  formats.save_params(params, config, tmp_path / "hf_old", fmt="hf")
  t5x_legacy.write_t5x_checkpoint(params, tmp_path / "t5x_old")
  for name in ("hf", "t5x"):
    result = resize.resize_checkpoint(tmp_path / f"{name}_old", tmp_path / f"{name}_new",
                                      old_vocabulary=setup["old"],
                                      new_vocabulary=setup["new"])
    assert result.fmt == formats.detect_format(tmp_path / f"{name}_new") == name
    grown, grown_config = formats.load_params(tmp_path / f"{name}_new")
    assert grown_config.vocab_size == 512
    np.testing.assert_array_equal(
        np.asarray(grown["token_embedder"]["embedding"])[:OLD_PIECES],
        params["token_embedder"]["embedding"][:OLD_PIECES])


def test_a_vocabulary_that_is_not_an_extension_is_refused(setup, tmp_path):
  other = vocabulary.train_sentencepiece(
      [vocabularies.write_sentences(tmp_path / "o.txt", 350, seed=7, new_script=True)],
      tmp_path / "other.model", vocab_size=400, model_type="bpe")
  with pytest.raises(ValueError, match=r"does not extend .*: id \d+ is"):
    resize.resize_checkpoint(setup["folder"] / "old", tmp_path / "out",
                             old_vocabulary=setup["old"], new_vocabulary=other)
  assert not (tmp_path / "out").exists()


def test_resize_checkpoint_command_prints_the_new_size(setup, tmp_path, capsys):
  from aya_t5x import cli

  assert cli.main(["vocab", "resize-checkpoint", "--checkpoint", str(setup["folder"] / "old"),
                   "--old_vocabulary", str(setup["old"]), "--new_vocabulary",
                   str(setup["new"]), "--output", str(tmp_path / "out"), "--to", "hf"]) == 0
  out = capsys.readouterr().out
  assert "embedding rows 304 -> 512" in out and "MT5Config.vocab_size=512" in out
  assert hf.read_config(tmp_path / "out").vocab_size == 512
  assert cli.main(["vocab", "resize-checkpoint", "--checkpoint", str(setup["folder"] / "old"),
                   "--old_vocabulary", str(setup["old"]), "--new_vocabulary",
                   str(setup["new"]), "--output", str(tmp_path / "out")]) == 2
  assert "is not empty" in capsys.readouterr().err


def test_the_resized_checkpoint_starts_fine_tuning_with_a_fresh_state(resized, tmp_path):
  from tests.test_train import assert_trees_equal, run_in_process

  result, params, _ = resized
  # The fixture task's ids are below 128, so any vocabulary size above that trains on it.
  run = run_in_process(tmp_path / "run", 1, "--gin.LEARNING_RATE=0.0",
                       f"--gin.INITIAL_CHECKPOINT_PATH='{result.destination}'",
                       f"--gin.MT5Config.vocab_size={result.config.vocab_size}")
  assert_trees_equal(run.state.params, jax.tree.map(np.asarray, params))
  assert run.step == 1  # a new run: step 0, a fresh optimizer state
