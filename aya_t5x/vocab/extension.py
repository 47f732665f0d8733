"""Extending a SentencePiece vocabulary with pieces learnt from new text, appended to its proto.

`extend_vocabulary(base, text_files, output, pieces=N)` trains a model of the base's
type (unigram or BPE) and normaliser on the new text, keeps the pieces the base lacks and
appends them after the base's last piece. Nothing of the base moves: every piece keeps
its id, text, score and type, so control pieces, the unknown piece and sentinels
(`<extra_id_N>`, inside mT5's model file) keep their ids, and a checkpoint grown by
`aya_t5x.checkpoints.resize` keeps every row it had.

Which pieces and which scores:

- Every character of the new text that the base has no piece for is appended (the new
  model is trained with character coverage 1.0), so text made of the new text's
  characters has no unknown piece. So are the other characters of a script the text
  is written in (the code points near its letters whose Unicode names start with the same
  script name, e.g. every THAANA character, when the text uses a tenth of the script's
  letters and the script has at most `MAX_SCRIPT_CHARACTERS`), because held-out text of a
  new script uses letters a small sample lacks. If these alone exceed N, the error says
  how many.
- Unigram (mT5's): the remaining places go to the new model's best-scoring pieces. Their
  scores are the new model's log-probabilities shifted by one constant so that the best
  new piece scores the base's lowest piece: within the new text Viterbi compares paths as
  the new model did, and wherever a new piece competes with base pieces for the same
  span, the base's segmentation wins unless it needs more pieces.
- BPE (the demo's): a piece is reached only by merging two pieces that exist, in score
  order. New pieces are taken in the new model's merge order, each only when it splits
  into two pieces already present (its merge path), and scored below every base piece in
  that order, so base merges always happen first and the new merges replay the new
  model's order after them.

Where covered text may encode differently: text the base writes without unknown pieces
keeps its ids unless it contains the text of a new piece made of characters the base
already had (a word of the new text in a known script). Unigram then takes the new
piece when its shifted score beats the base's pieces for that span; BPE applies the new
merge after all base merges are done, joining the base's pieces further. (Text with
characters the base cannot write is not covered; in a unigram model it may split
differently around them, since the unknown-character penalty follows the lowest score.) With
`only_new_characters=True` every new piece holds a character the base could not write,
so such text cannot change at all.
"""

from __future__ import annotations

import dataclasses
import io
import os
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from aya_t5x.atomic_files import write_bytes_atomically
from aya_t5x.vocab import coverage

_NORMAL = 1  # sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
_UNIGRAM, _BPE = 1, 2  # TrainerSpec.ModelType
_MODEL_TYPES = {_UNIGRAM: "unigram", _BPE: "bpe"}
_BUILTIN_NORMALIZERS = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf", "identity")
# A script with more characters than this (Han) gets only the characters the text has.
MAX_SCRIPT_CHARACTERS = 512
_SCRIPT_REACH = 1024  # code points searched on either side of a character of the script


def _script(character: str) -> str:
  """The script word of a character's Unicode name ('THAANA' for THAANA LETTER HAA)."""
  return unicodedata.name(character, "").split(" ")[0]


def _is_letter(character: str) -> bool:
  return unicodedata.category(character)[0] in "LM"


def script_characters(characters: Iterable[str], known: set[str]) -> list[str]:
  """The characters of the scripts of `characters` that are not in `known`, in code point
  order. A script counts when `characters` hold at least a tenth of its letters (and two):
  the text is written in it, not just borrowing a punctuation mark or a stray letter; and
  when it has at most `MAX_SCRIPT_CHARACTERS` characters. Only characters that NFKC leaves
  as they are: the normaliser maps the others away before lookup."""
  characters = set(characters)
  found: dict[str, set[str]] = {}
  for character in sorted(characters):
    script = _script(character)
    if not _is_letter(character) or script in found or script in ("CJK", "HANGUL", ""):
      continue
    members = set()
    for code in range(max(0, ord(character) - _SCRIPT_REACH), ord(character) + _SCRIPT_REACH):
      candidate = chr(code)
      if _script(candidate) == script and unicodedata.normalize("NFKC", candidate) == candidate:
        members.add(candidate)
    found[script] = members
  extra = set()
  for members in found.values():
    letters = {c for c in members if _is_letter(c)}
    used = len(letters & characters)
    if len(members) <= MAX_SCRIPT_CHARACTERS and used >= max(2, len(letters) / 10):
      extra |= members
  return sorted(extra - known - characters)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Extension:
  """What `extend_vocabulary` wrote."""

  path: Path
  model_type: str
  base_pieces: int
  new_pieces: tuple[str, ...]  # appended, in id order from `base_pieces`
  new_characters: int  # of them single characters the base had no piece for

  @property
  def vocab_size(self) -> int:
    return self.base_pieces + len(self.new_pieces)


def read_model_proto(path: str | os.PathLike):
  """The `ModelProto` of a SentencePiece model file; the error names the file."""
  from sentencepiece import sentencepiece_model_pb2

  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"SentencePiece model {path} not found.")
  proto = sentencepiece_model_pb2.ModelProto()
  try:
    proto.ParseFromString(path.read_bytes())
  except Exception as e:  # protobuf's DecodeError
    raise ValueError(f"{path}: not a SentencePiece model ({e}).") from e
  if not proto.pieces:
    raise ValueError(f"{path}: a SentencePiece model with no pieces.")
  return proto


