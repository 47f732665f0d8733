"""Trainer inputs: a SeqIO task or mixture as feature-converted numpy batches.

Each host reads its own shard of the data (`seqio.ShardInfo`), batches
`batch_size / process_count` examples, and the trainer assembles global arrays from
the host-local batches. The position (batches consumed) is saved with every checkpoint;
a restored run rebuilds the same deterministic pipeline and skips that many batches, so
it sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence

import jax
import numpy as np

Batch = dict[str, np.ndarray]


class DataConfigError(ValueError):
  """The task, its lengths or the batch cannot make a dataset; the message says the fix."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetConfig:
  """What `seqio.get_dataset` needs, T5X-style (gin: `train/DatasetConfig`...).

  Attributes:
    mixture_or_task_name: a registered SeqIO task or mixture.
    task_feature_lengths: {'inputs': N, 'targets': M}.
    split: the dataset split.
    batch_size: the global batch (all hosts together).
    shuffle: shuffle examples (the training split) with `seed`.
    seed: the pipeline seed; with it the batches are the same on every run.
    use_packing: pack several examples per row (T5X default for training).
    packing: how: 'best_fit' (`aya_t5x.data.packing`, about 90% of tokens real on
      Aya-like lengths) or 'seqio' (SeqIO's greedy packing, about 60%).
    packing_window: rows the best fit keeps open.
    use_cached: read SeqIO's offline cache instead of preprocessing on the fly.
    num_epochs: None repeats forever (training); 1 for evaluation.
    module: modules to import first so that they register their tasks (T5X's
      MIXTURE_OR_TASK_MODULE), e.g. 'my_project.tasks'.
    task_manifest: a manifest written by `aya-t5x tasks add` (TASK_MANIFEST); its
      tasks are registered with the gin VOCABULARY before the data is read.
  """

  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  split: str = "train"
  batch_size: int
  shuffle: bool = True
  seed: int | None = 0
  use_packing: bool = True
  packing: str = "best_fit"
  packing_window: int = 64
  use_cached: bool = False
  num_epochs: int | None = None
  module: str | Sequence[str] | None = None
  task_manifest: str | None = None

  def __post_init__(self):
    missing = {"inputs", "targets"} - set(self.task_feature_lengths or {})
    if missing:
      raise DataConfigError(
          f"TASK_FEATURE_LENGTHS for {self.mixture_or_task_name!r} lacks {sorted(missing)}; "
          "set it, for example --gin.TASK_FEATURE_LENGTHS=\"{'inputs': 1024, "
          "'targets': 1024}\".")
    if self.batch_size < 1:
      raise DataConfigError(f"batch size must be positive, got {self.batch_size}.")
    if self.packing not in ("best_fit", "seqio"):
      raise DataConfigError(f"DatasetConfig.packing is {self.packing!r}; choose 'best_fit' "
                            "or 'seqio'.")


def import_task_modules(module: str | Sequence[str] | None) -> None:
  """Imports the user's task modules (and aya_t5x's own), which register SeqIO tasks."""
  modules = [module] if isinstance(module, str) else list(module or ())
  for name in modules:
    # A console script does not put the working folder on sys.path, but a user's task
    # module usually lives there (as with `python -m`).
    if os.getcwd() not in sys.path:
      sys.path.append(os.getcwd())
    try:
      importlib.import_module(name)
    except ImportError as e:
      raise DataConfigError(f"MIXTURE_OR_TASK_MODULE {name!r} could not be imported ({e}). "
                            "Give a module path importable from the current folder or "
                            "PYTHONPATH.") from e


def _check_registered(name: str) -> None:
  import seqio

  known = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  if name not in known:
    close = difflib.get_close_matches(name, known, n=5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise DataConfigError(
        f"No SeqIO task or mixture named {name!r} is registered.{hint} Register it in a "
        "module and pass --gin.MIXTURE_OR_TASK_MODULE=\"'my_module'\" (see `aya-t5x tasks "
        "list`).")


def _hide_accelerators_from_tensorflow() -> None:
  import tensorflow as tf

  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):  # already initialised, or no such device kind
      pass


@functools.cache
def _register_manifest(manifest: str) -> None:
  # Cached: the trainer, its input pipeline and its evaluators all check the same config,
  # and registering re-scans every file of the manifest.
  from aya_t5x.data import registration

  try:
    registration.load_manifest(manifest)
  except TypeError as e:  # gin could not supply the vocabulary
    raise DataConfigError(
        f"TASK_MANIFEST {manifest!r} needs a vocabulary: add --gin_file "
        "mixtures/vocabulary.gin --gin.VOCABULARY_PATH=\"'/path/sentencepiece.model'\" "
        f"({e}).") from e


def check_dataset_config(config: DatasetConfig) -> None:
  """Fails fast (before anything compiles) if `config` cannot give batches."""
  import_task_modules(config.module)
  if config.task_manifest:
    _register_manifest(config.task_manifest)
  _check_registered(config.mixture_or_task_name)
  hosts = jax.process_count()
  if config.batch_size % hosts:
    raise DataConfigError(f"batch size {config.batch_size} does not divide over {hosts} "
                          "hosts.")


def build_dataset(config: DatasetConfig):
  """The host-local, feature-converted, batched `tf.data.Dataset` of `config`."""
  import seqio

  _hide_accelerators_from_tensorflow()
  check_dataset_config(config)
  hosts, host = jax.process_count(), jax.process_index()
  best_fit = config.use_packing and config.packing == "best_fit"
  converter = (seqio.PassThroughFeatureConverter() if best_fit
               else seqio.EncDecFeatureConverter(pack=config.use_packing))
  dataset = seqio.get_dataset(
      config.mixture_or_task_name, dict(config.task_feature_lengths),
      feature_converter=converter,
      dataset_split=config.split, use_cached=config.use_cached, shuffle=config.shuffle,
      num_epochs=config.num_epochs, seed=config.seed, verbose=False,
      shard_info=seqio.ShardInfo(index=host, num_shards=hosts) if hosts > 1 else None)
  if best_fit:
    from aya_t5x.data import packing

    dataset = packing.packed_dataset(dataset, config.task_feature_lengths,
                                     window=config.packing_window)
  return dataset.batch(config.batch_size // hosts, drop_remainder=True)


class BatchIterator:
  """Numpy batches of a dataset with a position that a checkpoint can store and restore."""

  def __init__(self, config: DatasetConfig, position: int = 0):
    self.config = config
    self._iterator: Iterator[Batch] = build_dataset(config).skip(position).as_numpy_iterator()
    self.position = position

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> Batch:
    batch = next(self._iterator)
    self.position += 1
    return batch

  def state(self) -> dict:
    """What a checkpoint stores to resume at the next batch."""
    return {"position": self.position, "mixture_or_task_name":
            self.config.mixture_or_task_name, "seed": self.config.seed}


def global_batch(host_batch: Batch, sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Assembles global arrays from each host's local rows (sharded over the data axes)."""
  return {name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for name, value in host_batch.items()}
