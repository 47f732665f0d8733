"""The flags of a tiny training run, as a user would type them, for tests and benchmarks.

The tiny model (`aya_t5x.testing.TINY`) on the fixture task (`fixture_tasks.TASK`), FSDP
over the devices there are (8 simulated CPU devices in the suite), saving every 4 steps:
a run of a few steps takes seconds on CPU.
"""

from __future__ import annotations

import os

from aya_t5x.testing.models import TINY


def gin_args(model_dir: str | os.PathLike, steps: int, *extra: str) -> list[str]:
  """The `aya-t5x train` flags of a tiny run of `steps` steps in `model_dir`; `extra`
  flags come last (so they win)."""
  return [
      "--gin_file", "models/mt5_tiny.gin", "--gin_file", "runs/finetune.gin",
      "--gin_file", "partitioning/fsdp.gin",
      f"--gin.MODEL_DIR='{model_dir}'", f"--gin.TRAIN_STEPS={steps}",
      "--gin.MIXTURE_OR_TASK_NAME='test_reverse'",
      "--gin.MIXTURE_OR_TASK_MODULE='aya_t5x.testing.fixture_tasks'",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 16}",
      "--gin.BATCH_SIZE=16", "--gin.DROPOUT_RATE=0.1", "--gin.LEARNING_RATE=0.01",
      f"--gin.MT5Config.vocab_size={TINY.vocab_size}", f"--gin.MT5Config.d_model={TINY.d_model}",
      f"--gin.MT5Config.d_kv={TINY.d_kv}", f"--gin.MT5Config.d_ff={TINY.d_ff}",
      "--gin.LossConfig.normalization='average_per_sequence'",
      "--gin.CheckpointConfig.every_steps=4", "--gin.CheckpointConfig.keep=None",
      "--gin.train.log_every=2", *extra]
