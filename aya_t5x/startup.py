"""A quiet start for every command: what TensorFlow, CUDA and libtpu are told before loading.

Without it, a command's first lines on a machine without accelerators are other
libraries' start-up notes: TensorFlow's CUDA-stub and CPU-feature lines (twice), and,
where libtpu is installed (the `tpu` extra), libtpu's `E0000 ... unexpected worker
hostname` while jax probes for a TPU that is not there. A new user reads those as
failures. `quiet_start` (called by `aya_t5x.cli.main` before anything heavy loads):

- sets `TF_CPP_MIN_LOG_LEVEL=3` and silences the process's stderr while `tensorflow`
  itself is imported (its CUDA-stub line is printed before that level applies);
- where no TPU is attached, asks jax for the platforms that exist (`cpu`, or `cuda,cpu`
  where an NVIDIA GPU and jax's CUDA plugin are there), so libtpu is never initialised.

The user's own settings win: with `--verbose`, or with `TF_CPP_MIN_LOG_LEVEL` or
`JAX_PLATFORMS` already in the environment, the matching step is left out. Nothing here
runs on import; the command calls it.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Iterator, MutableMapping


def tpu_attached() -> bool:
  """Whether this machine has TPU chips (the device files, or a TPU VM's environment)."""
  if any(os.environ.get(name) for name in ("TPU_ACCELERATOR_TYPE", "TPU_NAME",
                                           "TPU_WORKER_HOSTNAMES")):
    return True
  return bool(glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"))


def _cuda_available() -> bool:
  """An NVIDIA device file and jax's CUDA plugin: jax can use the GPU."""
  if not glob.glob("/dev/nvidia[0-9]*"):
    return False
  return any(importlib.util.find_spec(name) is not None
             for name in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_plugins.xla_cuda12",
                          "jax_plugins.xla_cuda13"))


def jax_platforms_without_tpu() -> str | None:
  """The JAX_PLATFORMS to use where no TPU is attached; None to leave jax's default
  (a TPU is attached, or an accelerator this module does not know, such as ROCm)."""
  if tpu_attached() or glob.glob("/dev/kfd"):
    return None
  return "cuda,cpu" if _cuda_available() else "cpu"


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
  """Sends the process's file descriptor 2 (C++ logs too) to /dev/null for a while."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(devnull, 2)
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


class _QuietFirstImport(importlib.abc.MetaPathFinder):
  """Imports one top-level module with stderr silenced, the first time it is imported.

  Python errors of that import still propagate (they are raised, not printed); only what
  the module's native libraries write to stderr while loading is dropped.
  """

  def __init__(self, name: str):
    self.name = name

  def find_spec(self, fullname, path, target=None):
    if fullname != self.name:
      return None
    sys.meta_path.remove(self)  # once, and the lookup below must not find us again
    spec = importlib.util.find_spec(fullname)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
      return spec
    execute = spec.loader.exec_module

    def exec_module(module):
      with stderr_silenced():
        execute(module)

    spec.loader.exec_module = exec_module
    return spec


def quiet_start(*, verbose: bool = False,
                environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
  """Quiets TensorFlow's and libtpu's start-up lines; returns the variables it set.

  Call it before jax or tensorflow is imported. With `verbose`, or where the user set a
  variable, that variable (and what it controls) is left alone.
  """
  environ = os.environ if environ is None else environ
  if verbose:
    return {}
  changes: dict[str, str] = {}
  if "TF_CPP_MIN_LOG_LEVEL" not in environ:
    changes["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietFirstImport) for f in sys.meta_path):
      sys.meta_path.insert(0, _QuietFirstImport("tensorflow"))
  if "JAX_PLATFORMS" not in environ and "jax" not in sys.modules:
    platforms = jax_platforms_without_tpu()
    if platforms:
      changes["JAX_PLATFORMS"] = platforms
  environ.update(changes)
  return changes
