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


class _GfileRecordWriter:
  """A file at a URL that is appended to: keeps its bytes, and uploads them on flush.

  tensorboardX writes event files through it; `metrics.jsonl` on a bucket is one too,
  starting from the bytes already there (a resumed run keeps its earlier lines).
  """

  def __init__(self, path: str, *, keep_existing: bool = False):
    import tensorflow as tf

    self._gfile = tf.io.gfile
    self.path = path
    self.buffer = io.BytesIO()
    if keep_existing and self._gfile.exists(path):
      self.buffer.write(self._gfile.GFile(path, "rb").read())

  def write(self, data: bytes) -> None:
    self.buffer.write(data)

  def flush(self) -> None:
    # Through a temporary object and a rename, so that a reader never sees half a file.
    partial = f"{self.path}.partial-{uuid.uuid4().hex[:8]}"
    with self._gfile.GFile(partial, "wb") as f:
      f.write(self.buffer.getvalue())
    self._gfile.rename(partial, self.path, overwrite=True)

  def close(self) -> None:
    self.flush()


class _GfileWriterFactory:
  """Replaces tensorboardX's own bucket writers (which need boto3 or google-cloud-storage)."""

  def open(self, path: str) -> _GfileRecordWriter:
    return _GfileRecordWriter(path)

  def directory_check(self, path: str) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(path)


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
    jsonl = f"{self.directory.rstrip('/')}/metrics.jsonl"
    self._jsonl = (_GfileRecordWriter(jsonl, keep_existing=True) if _is_url(jsonl)
                   else open(jsonl, "ab"))
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
    line = json.dumps({"step": step, "time": time.time(), **named}) + "\n"
    self._jsonl.write(line.encode("utf-8"))
    self._jsonl.flush()
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
