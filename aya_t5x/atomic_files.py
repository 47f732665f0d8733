"""Files written whole or not at all: a temporary file beside the target, then a rename.

Every file aya_t5x writes for someone else to read back (reports, exports, manifests,
plans, shard markers, crowd tables, checkpoint indexes) goes through here, so that an
interrupted write (a kill, a full disk, an exception in the middle) leaves the previous
version whole and never half a file. The temporary file has a unique name in the target's
folder (same filesystem, so the rename is atomic; two writers never share it) and is
removed when the write fails.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
  """Opens a temporary file to write `path`; on a clean exit it replaces `path`.

  `mode` is "w" (text, `encoding` and `newline` as for `open`) or "wb". The parent folder
  is created. If the block raises, `path` is untouched and the temporary file removed.
  """
  if mode not in ("w", "wb"):
    raise ValueError(f"atomic_open writes a whole file: mode 'w' or 'wb', not {mode!r}")
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    text = {"encoding": encoding, "newline": newline} if mode == "w" else {}
    with os.fdopen(fd, mode, **text) as f:
      yield f
      # On disk before the rename, so that a crash never leaves the new name empty.
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
  """Writes `text` (UTF-8) to `path` whole or not at all; returns the path."""
  with atomic_open(path) as f:
    f.write(text)
  return Path(path)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
  """Writes `data` to `path` whole or not at all; returns the path."""
  with atomic_open(path, "wb") as f:
    f.write(data)
  return Path(path)
