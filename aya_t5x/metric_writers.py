"""Where training metrics go: a JSONL log, TensorBoard event files, and the terminal.

Only the first host writes. The model directory may be local or a bucket (`gs://...`,
any scheme `tf.io.gfile` knows): there both files are rewritten whole at each flush,
since object stores cannot append. On a terminal the progress is a bar with the ETA;
otherwise (logs, CI) it is one plain line per logging step.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping


def _is_url(path: str) -> bool:
  return "://" in path


def _replace_object(path: str, data: bytes) -> None:
  """Writes `path` whole through a temporary object, so that a reader never sees half."""
  import tensorflow as tf

  partial = f"{path}.partial-{uuid.uuid4().hex[:8]}"
  with tf.io.gfile.GFile(partial, "wb") as f:
    f.write(data)
  tf.io.gfile.rename(partial, path, overwrite=True)


class _GfileRecordWriter:
  """A tensorboardX record writer for a URL: keeps the file's bytes, uploads on flush."""

  def __init__(self, path: str):
    self.path = path
    self.buffer = io.BytesIO()

  def write(self, data: bytes) -> None:
    self.buffer.write(data)

  def flush(self) -> None:
    _replace_object(self.path, self.buffer.getvalue())

  def close(self) -> None:
    self.flush()


class _GfileWriterFactory:
  """Replaces tensorboardX's own bucket writers (which need boto3 or google-cloud-storage)."""

  def open(self, path: str) -> _GfileRecordWriter:
    return _GfileRecordWriter(path)

  def directory_check(self, path: str) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(path)


class _JsonlLog:
  """`metrics.jsonl`: appended locally; held and rewritten whole on a bucket."""

  def __init__(self, path: str):
    self.path = path
    self._remote = _is_url(path)
    if self._remote:
      import tensorflow as tf

      # A resumed run keeps the lines written before it.
      self._text = tf.io.gfile.GFile(path, "r").read() if tf.io.gfile.exists(path) else ""
    else:
      self._file = open(path, "a", encoding="utf-8")

  def append(self, line: str) -> None:
    if self._remote:
      self._text += line + "\n"
      _replace_object(self.path, self._text.encode("utf-8"))
    else:
      self._file.write(line + "\n")
      self._file.flush()

  def close(self) -> None:
    if not self._remote:
      self._file.close()


class MetricWriter:
  """Writes scalar metrics for a step to `metrics.jsonl` and TensorBoard under a folder."""

  def __init__(self, directory: str | os.PathLike, *, tensorboard: bool = True,
               enabled: bool = True):
    self.enabled = enabled
    self.directory = str(directory)
    self._jsonl = None
    self._summary = None
    if not enabled:
      return
    if _is_url(self.directory):
      import tensorflow as tf
      from tensorboardX import record_writer

      tf.io.gfile.makedirs(self.directory)
      record_writer.register_writer_factory(self.directory.split("://")[0],
                                            _GfileWriterFactory())
    else:
      os.makedirs(self.directory, exist_ok=True)
    self._jsonl = _JsonlLog(f"{self.directory.rstrip('/')}/metrics.jsonl")
    if tensorboard:
      # tensorboardX writes standard event files without the TensorBoard server package
      # (which TensorFlow 2.21 no longer installs).
      from tensorboardX import SummaryWriter

      # The suffix keeps two writers started in the same second (a quick resume) from
      # sharing, and truncating, one event file name.
      self._summary = SummaryWriter(f"{self.directory.rstrip('/')}/tensorboard",
                                    filename_suffix=f".{uuid.uuid4().hex[:8]}")

  def write(self, step: int, metrics: Mapping[str, float], *, prefix: str = "") -> None:
    if not self.enabled:
      return
    named = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
    self._jsonl.append(json.dumps({"step": step, "time": time.time(), **named}))
    if self._summary is not None:
      for name, value in named.items():
        self._summary.add_scalar(name, value, global_step=step)
      self._summary.flush()

  def close(self) -> None:
    if self._jsonl:
      self._jsonl.close()
    if self._summary is not None:
      self._summary.close()


class Progress:
  """A tqdm bar with ETA on a terminal, plain log lines elsewhere."""

  def __init__(self, *, total: int, initial: int, enabled: bool = True,
               interactive: bool | None = None):
    self.enabled = enabled
    interactive = sys.stderr.isatty() if interactive is None else interactive
    self._bar = None
    self._start = time.perf_counter()
    self._initial = initial
    self.total = total
    if enabled and interactive:
      from tqdm import tqdm

      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    summary = " ".join(f"{k}={format_value(v)}" for k, v in metrics.items())
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      self._bar.set_postfix_str(summary, refresh=True)
      return
    elapsed = time.perf_counter() - self._start
    done = max(step - self._initial, 1)
    eta = elapsed / done * (self.total - step)
    print(f"step {step}/{self.total} {summary} eta={eta:.0f}s", flush=True)

  def message(self, text: str) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(text)
    else:
      print(text, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def format_value(value: float) -> str:
  value = float(value)
  if abs(value) >= 100:
    return f"{value:.0f}"
  if value != 0 and abs(value) < 1e-2:
    return f"{value:.3g}"
  return f"{value:.4f}".rstrip("0").rstrip(".")
