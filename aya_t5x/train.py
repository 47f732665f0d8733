"""The training loop: fine-tune mT5 on a SeqIO task or mixture, sharded over a device mesh.

`train(...)` reads top to bottom: validate, mesh, model and optimizer, state (restored,
imported or initialised, always already sharded), data, compiled step, loop (log, eval,
checkpoint, preemption), finish. Every choice is a component passed in by gin; the loop
itself has no flags.

    aya-t5x train --gin_file models/mt5_small.gin --gin_file runs/finetune.gin \
      --gin.MIXTURE_OR_TASK_NAME="'my_mixture'" --gin.MODEL_DIR="'/tmp/run'"
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax

from aya_t5x import (
  attention,
  distributed,
  input_pipeline,
  layer_stack,
  metric_writers,
  optim,
  run_record,
  throughput,
  train_evaluators,
  train_state,
)
from aya_t5x.adapters import trainable as trainable_lib
from aya_t5x.checkpoints import native
from aya_t5x.checkpoints.train_checkpoints import TrainCheckpointer, saved_steps_exist
from aya_t5x.model_config import MT5Config
from aya_t5x.partitioning import Partitioner
from aya_t5x.train_evaluators import EvalContext, Evaluator
from aya_t5x.train_step import CrossEntropy, LossConfig, Objective, jit_train_step


@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckpointConfig:
  """How often to save, how many to keep, whether saves overlap training.

  `fallback_to_restorable`: when the latest step cannot be restored, set it aside and
  resume from the newest step that restores (saying which it skipped and why) instead
  of stopping with the error.
  """

  every_steps: int = 1000
  keep: int | None = 3
  async_save: bool = True
  fallback_to_restorable: bool = False


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a finished (or preempted) run reached (parameters in the per-layer layout)."""

  step: int
  state: Any
  last_metrics: dict[str, float]
  preempted: bool


class TrainingDiverged(FloatingPointError):
  """The loss became NaN or infinite; the message names the step and the last checkpoint."""


def _check_initial_checkpoint(path: str) -> None:
  """Names a missing or unreadable INITIAL_CHECKPOINT_PATH before anything is written."""
  from aya_t5x.checkpoints import formats

  try:
    formats.detect_format(path)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(
        f"INITIAL_CHECKPOINT_PATH: {e} Set --gin.INITIAL_CHECKPOINT_PATH=\"'/path'\" to an "
        "aya_t5x, T5X or Hugging Face checkpoint, or to None to start from random weights "
        "(nothing was written to MODEL_DIR).") from e


