"""`tf.data` datasets fed by Python generators, without TensorFlow's spurious finalizer error.

`tf.data.Dataset.from_generator` keeps one Python iterator per pass in a private
`_GeneratorState`, creates it on the pass's first element and deletes it when the pass's
iterator is finalized. A pass that tf.data starts and then cancels before asking for an
element (a mixture or a prefetch torn down early, as after each train-eval) has nothing
to delete, and TensorFlow 2.21 then logs a `KeyError` traceback ("Error occurred when
finalizing GeneratorDataset iterator"). Nothing is lost, but users read it as a crash.
`from_generator` here is TensorFlow's, with the finalizer made to tolerate such passes
(and to release the arguments they never used).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

_patched = False


def _tolerate_unstarted_passes() -> None:
  global _patched
  if _patched:
    return
  from tensorflow.python.data.ops import dataset_ops

  state_class = getattr(dataset_ops.DatasetV2, "_GeneratorState", None)
  if state_class is None or not hasattr(state_class, "iterator_completed"):
    _patched = True  # another TensorFlow layout: leave it as it is
    return

  def iterator_completed(self, iterator_id):
    iterator_id = self._normalize_id(iterator_id)
    self._iterators.pop(iterator_id, None)
    self._args.pop(iterator_id, None)

  state_class.iterator_completed = iterator_completed
  _patched = True


def from_generator(generator: Callable[[], Iterator[Any]], output_signature: Any):
  """`tf.data.Dataset.from_generator(generator, output_signature=...)`, quiet when cancelled."""
  import tensorflow as tf

  _tolerate_unstarted_passes()
  return tf.data.Dataset.from_generator(generator, output_signature=output_signature)
