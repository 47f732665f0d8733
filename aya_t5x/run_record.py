"""What a training run records in MODEL_DIR beside its checkpoints, and reading it back.

A run writes, from its first process:

- `config.gin`: the operative gin config (as T5X does): every binding and macro the run
  used, so that the run can be read, repeated or evaluated with the same settings;
- `vocabulary.json`: the SentencePiece model of its task (`path`, `sha256`, `pieces`), so
  that `infer`, `eval` and `convert` need no `--vocabulary`, and a model file changed
  since is caught by its fingerprint;
- `languages.json`: the languages the run added (`aya-t5x languages add`) and the
  absolute path of its task manifest, so that every later command sees the table and
  the tasks the run trained with.

(`mt5_config.json`, the model, is written by `aya_t5x.checkpoints.native`.)
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from aya_t5x.atomic_files import write_text_atomically
from aya_t5x.checkpoints.loading import run_dir

CONFIG_FILE = "config.gin"
VOCABULARY_FILE = "vocabulary.json"
LANGUAGES_FILE = "languages.json"


def fingerprint(path: str | os.PathLike) -> str:
  """The sha256 of a file (a SentencePiece model)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def vocabulary_file(vocabulary: Any) -> str | None:
  """The SentencePiece model file a seqio vocabulary reads, or None (another kind)."""
  path = getattr(vocabulary, "sentencepiece_model_file", None)
  return str(path) if path else None


def task_vocabulary_file(mixture_or_task_name: str) -> str | None:
  """The model file of a registered task's (or mixture's) targets vocabulary, or None."""
  import seqio

  provider = seqio.get_mixture_or_task(mixture_or_task_name)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  files = {vocabulary_file(t.output_features["targets"].vocabulary) for t in tasks
           if "targets" in t.output_features}
  files.discard(None)
  return files.pop() if len(files) == 1 else None


def _write_json(path: Path, data: Any) -> None:
  write_text_atomically(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write(model_dir: str | os.PathLike, mixture_or_task_name: str,
          task_manifest: str | None = None) -> None:
  """Writes config.gin (when gin configured the run), vocabulary.json and languages.json."""
  import gin
  from aya_t5x.data import languages

  if "://" in os.fspath(model_dir):
    return  # bucket runs: the checkpoints there are read with explicit flags
  run = Path(model_dir)
  run.mkdir(parents=True, exist_ok=True)
  config = gin.operative_config_str()
  if config.strip():
    write_text_atomically(run / CONFIG_FILE, config)
  spm = task_vocabulary_file(mixture_or_task_name)
  if spm and "://" not in spm:
    from sentencepiece import SentencePieceProcessor

    pieces = SentencePieceProcessor(model_file=spm).get_piece_size()
    _write_json(run / VOCABULARY_FILE, {"path": str(Path(spm).absolute()),
                                        "sha256": fingerprint(spm), "pieces": pieces})
  added = languages.added_languages()
  if added or task_manifest:
    manifest = (task_manifest if not task_manifest or "://" in task_manifest
                else str(Path(task_manifest).absolute()))
    _write_json(run / LANGUAGES_FILE, {"languages": [lang.to_json() for lang in added],
                                       "task_manifest": manifest})


def recorded_vocabulary(checkpoint: str | os.PathLike) -> str | None:
  """The SentencePiece model a run recorded, checked against its fingerprint; or None.

  Raises ValueError when the recorded file is gone or has changed since the run.
  """
  run = run_dir(checkpoint)
  if run is None or not (run / VOCABULARY_FILE).is_file():
    return None
  record = json.loads((run / VOCABULARY_FILE).read_text(encoding="utf-8"))
  path = record["path"]
  if not Path(path).is_file():
    raise ValueError(f"{run / VOCABULARY_FILE}: the run's vocabulary {path} is gone; pass "
                     "--vocabulary with the same SentencePiece model")
  if fingerprint(path) != record["sha256"]:
    raise ValueError(f"{run / VOCABULARY_FILE}: {path} has changed since the run (sha256 "
                     f"{record['sha256'][:12]}... recorded); pass --vocabulary with the model "
                     "the run trained with")
  return path


def use_recorded_languages(checkpoint: str | os.PathLike) -> None:
  """Makes the languages a run added known to this process (nothing when it added none)."""
  from aya_t5x.data import languages

  run = run_dir(checkpoint)
  if run is None or not (run / LANGUAGES_FILE).is_file():
    return
  where = str(run / LANGUAGES_FILE)
  entries = json.loads(Path(where).read_text(encoding="utf-8"))["languages"]
  recorded = [languages.language_from_json(e, f"{where}: language {i}", where)
              for i, e in enumerate(entries)]
  known = {lang.code for lang in languages.added_languages()}
  languages.add_user_languages([lang for lang in recorded if lang.code not in known])


_MACRO_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)\s*=\s*(.+?)\s*$")


def recorded_manifest(checkpoint: str | os.PathLike) -> str | None:
  """The task manifest a run trained with (its absolute path), or None."""
  run = run_dir(checkpoint)
  if run is None or not (run / LANGUAGES_FILE).is_file():
    return None
  return json.loads((run / LANGUAGES_FILE).read_text(encoding="utf-8")).get("task_manifest")


def recorded_macro(checkpoint: str | os.PathLike, name: str, default: Any = None) -> Any:
  """A macro's value in a run's config.gin when it is a plain literal, else `default`."""
  run = run_dir(checkpoint)
  if run is None or not (run / CONFIG_FILE).is_file():
    return default
  for line in (run / CONFIG_FILE).read_text(encoding="utf-8").splitlines():
    match = _MACRO_LINE.match(line)
    if match and match.group(1) == name:
      try:
        return ast.literal_eval(match.group(2))
      except (ValueError, SyntaxError):  # a reference (@..., %...), not a literal
        return default
  return default
