"""Trainer inputs: a SeqIO task or mixture as feature-converted numpy batches.

The global batch is `num_shards` input shards side by side: rows `[i * r, (i + 1) * r)`
come from shard i (`seqio.ShardInfo(i, num_shards)`, r = batch / num_shards). Each host
feeds only the rows its devices hold and reads only the shards those rows come from;
the trainer assembles global arrays from the host-local rows. With one shard per host
(the default) every host reads its own shard; the global batches depend only on the
shard count, not on how many hosts read them, so a run on 2 hosts and a run on 1 host
with `num_shards=2` see the same batches.

The position (batches consumed, the same for every shard) is saved with every checkpoint;
a restored run rebuilds the same deterministic pipelines and skips that many batches, so
it sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import logging
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
    cache_dir: the folder of SeqIO caches written by `aya-t5x cache` (gin: CACHE_DIR);
      the tasks are then read from their cached shards there instead of being
      preprocessed on the fly. None: on the fly.
    num_epochs: None repeats forever (training); 1 for evaluation.
    module: modules to import first so that they register their tasks (T5X's
      MIXTURE_OR_TASK_MODULE), e.g. 'my_project.tasks'.
    task_manifest: a manifest written by `aya-t5x tasks add` (TASK_MANIFEST); its
      languages, tasks and mixtures are registered with the gin VOCABULARY before the
      data is read.
    languages_file: a JSON file of added languages ({"languages": [...]}, as a manifest
      holds them; LANGUAGES_FILE), loaded before the tasks.
    num_shards: input shards the global batch is read from. None: one per host when
      the run starts (T5X's layout; a resumed run keeps the count it started with). A
      fixed count gives the same batches on any number of hosts.
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
  cache_dir: str | None = None
  num_epochs: int | None = None
  module: str | Sequence[str] | None = None
  task_manifest: str | None = None
  languages_file: str | None = None
  num_shards: int | None = None

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
    if self.num_shards is not None and self.num_shards < 1:
      raise DataConfigError(f"DatasetConfig.num_shards must be positive or None, got "
                            f"{self.num_shards}.")

  def shard_count(self) -> int:
    """The number of input shards: `num_shards`, or one per host."""
    return self.num_shards or jax.process_count()


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
        "module and pass --gin.MIXTURE_OR_TASK_MODULE=\"'my_module'\", or add it with "
        "`aya-t5x tasks add` and pass --gin_file mixtures/vocabulary.gin "
        "--gin.TASK_MANIFEST=\"'aya_tasks.json'\" (see `aya-t5x tasks list`).")


class _UncachedDataNote(logging.Filter):
  """Replaces seqio's "uncached FunctionDataset" warning with one note that fits aya_t5x.

  seqio logs it for every task a mixture reads (55 times for the demo's) and warns of poor
  shuffling after a restart; here a restart resumes at the very example it stopped at
  (the data position is checkpointed), so what remains true is the cost: every host
  preprocesses its tasks itself, on the fly. Said once per process.
  """

  PREFIX = "Using an uncached FunctionDataset for training"
  NOTE = ("Training reads its tasks preprocessed on the fly from their source files (no SeqIO "
          "cache): a restart resumes at the same example, and every host runs the "
          "preprocessing itself. For a large mixture, build caches once with `aya-t5x cache` and "
          "set CACHE_DIR to its folder (docs/data.md).")

  def __init__(self):
    super().__init__()
    self.seen = False

  def filter(self, record: logging.LogRecord) -> bool:
    if not str(record.msg).startswith(self.PREFIX):
      return True
    if not self.seen:
      # Printed, not logged: a command's lines are its own, not in a logging format
      # (`WARNING:absl:...`, which reads as a problem).
      print(f"note: {self.NOTE}", file=sys.stderr, flush=True)
    self.seen = True
    return False


_REPEATED_WARNING = _UncachedDataNote()


def _quiet_repeated_seqio_warnings() -> None:
  absl_logger = logging.getLogger("absl")
  if _REPEATED_WARNING not in absl_logger.filters:
    absl_logger.addFilter(_REPEATED_WARNING)


def _hide_accelerators_from_tensorflow() -> None:
  import tensorflow as tf

  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):  # already initialised, or no such device kind
      pass


@functools.cache
def register_manifest(manifest: str) -> None:
  """Registers the tasks of a `TASK_MANIFEST` (`aya-t5x tasks add`), once per process.

  Cached: the trainer, its input pipeline and its evaluators all check the same config,
  and registering re-scans every file of the manifest.
  """
  from aya_t5x.data import manifest as manifest_lib

  try:
    manifest_lib.load_manifest(manifest)
  except (TypeError, RuntimeError) as e:  # gin could not supply the vocabulary
    if isinstance(e, RuntimeError) and "Required bindings" not in str(e):
      raise
    raise DataConfigError(
        f"TASK_MANIFEST {manifest!r} needs a vocabulary: add --gin_file "
        "mixtures/vocabulary.gin --gin.VOCABULARY_PATH=\"'/path/sentencepiece.model'\" "
        f"({e}).") from e


@functools.cache
def register_languages_file(path: str) -> None:
  """Adds the languages of a `LANGUAGES_FILE` to this process, once."""
  from aya_t5x.data import manifest as manifest_lib

  if not os.path.exists(path):
    raise DataConfigError(f"LANGUAGES_FILE {path!r} does not exist; write it with `aya-t5x "
                          "languages add CODE ... --manifest FILE`")
  manifest_lib.use_languages(manifest_lib.read(path))


def check_dataset_config(config: DatasetConfig) -> None:
  """Fails fast (before anything compiles) if `config` cannot give batches."""
  import_task_modules(config.module)
  if config.languages_file:
    register_languages_file(config.languages_file)
  if config.task_manifest:
    register_manifest(config.task_manifest)
  _check_registered(config.mixture_or_task_name)
  _check_shards(config, config.shard_count())
  _check_cached(config)


def _check_cached(config: DatasetConfig) -> None:
  """Every task is read the way it can be: with `cache_dir`, each task needs its cache
  there; without, no task may be one that exists only in a cache."""
  import seqio

  from aya_t5x.data import caches, registration

  if config.cache_dir is not None:
    caches.use_cache_dir(config.cache_dir)
  provider = seqio.get_mixture_or_task(config.mixture_or_task_name)
  for task in provider.tasks if isinstance(provider, seqio.Mixture) else [provider]:
    cache = registration.cache_of(task.name)
    if config.cache_dir is None and cache is not None:
      raise DataConfigError(
          f"task {task.name} was registered from the cache {cache} and exists only there: "
          f"set --gin.CACHE_DIR=\"'{cache}'\" to read it.")
    if config.cache_dir is not None and config.split in task.splits and (
        not task.supports_caching or task.cache_dir is None):
      raise DataConfigError(
          f"CACHE_DIR is {config.cache_dir!r} but task {task.name} has no SeqIO cache there "
          f"(searched {', '.join(seqio.utils.get_global_cache_dirs())}). Build one with "
          "`aya-t5x cache` (docs/data.md) into that folder, or set --gin.CACHE_DIR=None to "
          "preprocess on the fly.")


def check_vocabulary_fits(config: DatasetConfig, model_vocab_size: int) -> None:
  """Fails fast if a task of `config` has token ids beyond the model's embedding rows.

  Out-of-range ids would not fail: the embedding lookup fills them with NaN, and the run
  stops at its first step with a NaN loss.
  """
  import seqio

  from aya_t5x.vocab import vocabulary as vocab_lib

  provider = seqio.get_mixture_or_task(config.mixture_or_task_name)
  tasks = provider.tasks if isinstance(provider, seqio.Mixture) else [provider]
  for task in tasks:
    for feature_name, feature in task.output_features.items():
      try:
        vocab_lib.check_fits_model(feature.vocabulary, model_vocab_size)
      except ValueError as e:
        raise DataConfigError(
            f"{config.mixture_or_task_name!r}: task {task.name!r}, feature "
            f"{feature_name!r}: {e} (Fine-tuning a checkpoint needs the vocabulary it was "
            "trained with.)") from e


def _check_shards(config: DatasetConfig, num_shards: int) -> None:
  if config.batch_size % num_shards:
    raise DataConfigError(
        f"batch size {config.batch_size} does not divide into {num_shards} input shards "
        "(DatasetConfig.num_shards, or one per host when it is None); choose a batch "
        f"size that is a multiple of {num_shards}.")


def build_dataset(config: DatasetConfig, shard: tuple[int, int] | None = None):
  """The feature-converted, batched `tf.data.Dataset` of one input shard.

  Args:
    shard: (index, count); each batch has `batch_size / count` rows. Default: this
      host's shard of one shard per host.
  """
  import seqio

  _hide_accelerators_from_tensorflow()
  _quiet_repeated_seqio_warnings()
  check_dataset_config(config)
  index, count = shard or (jax.process_index(), jax.process_count())
  _check_shards(config, count)
  # Preference pairs have their own features (aya_t5x.preference.features).
  from aya_t5x.preference import features as pair_features
  if pair_features.is_pair_task(config.mixture_or_task_name):
    return pair_features.pair_dataset(config, index, count)
  best_fit = config.use_packing and config.packing == "best_fit"
  converter = (seqio.PassThroughFeatureConverter() if best_fit
               else seqio.EncDecFeatureConverter(pack=config.use_packing))
  dataset = seqio.get_dataset(
      config.mixture_or_task_name, dict(config.task_feature_lengths),
      feature_converter=converter,
      dataset_split=config.split, use_cached=config.cache_dir is not None,
      shuffle=config.shuffle,
      num_epochs=config.num_epochs, seed=config.seed, verbose=False,
      shard_info=seqio.ShardInfo(index=index, num_shards=count) if count > 1 else None)
  if best_fit:
    from aya_t5x.data import packing

    dataset = packing.packed_dataset(dataset, config.task_feature_lengths,
                                     window=config.packing_window)
  return dataset.batch(config.batch_size // count, drop_remainder=True)


def batch_spec(config: DatasetConfig) -> dict[str, jax.ShapeDtypeStruct]:
  """Shapes and dtypes of one global batch, known without reading any data.

  The features of SeqIO's `EncDecFeatureConverter` (and of the best-fit packer, which
  follows its conventions): segment ids and positions only when packing.
  """
  from aya_t5x.preference import features as pair_features
  if pair_features.is_pair_task(config.mixture_or_task_name):
    return pair_features.pair_batch_spec(config)
  lengths = config.task_feature_lengths
  features = {"encoder_input_tokens": "inputs", "decoder_target_tokens": "targets",
              "decoder_input_tokens": "targets", "decoder_loss_weights": "targets"}
  if config.use_packing:
    features.update(encoder_segment_ids="inputs", encoder_positions="inputs",
                    decoder_segment_ids="targets", decoder_positions="targets")
  return {name: jax.ShapeDtypeStruct((config.batch_size, lengths[feature]), np.int32)
          for name, feature in features.items()}


def host_rows(sharding: jax.sharding.Sharding, batch_size: int
              ) -> tuple[tuple[int, int], ...]:
  """The rows of the global batch this host's devices hold, as merged [start, stop) ranges.

  `make_array_from_process_local_data` expects them in this order, concatenated.
  """
  spans = sorted({(index.start or 0, batch_size if index.stop is None else index.stop)
                  for (index, *_) in sharding.addressable_devices_indices_map(
                      (batch_size,)).values()})
  merged: list[tuple[int, int]] = []
  for start, stop in spans:
    if merged and start <= merged[-1][1]:
      merged[-1] = (merged[-1][0], max(stop, merged[-1][1]))
    else:
      merged.append((start, stop))
  return tuple(merged)


class BatchIterator:
  """This host's rows of the global batches, with a position a checkpoint can store.

  Args:
    config: the data.
    position: batches already consumed (a resumed run skips them).
    rows: the global batch rows to return, as from `host_rows` (default: all of them).
    num_shards: overrides `config.shard_count()` (a resumed run passes the count it
      started with, so its batches continue unchanged on any number of hosts).
  """

  def __init__(self, config: DatasetConfig, *, position: int = 0,
               rows: Sequence[tuple[int, int]] | None = None, num_shards: int | None = None):
    self.config = config
    self.num_shards = num_shards or config.shard_count()
    _check_shards(config, self.num_shards)
    self.rows = tuple(rows or ((0, config.batch_size),))
    per_shard = config.batch_size // self.num_shards
    self._pieces = [  # (shard, first row, end row) within that shard's batch
        (shard, max(start, shard * per_shard) - shard * per_shard,
         min(stop, (shard + 1) * per_shard) - shard * per_shard)
        for start, stop in self.rows
        for shard in range(start // per_shard, -(-stop // per_shard))]
    self._iterators: dict[int, Iterator[Batch]] = {
        shard: build_dataset(config, (shard, self.num_shards)).skip(position)
        .as_numpy_iterator() for shard in sorted({p[0] for p in self._pieces})}
    self.position = position

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> Batch:
    # Every shard advances one batch per step, so one position describes them all.
    batches = {shard: next(iterator) for shard, iterator in self._iterators.items()}
    self.position += 1
    pieces = [{k: v[lo:hi] for k, v in batches[shard].items()}
              for shard, lo, hi in self._pieces]
    if len(pieces) == 1:
      return pieces[0]
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

  def state(self) -> dict:
    """What a checkpoint stores to resume at the next batch."""
    return {"position": self.position, "mixture_or_task_name":
            self.config.mixture_or_task_name, "seed": self.config.seed,
            "num_shards": self.num_shards}


def global_batch(host_batch: Batch, sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
  """Assembles global arrays from each host's local rows (sharded over the data axes)."""
  return {name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for name, value in host_batch.items()}