def train(*, model_dir: str, model_config: MT5Config, train_data: input_pipeline.DatasetConfig,
          train_steps: int, partitioner: Partitioner = Partitioner(),
          schedule: optim.LearningRateSchedule = optim.LearningRateSchedule(),
          optimizer: optim.AdafactorConfig = optim.AdafactorConfig(),
          loss: LossConfig = LossConfig(), checkpoint: CheckpointConfig = CheckpointConfig(),
          num_microbatches: int = 1, log_every: int = 100, eval_every: int = 0,
          evaluators: Sequence[Evaluator] = (), initial_checkpoint_path: str | None = None,
          seed: int = 0, devices: Sequence[jax.Device] | None = None,
          show_progress: bool = True, objective: Objective = CrossEntropy(),
          trainable: trainable_lib.TrainableSet = trainable_lib.ALL) -> TrainResult:
  """Fine-tunes for `train_steps` steps (counted from this fine-tuning's start).

  Resumes from the latest checkpoint in `model_dir` if there is one; otherwise starts
  from `initial_checkpoint_path` (aya_t5x, T5X or Hugging Face) or from random weights.
  `objective` is what the step optimises (`train_step.Objective`: cross-entropy, or
  preference pairs with `aya_t5x.preference.objective.PreferenceObjective`).
  In a multi-host run (`aya_t5x.distributed`) every host calls this with the same
  arguments; only the first host logs.

  `trainable` picks the parameters that train (`aya_t5x.adapters.trainable`: all, or
  LoRA adapters on a frozen base read from `initial_checkpoint_path` at every start).
  """
  arguments = dict(locals())  # first, so that it holds exactly the arguments
  # ------------------------------------------------------------------ validate, mesh
  # Bucket paths (gs://...) stay as given; local ones become absolute.
  model_dir = model_dir if "://" in model_dir else str(Path(model_dir).absolute())
  # Before anything that could fail differently on different hosts.
  distributed.check_hosts_agree(_host_items({**arguments, "model_dir": model_dir}))
  if train_steps < 1:
    raise ValueError(f"TRAIN_STEPS must be positive, got {train_steps}.")
  if initial_checkpoint_path and not saved_steps_exist(model_dir):
    _check_initial_checkpoint(initial_checkpoint_path)  # before MODEL_DIR is created
  mesh = partitioner.mesh(devices)
  partitioner.check_batch(mesh, train_data.batch_size, num_microbatches)
  input_pipeline.check_dataset_config(train_data)
  input_pipeline.check_vocabulary_fits(train_data, model_config.vocab_size)
  is_chief = jax.process_index() == 0

  # ------------------------------------------------------- model, optimizer, layout
  # 'auto' attention becomes the platform's fused kernel here; the saved config keeps
  # the setting as given, so that evaluation elsewhere chooses for its own platform.
  chosen_config = attention.choose_implementation(
      model_config, mesh.devices.flat[0].platform,
      tuple(train_data.task_feature_lengths.values()))
  attention_line = attention.describe_choice(model_config, chosen_config,
                                             mesh.devices.flat[0].platform)
  as_configured, model_config = model_config, chosen_config
  tx = optim.make_run_optimizer(model_config, schedule, optimizer)
  # Checkpoints, evaluators and imports see per-layer parameters even when they are
  # stacked for a scan during training (aya_t5x.layer_stack). The base model is what
  # checkpoints import and the run stores; `model_config` from here on is the network
  # that trains (with adapters, when only adapters train).
  base_config = dataclasses.replace(model_config, scan_layers=False)
  model_config = trainable.model_config(model_config)
  per_layer_config = dataclasses.replace(model_config, scan_layers=False)
  layout = train_state.state_layout(model_config, tx, partitioner, mesh, trainable)
  saved = train_state.checkpoint_layout(model_config, tx, partitioner, mesh, layout, trainable)
  # ----- the trainable-parameter set: the frozen rest lives beside the state (or is empty)
  frozen_layout = train_state.frozen_layout(model_config, partitioner, mesh, trainable)
  frozen_per_layer = train_state.frozen_layout(per_layer_config, partitioner, mesh, trainable)
  has_frozen = bool(jax.tree.leaves(frozen_layout.shapes))
  # The run stores the base model as configured ('auto' attention kept, so that evaluation
  # elsewhere chooses for its own platform).
  saved_config = dataclasses.replace(as_configured, scan_layers=False)

  # ------------------------------------------------------------------------- state
  # Leaving this block waits for the pending saves and stops Orbax's threads; leaving it
  # by an error stops them quietly, so that the error is the last thing printed.
  with TrainCheckpointer(model_dir, save_every_steps=checkpoint.every_steps,
                         keep=checkpoint.keep, async_save=checkpoint.async_save
                         ) as checkpointer:
    if is_chief:
      native.save_model_config(model_dir, saved_config)
      run_record.write(model_dir, train_data.mixture_or_task_name, train_data.task_manifest)
    data_state: dict = {}
    restored = checkpointer.restore_newest(saved.abstract,
                                           fallback=checkpoint.fallback_to_restorable)
    # Frozen parameters come from the initial checkpoint at every start, resumed or not.
    params = None
    if initial_checkpoint_path and (restored is None or has_frozen):
      from aya_t5x.checkpoints import formats

      params, _ = formats.load_params(initial_checkpoint_path, base_config)
      if model_config.scan_layers:
        params = layer_stack.stack_layers(params)
    frozen = train_state.init_frozen(model_config, frozen_layout, mesh, jax.random.key(seed),
                                     trainable, params)
    if has_frozen:
      from aya_t5x.checkpoints import adapters

      adapters.check_run_base(model_dir, adapters.AdapterInfo(
          lora=model_config.lora, base_path=initial_checkpoint_path or f"random (seed {seed})",
          base_dtype=str(jax.tree.leaves(frozen)[0].dtype),
          fingerprint=adapters.fingerprint(frozen)), write=is_chief)
    if restored is not None:
      latest, state, data_state, skipped = restored
      state = train_state.convert_state(state, layout, mesh)
      if data_state.get("mixture_or_task_name") != train_data.mixture_or_task_name:
        raise ValueError(
            f"{checkpointer.directory} holds a run on "
            f"{data_state.get('mixture_or_task_name')!r}, not "
            f"{train_data.mixture_or_task_name!r}; use a new MODEL_DIR, or pass the "
            "checkpoint as INITIAL_CHECKPOINT_PATH to fine-tune it on another mixture.")
      position = int(data_state["position"])
      origin = f"resumed from {checkpointer.directory / str(latest)}" + "".join(
          f" ({note})" for note in skipped)
    else:
      state = train_state.init_state(model_config, tx, layout, mesh, jax.random.key(seed),
                                     params, trainable)
      position = 0
      origin = f"initialised from {initial_checkpoint_path or 'random weights'}"
    params = None  # the host copy: the devices hold what they need
    start_step = int(state.step)

    # -------------------------------------------------------------------------- data
    # This host reads only the input shards of the rows its devices hold; a resumed run
    # keeps the shard count it started with, so its batches continue on any host count.
    batch_sharding = partitioner.batch_sharding(mesh)
    batches = input_pipeline.BatchIterator(
        train_data, position=position,
        rows=input_pipeline.host_rows(batch_sharding, train_data.batch_size),
        num_shards=train_data.num_shards or data_state.get("num_shards"))

    # ----------------------------------------------------------------- compiled step
    compiled_step = jit_train_step(model_config, tx, schedule, loss, seed=seed,
                                   num_microbatches=num_microbatches,
                                   state_shardings=layout.shardings,
                                   batch_sharding=batch_sharding, trainable=trainable,
                                   frozen_shardings=frozen_layout.shardings,
                                   objective=objective)
    # What the objective adds to each step (a frozen reference), loaded on every start,
    # so a resumed run sees the same one.
    step_inputs = objective.step_inputs(model_config=model_config,
                                        initial_checkpoint_path=initial_checkpoint_path,
                                        param_shardings=layout.shardings.params)

    # ------------------------------------------------------------- metrics, progress
    lengths = train_data.task_feature_lengths
    tokens_per_step = train_data.batch_size * (lengths["inputs"] + lengths["targets"])
    flops_per_step = throughput.train_flops_per_step(
        model_config, train_data.batch_size, lengths["inputs"], lengths["targets"])
    peak, peak_source = throughput.device_peak_flops(dtype=model_config.activation_dtype)
    writer = metric_writers.MetricWriter(model_dir, enabled=is_chief)
    progress = metric_writers.Progress(total=train_steps, initial=start_step,
                                       enabled=is_chief and show_progress)
    progress.message(f"{origin}; step {start_step} of {train_steps}; mesh "
                     f"{dict(mesh.shape)}; {attention_line}; peak {peak / 1e12:.2f} "
                     f"TFLOP/s per device ({peak_source})")
    context = EvalContext(config=per_layer_config, mesh=mesh, partitioner=partitioner,
                          param_shardings=trainable_lib.combine(saved.shardings.params,
                                                                frozen_per_layer.shardings),
                          loss=loss, step=start_step)

    def eval_params(state: Any) -> Any:
      """The whole per-layer parameter tree (trained and frozen) for the evaluators."""
      per_layer = frozen
      if model_config.scan_layers and has_frozen:
        with jax.set_mesh(mesh):
          per_layer = jax.jit(layer_stack.unstack_layers,
                              out_shardings=frozen_per_layer.shardings)(frozen)
      return trainable_lib.combine(train_state.convert_state(state, saved, mesh).params,
                                   per_layer)
    if eval_every:
      evaluators, notes = train_evaluators.with_data(evaluators)
      for note in notes:  # once per run: a task without the split turns its evaluator off
        progress.message(note)

    def save(step: int, state: Any, force: bool) -> None:
      checkpointer.save(step, train_state.convert_state(state, saved, mesh), batches.state(),
                        force=force)

    # -------------------------------------------------------------------------- loop
    def check_finite(step: int, metrics: dict) -> None:
      value = float(metrics["loss"])
      if not math.isfinite(value):
        good = [s for s in checkpointer.all_steps() if s < step]
        raise TrainingDiverged(
            f"Loss is {value} at step {step}: training stopped. The last good checkpoint is "
            f"step {good[-1] if good else 'none'} in {checkpointer.directory}; lower the "
            "learning rate or check the data of that step, then rerun to resume.")

    pending: tuple[int, dict] | None = None  # the previous step's metrics, checked lazily
    interval_sums: dict[str, Any] = {}
    interval_start, interval_steps = time.perf_counter(), 0
    last_metrics: dict[str, float] = {}
    preempted = False
    step = start_step
    with (distributed.preemption_notice() as preemption_requested, jax.set_mesh(mesh),
          partitioner.rules_context()):
      while step < train_steps:
        batch = input_pipeline.global_batch(next(batches), batch_sharding)
        state, metrics = compiled_step(state, batch, frozen, *step_inputs)
        step += 1
        if pending is not None:
          check_finite(*pending)
        pending = (step, metrics)
        interval_sums = (jax.tree.map(lambda a, b: a + b, interval_sums, metrics)
                         if interval_sums else metrics)
        interval_steps += 1

        if step % log_every == 0 or step == train_steps:
          check_finite(step, metrics)
          elapsed = time.perf_counter() - interval_start
          last_metrics = {k: float(v) / interval_steps
                          for k, v in jax.device_get(interval_sums).items()}
          last_metrics.update(throughput.interval_rates(
              interval_steps, elapsed, tokens_per_step=tokens_per_step,
              flops_per_step=flops_per_step, total_peak=peak * mesh.size))
          # Real examples (several per row when packed) per second.
          last_metrics["sequences_per_second"] = (
              last_metrics["sequences"] * last_metrics["steps_per_second"])
          writer.write(step, last_metrics, prefix="train/")
          progress.update(step, {k: last_metrics[k] for k in
                                 ("loss", "accuracy", "tokens_per_second", "mfu")})
          interval_sums, interval_steps = {}, 0
          interval_start = time.perf_counter()

        if eval_every and (step % eval_every == 0 or step == train_steps):
          params = eval_params(state) if evaluators else None
          for evaluator in evaluators:
            results = dict(evaluator.run(params, dataclasses.replace(context, step=step)))
            writer.write(step, results, prefix=f"{evaluator.name}/")
            progress.message(f"step {step} {evaluator.name}: " + " ".join(
                f"{k}={metric_writers.format_value(v)}" for k, v in results.items()))

        stop = preemption_requested(step)
        if stop or step % checkpoint.every_steps == 0:
          check_finite(step, metrics)
          save(step, state, force=stop)
        if stop:
          preempted = True
          progress.message(f"SIGTERM received: saved step {step}, stopping.")
          break

      # ---------------------------------------------------------------------- finish
      if not preempted:
        if pending is not None:  # None when a finished run is resumed: no step ran
          check_finite(*pending)
        if checkpointer.latest_step() != step:
          save(step, state, force=True)
  progress.close()
  writer.close()
  return TrainResult(step=step, state=train_state.convert_state(state, saved, mesh),
                     last_metrics=last_metrics, preempted=preempted)


def _host_items(arguments: dict[str, Any]) -> dict[str, str]:
  """What every host of a run must agree on: the arguments (less the per-host ones)."""
  import aya_t5x
  from aya_t5x.data import languages

  per_host = ("devices", "show_progress")
  # Every host must see the same table of added languages (the same task manifest).
  return distributed.describe(
      jax_version=jax.__version__, aya_t5x_version=aya_t5x.__version__,
      added_languages=[lang.to_json() for lang in languages.added_languages()],
      **{k: v for k, v in arguments.items() if k not in per_host})