def _train_new_model(proto, lines: Sequence[str], vocab_size: int):
  """A model of the base's type and normaliser trained on `lines`, as a ModelProto."""
  import sentencepiece as spm
  from sentencepiece import sentencepiece_model_pb2

  normalizer, trainer = proto.normalizer_spec, proto.trainer_spec
  if normalizer.name not in _BUILTIN_NORMALIZERS:
    raise ValueError(
        f"the base model's normaliser is {normalizer.name!r}; extension trains the new "
        f"pieces with the same rule and knows SentencePiece's built-in ones "
        f"({', '.join(_BUILTIN_NORMALIZERS)}).")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size,
      model_type=_MODEL_TYPES[trainer.model_type], character_coverage=1.0,
      normalization_rule_name=normalizer.name, add_dummy_prefix=normalizer.add_dummy_prefix,
      remove_extra_whitespaces=normalizer.remove_extra_whitespaces,
      split_by_whitespace=trainer.split_by_whitespace,
      split_by_unicode_script=trainer.split_by_unicode_script,
      split_by_number=trainer.split_by_number, split_digits=trainer.split_digits,
      treat_whitespace_as_suffix=trainer.treat_whitespace_as_suffix,
      max_sentencepiece_length=trainer.max_sentencepiece_length or 16,
      unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, hard_vocab_limit=False,
      # One thread and the whole input keep the result identical run to run.
      num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
  new = sentencepiece_model_pb2.ModelProto()
  new.ParseFromString(model.getvalue())
  return new


def _select(proto, new, pieces: int, only_new_characters: bool
            ) -> tuple[list[tuple[str, float]], int]:
  """The (piece, new-model score) pairs to append, in the order they get ids."""
  base = {p.piece for p in proto.pieces}
  candidates = [(p.piece, p.score) for p in new.pieces
                if p.type == _NORMAL and p.piece not in base]
  characters = [(piece, score) for piece, score in candidates if len(piece) == 1]
  lowest = min((score for _, score in candidates), default=0.0)
  # Letters of the same scripts that the text happens not to use, scored below the rest.
  characters += [(c, lowest - 1.0) for c in
                 script_characters([piece for piece, _ in characters], base)]
  if len(characters) > pieces:
    raise ValueError(
        f"the text's scripts have {len(characters)} characters the base vocabulary has no "
        f"piece for; --pieces {pieces} cannot hold them all: give --pieces "
        f"{len(characters)} or more.")
  new_characters = {piece for piece, _ in characters}
  longer = [(piece, score) for piece, score in candidates if len(piece) > 1
            and (not only_new_characters or any(c in new_characters for c in piece))]
  room = pieces - len(characters)
  if proto.trainer_spec.model_type == _UNIGRAM:
    longer.sort(key=lambda item: -item[1])  # stable: ties keep the new model's order
    return characters + longer[:room], len(characters)
  # BPE: the new model lists merged pieces in merge order; keep that order and take a
  # piece only when one of its splits is two pieces that will exist (its merge path).
  present = base | new_characters
  chosen = []
  for piece, score in longer:
    if len(chosen) == room:
      break
    if any(piece[:i] in present and piece[i:] in present for i in range(1, len(piece))):
      chosen.append((piece, score))
      present.add(piece)
  return chosen + characters, len(characters)


def extend_vocabulary(base_path: str | os.PathLike, text_files: Sequence[str | os.PathLike],
                      output: str | os.PathLike, *, pieces: int,
                      only_new_characters: bool = False) -> Extension:
  """Appends up to `pieces` pieces learnt from `text_files` to the base model; writes `output`.

  See the module docstring for which pieces, their scores, and where text the base
  already covered may encode differently. Fewer than `pieces` are appended when the text
  has no more pieces to give (a small text).
  """
  from sentencepiece import sentencepiece_model_pb2

  if pieces < 1:
    raise ValueError(f"--pieces {pieces}: give a positive number of pieces to add.")
  proto = read_model_proto(base_path)
  model_type = proto.trainer_spec.model_type
  if model_type not in _MODEL_TYPES:
    raise ValueError(f"{base_path}: model type {model_type} is neither unigram nor BPE; "
                     "only those two can be extended.")
  lines = [line.strip() for f in text_files for line in coverage.read_lines(f)]
  lines = [line for line in lines if line]
  if not lines:
    raise ValueError(f"no text in {', '.join(map(str, text_files))}: the files are empty.")
  known = {p.piece for p in proto.pieces}
  distinct = {c for line in lines for c in line if not c.isspace()}
  # Room for the pieces the new model shares with the base (characters, '▁', common
  # pieces), which are dropped, so that `pieces` new ones remain where the text allows.
  # SentencePiece refuses a size below the text's characters: the error below names it.
  size = max(pieces + 1 + len(distinct & known) + pieces // 8 + 8, len(distinct) + 2)
  new = _train_new_model(proto, lines, size)
  selected, new_characters = _select(proto, new, pieces, only_new_characters)
  scores = [p.score for p in proto.pieces if p.type == _NORMAL] or [0.0]
  if model_type == _UNIGRAM:
    best = max((score for _, score in selected), default=0.0)
    shifted = [score - best + min(scores) for _, score in selected]
  else:
    shifted = [min(scores) - 1.0 - rank for rank in range(len(selected))]
  extended = sentencepiece_model_pb2.ModelProto()
  extended.CopyFrom(proto)
  for (piece, _), score in zip(selected, shifted):
    extended.pieces.append(sentencepiece_model_pb2.ModelProto.SentencePiece(
        piece=piece, score=score, type=_NORMAL))
  extended.trainer_spec.vocab_size = len(extended.pieces)
  out = write_bytes_atomically(output, extended.SerializeToString())
  return Extension(path=out, model_type=_MODEL_TYPES[model_type], base_pieces=len(proto.pieces),
                   new_pieces=tuple(piece for piece, _ in selected),
                   new_characters=new_characters)
