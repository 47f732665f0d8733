"""Vocabulary extension: old pieces untouched, a new script learnt, unigram and BPE alike."""

import unicodedata

import pytest
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from aya_t5x.testing import vocabularies
from aya_t5x.vocab import coverage, extension, vocabulary

SENTINELS = 10


def _with_sentinels(path):
  """Appends `<extra_id_N>` pieces inside the model file, as mT5's vocabulary holds them."""
  proto = extension.read_model_proto(path)
  for i in reversed(range(SENTINELS)):
    proto.pieces.append(model_pb2.ModelProto.SentencePiece(
        piece=f"<extra_id_{i}>", score=0.0, type=model_pb2.ModelProto.SentencePiece.USER_DEFINED))
  path.write_bytes(proto.SerializeToString())
  return path


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
  folder = tmp_path_factory.mktemp("extension_text")
  return {"base": vocabularies.write_sentences(folder / "base.txt"),
          "new": vocabularies.write_sentences(folder / "dv.txt", 150, seed=1, new_script=True),
          "held_out": vocabularies.write_sentences(folder / "dv_test.txt", 40, seed=2,
                                                   new_script=True)}


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def base(request, texts, tmp_path_factory):
  """A base vocabulary without byte fallback (so a new script is unknown), with sentinels."""
  path = vocabulary.train_sentencepiece(
      [texts["base"]], tmp_path_factory.mktemp(request.param) / "base.model", vocab_size=300,
      model_type=request.param)
  return _with_sentinels(path)


@pytest.fixture(scope="module")
def extended(base, texts):
  return extension.extend_vocabulary(base, [texts["new"]], base.with_name("extended.model"),
                                     pieces=140)


def _processor(path):
  return spm.SentencePieceProcessor(model_file=str(path))


def test_every_old_piece_keeps_id_text_score_and_type(base, extended):
  old, new = extension.read_model_proto(base), extension.read_model_proto(extended.path)
  assert len(new.pieces) == len(old.pieces) + len(extended.new_pieces) > len(old.pieces)
  for i, piece in enumerate(old.pieces):
    assert (new.pieces[i].piece, new.pieces[i].score, new.pieces[i].type) == (
        piece.piece, piece.score, piece.type), i
  assert new.normalizer_spec == old.normalizer_spec
  a, b = _processor(base), _processor(extended.path)
  assert (b.pad_id(), b.eos_id(), b.unk_id(), b.bos_id()) == (0, 1, 2, -1)
  for i in range(SENTINELS):
    assert b.piece_to_id(f"<extra_id_{i}>") == a.piece_to_id(f"<extra_id_{i}>") != 2
  # seqio reads it with mT5's settings, and the sentinels come out of the same ids.
  vocab = vocabulary.sentencepiece_vocabulary(str(extended.path))
  assert vocab.vocab_size == len(new.pieces)
  assert vocab.encode("<extra_id_3>") == a.encode("<extra_id_3>")


def test_new_script_pieces_replace_unknowns_on_held_out_text(base, extended, texts):
  thaana = {chr(c) for c in range(0x0780, 0x07C0)}
  assert all(any(c in thaana for c in piece) for piece in extended.new_pieces
             if piece != "\u2581")
  held_out = coverage.read_lines(texts["held_out"])
  before = coverage.measure(_processor(base), held_out)
  after = coverage.measure(_processor(extended.path), held_out)
  assert before.unknown_share > 0.3 and before.uncovered_characters
  assert after.unknown_share == 0 and after.uncovered_characters == {}
  # Merged pieces are used, not one piece per character.
  assert after.pieces_per_character < 0.5
  ids = _processor(extended.path).encode(held_out[0])
  assert any(i >= extended.base_pieces for i in ids)
  # The script's letters the text never uses are pieces too (held-out text may use them).
  used = {c for line in coverage.read_lines(texts["new"]) for c in line}
  unused = {c for c in thaana if c not in used and "THAANA" in unicodedata.name(c, "")}
  assert unused and unused <= set(extended.new_pieces)


def test_text_the_base_covered_encodes_to_the_same_ids(base, extended):
  a, b = _processor(base), _processor(extended.path)
  for sentence in vocabularies.multilingual_sentences(60, seed=9):
    assert b.encode(sentence) == a.encode(sentence), sentence


def test_new_scores_rank_below_the_base_and_bpe_pieces_have_merge_paths(base, extended):
  new = extension.read_model_proto(extended.path)
  base_scores = [p.score for p in new.pieces[:extended.base_pieces] if p.type == 1]
  added = new.pieces[extended.base_pieces:]
  if new.trainer_spec.model_type == 1:  # unigram: shifted log-probabilities
    assert max(p.score for p in added) == pytest.approx(min(base_scores))
    assert len({round(p.score, 4) for p in added}) > len(added) // 2  # not one flat score
    return
  present = {p.piece for p in new.pieces[:extended.base_pieces]} | {
      p for p in extended.new_pieces if len(p) == 1}
  for piece in added:
    assert piece.score < min(base_scores)  # merged after every base merge
    if len(piece.piece) > 1:
      assert any(piece.piece[:i] in present and piece.piece[i:] in present
                 for i in range(1, len(piece.piece))), piece.piece
      present.add(piece.piece)
  merged = [p.score for p in added if len(p.piece) > 1]
  assert merged == sorted(merged, reverse=True) and len(set(merged)) == len(merged)


def test_only_new_characters_leaves_mixed_text_of_known_scripts_alone(base, texts, tmp_path):
  mixed = tmp_path / "mixed.txt"
  known = vocabularies.multilingual_sentences(80, seed=4)
  new = coverage.read_lines(texts["new"])
  mixed.write_text("\n".join(known + new) + "\n", encoding="utf-8")
  result = extension.extend_vocabulary(base, [mixed], tmp_path / "x.model", pieces=80,
                                       only_new_characters=True)
  a, b = _processor(base), _processor(result.path)
  assert result.new_pieces
  for piece in result.new_pieces:  # each holds a character the base spells as unknown
    assert any(a.unk_id() in a.encode(c) for c in piece if c != "\u2581"), piece
  for sentence in known:
    assert b.encode(sentence) == a.encode(sentence)


def test_too_few_pieces_for_the_new_characters_names_the_number(base, texts, tmp_path):
  with pytest.raises(ValueError, match=r"characters the base vocabulary has no piece for; "
                                       r"--pieces 3 .* give --pieces \d+"):
    extension.extend_vocabulary(base, [texts["new"]], tmp_path / "x.model", pieces=3)
  assert not (tmp_path / "x.model").exists()


def test_empty_text_and_missing_model_are_named(base, tmp_path):
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n")
  with pytest.raises(ValueError, match="empty.txt: the files are empty"):
    extension.extend_vocabulary(base, [empty], tmp_path / "x.model", pieces=5)
  with pytest.raises(FileNotFoundError, match="nowhere.model"):
    extension.extend_vocabulary(tmp_path / "nowhere.model", [empty], tmp_path / "x.model",
                                pieces=5)
