"""Small synthetic SeqIO tasks for trainer tests and benchmarks: reverse token ids, bytes.

Registered on import (as a user's MIXTURE_OR_TASK_MODULE would be:
`--gin.MIXTURE_OR_TASK_MODULE="'aya_t5x.testing.fixture_tasks'"`). Deterministic: the
examples depend only on the split, so every process builds the same data.
"""

import numpy as np
import seqio
import tensorflow as tf

import gin

VOCAB_SIZE = 128
TASK = "test_reverse"


def _examples(split: str) -> tf.data.Dataset:
  rng = np.random.default_rng({"train": 0, "validation": 1}[split])
  rows = []
  for _ in range(512 if split == "train" else 64):
    tokens = rng.integers(2, VOCAB_SIZE, rng.integers(3, 13)).astype(np.int32)
    rows.append((tokens, tokens[::-1].copy()))

  def generate():
    for inputs, targets in rows:
      yield {"inputs": inputs, "targets": targets}

  spec = tf.TensorSpec([None], tf.int32)
  return tf.data.Dataset.from_generator(generate, output_signature={"inputs": spec,
                                                                    "targets": spec})


if TASK not in seqio.TaskRegistry.names():
  vocabulary = seqio.PassThroughVocabulary(size=VOCAB_SIZE, eos_id=1)
  seqio.TaskRegistry.add(
      TASK,
      source=seqio.FunctionDataSource(
          dataset_fn=lambda split, shuffle_files, seed=None: _examples(split),
          splits=["train", "validation"]),
      preprocessors=[seqio.preprocessors.append_eos_after_trim],
      output_features={"inputs": seqio.Feature(vocabulary, add_eos=True),
                       "targets": seqio.Feature(vocabulary, add_eos=True)})

# A text task with seqio's byte vocabulary, for commands that need a vocabulary by task.
BYTES_TASK = "test_bytes"
if BYTES_TASK not in seqio.TaskRegistry.names():
  byte_vocabulary = seqio.ByteVocabulary()
  seqio.TaskRegistry.add(
      BYTES_TASK,
      source=seqio.FunctionDataSource(
          dataset_fn=lambda split, shuffle_files, seed=None: tf.data.Dataset.from_tensor_slices(
              {"inputs": ["one two"], "targets": ["two one"]}),
          splits=["train"]),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim],
      output_features={"inputs": seqio.Feature(byte_vocabulary, add_eos=True),
                       "targets": seqio.Feature(byte_vocabulary, add_eos=True)})


@gin.configurable(module="testing")
def mixture_of(tasks=gin.REQUIRED, name: str = "test_mixture") -> str:
  """Registers a mixture of `tasks` when gin builds the run's arguments (as
  `aya_mixture.extra` does), so the tasks must be registered by then."""
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add(name, [(seqio.TaskRegistry.get(task), 1.0) for task in tasks])
  return name
