"""Training metrics land in `metrics.jsonl` and TensorBoard event files, locally or in a bucket.

`ram://` is TensorFlow's in-memory file system: it stands in for `gs://` (both go through
`tf.io.gfile`, and neither can append to an object).
"""

import json
import os
import uuid

import pytest
import tensorflow as tf

from aya_t5x.metric_writers import MetricWriter


@pytest.mark.parametrize("where", ["local", "bucket"])
def test_metrics_and_events_are_written_and_a_resumed_run_keeps_the_earlier_ones(
    where, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  directory = (str(tmp_path / "run") if where == "local"
               else f"ram://bucket-{uuid.uuid4().hex}/run")
  first = MetricWriter(directory)
  first.write(1, {"loss": 2.0}, prefix="train/")
  first.write(2, {"loss": 1.5, "accuracy": 0.25}, prefix="train/")
  first.close()
  resumed = MetricWriter(directory)
  resumed.write(3, {"loss": 1.0}, prefix="train/")
  resumed.close()

  lines = [json.loads(line) for line in
           tf.io.gfile.GFile(f"{directory}/metrics.jsonl").read().splitlines()]
  assert [line["step"] for line in lines] == [1, 2, 3]
  assert lines[1]["train/accuracy"] == 0.25 and lines[2]["train/loss"] == 1.0
  event_files = tf.io.gfile.glob(f"{directory}/tensorboard/events.out.tfevents.*")
  assert len(event_files) == 2  # one per writer, as TensorBoard expects
  scalars = sorted((event.step, value.tag, value.simple_value)
                   for path in event_files
                   for event in tf.compat.v1.train.summary_iterator(path)
                   for value in event.summary.value)
  assert scalars == [(1, "train/loss", 2.0), (2, "train/accuracy", 0.25),
                     (2, "train/loss", 1.5), (3, "train/loss", 1.0)]
  # Nothing of a bucket run lands in the working directory.
  assert os.listdir(tmp_path) == (["run"] if where == "local" else [])


def test_a_writer_that_is_not_the_chief_writes_nothing(tmp_path):
  writer = MetricWriter(str(tmp_path / "run"), enabled=False)
  writer.write(1, {"loss": 1.0})
  writer.close()
  assert not (tmp_path / "run").exists()
