"""Where training metrics go: a JSONL log, TensorBoard event files, and the terminal.

Only the first host writes. On a terminal the progress is a bar with the ETA; otherwise
(logs, CI) it is one plain line per logging step.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path


class MetricWriter:
  """Writes scalar metrics for a step to `metrics.jsonl` and TensorBoard under a folder."""

  def __init__(self, directory: str | os.PathLike, *, tensorboard: bool = True,
               enabled: bool = True):
    self.enabled = enabled
    self.directory = Path(directory)
    self._jsonl = None
    self._summary = None
    if not enabled:
      return
    self.directory.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(self.directory / "metrics.jsonl", "a", encoding="utf-8")
    if tensorboard:
      # tensorboardX writes standard event files without the TensorBoard server package
      # (which TensorFlow 2.21 no longer installs).
      from tensorboardX import SummaryWriter

      self._summary = SummaryWriter(str(self.directory / "tensorboard"))

  def write(self, step: int, metrics: Mapping[str, float], *, prefix: str = "") -> None:
    if not self.enabled:
      return
    named = {f"{prefix}{k}": float(v) for k, v in metrics.items()}
    self._jsonl.write(json.dumps({"step": step, "time": time.time(), **named}) + "\n")
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
