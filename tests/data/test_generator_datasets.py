"""The generator-fed datasets: TensorFlow's elements, and a finalizer that tolerates passes
cancelled before their first element."""

import numpy as np
import tensorflow as tf
from tensorflow.python.data.ops import dataset_ops

from aya_t5x.data import generator_datasets


def numbers():
  yield from range(5)


def test_yields_what_tensorflow_from_generator_yields():
  spec = tf.TensorSpec((), tf.int64)
  ours = generator_datasets.from_generator(numbers, output_signature=spec)
  theirs = tf.data.Dataset.from_generator(numbers, output_signature=spec)
  assert list(ours.as_numpy_iterator()) == list(theirs.as_numpy_iterator()) == [0, 1, 2, 3, 4]
  # Each pass starts its own generator.
  assert list(ours.take(2).as_numpy_iterator()) == [0, 1]
  assert list(ours.as_numpy_iterator()) == [0, 1, 2, 3, 4]


def test_a_pass_finalized_before_its_first_element_is_no_error():
  generator_datasets.from_generator(numbers, output_signature=tf.TensorSpec((), tf.int64))
  state = dataset_ops.DatasetV2._GeneratorState(numbers)
  unstarted = state.get_next_id()          # the pass's id, handed out at its start
  started = state.get_next_id()
  assert next(state.get_iterator(started)) == 0
  state.iterator_completed(unstarted)      # TensorFlow's own finalizer raised KeyError here
  state.iterator_completed(np.array(started))
  assert state._iterators == {} and state._args == {}

