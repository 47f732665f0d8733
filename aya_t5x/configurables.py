"""The registration table: which of aya_t5x's functions and classes gin files may configure.

Importing this module registers them with gin under the module name `aya_t5x`
(`aya_t5x.MT5Config`, `train/aya_t5x.DatasetConfig`, ...) and imports the trainer and the
evaluation suite to do so, so it sits at the top of the import graph: the command line
(`aya_t5x.cli`), the demo and tests import it; library modules never do. Parsing gin is
`aya_t5x.gin_config`, below everything.
"""

from __future__ import annotations

import gin
from aya_t5x import (
  decoding,
  gin_config,
  input_pipeline,
  model_config,
  optim,
  partitioning,
  train,
  train_evaluators,
  train_step,
)
from aya_t5x.adapters import lora as adapters_lora
from aya_t5x.adapters import trainable as adapters_trainable
from aya_t5x.data import manifest as _manifest  # noqa: F401  (gin: load_manifest)
from aya_t5x.evaluation import metrics as eval_metrics
from aya_t5x.evaluation import suite as eval_suite
from aya_t5x.evaluation import suite_evaluator as eval_hook
from aya_t5x.preference import losses as preference_losses
from aya_t5x.preference import objective as preference_objective

# Each entry is the name a gin file uses; the values are the callables gin configures.
REGISTERED = {
    "MT5Config": model_config.MT5Config,
    "train": train.train,
    "DatasetConfig": input_pipeline.DatasetConfig,
    "Partitioner": partitioning.Partitioner,
    "preset_rules": partitioning.preset_rules,
    "LearningRateSchedule": optim.LearningRateSchedule,
    "AdafactorConfig": optim.AdafactorConfig,
    "LossConfig": train_step.LossConfig,
    # What the step optimises (train.objective): fine-tuning, or preference pairs.
    "CrossEntropy": train_step.CrossEntropy,
    "PreferenceObjective": preference_objective.PreferenceObjective,
    "PairLossConfig": preference_losses.PairLossConfig,
    "CheckpointConfig": train.CheckpointConfig,
    "TeacherForcedEvaluator": train_evaluators.TeacherForcedEvaluator,
    # Which parameters train (gin/runs/lora.gin): a registered set and LoRA's shape.
    "trainable_parameters": adapters_trainable.trainable_parameters,
    "LoraConfig": adapters_lora.LoraConfig,
    # The evaluation suite (gin/eval/): entries, suites, the trainer hook, and the metric
    # functions demo suites name (`metric_fns = [@exact_match, @chrf]`).
    "EvalTask": eval_suite.EvalTask,
    "EvalSuite": eval_suite.EvalSuite,
    "SuiteEvaluator": eval_hook.SuiteEvaluator,
    "DecodingOptions": decoding.DecodingOptions,
    "exact_match": eval_metrics.exact_match,
    "chrf": eval_metrics.chrf,
}
# Registered once at import: gin's registry is the one piece of module-level state.
CONFIGURABLES = {name: gin.external_configurable(fn, module=gin_config.MODULE)
                 for name, fn in REGISTERED.items()}

# The arguments a run must have, and how to set them, for the error when one is missing.
REQUIRED_ARGUMENTS = {
    "model_dir": gin_config.MACRO_FIXES["MODEL_DIR"],
    "model_config": "--gin_file models/mt5_small.gin (or another size)",
    "train_data": "--gin_file runs/finetune.gin and --gin.MIXTURE_OR_TASK_NAME=\"'name'\"",
    "train_steps": "--gin.TRAIN_STEPS=1000",
}


def configured_train(**overrides):
  """Runs `train` with everything the parsed gin files bind; `overrides` win.

  Before gin builds the arguments: a model size must be configured, every
  `%gin.REQUIRED` macro set, and the languages of `LANGUAGES_FILE` and the languages,
  tasks and mixtures of `TASK_MANIFEST` registered (a mixture that gin builds, such as
  `aya_mixture.extra`, may name them).
  """
  if "model_config" not in overrides:
    gin_config.configured_model()
  gin_config.check_required_macros()
  languages_file = gin_config.macro_value("LANGUAGES_FILE")
  if languages_file:
    input_pipeline.register_languages_file(languages_file)
  manifest = gin_config.macro_value("TASK_MANIFEST")
  if manifest:
    input_pipeline.register_manifest(manifest)
  try:
    return CONFIGURABLES["train"](**overrides)
  except TypeError as e:
    missing = [name for name in REQUIRED_ARGUMENTS if f"'{name}'" in str(e)]
    if "required" in str(e) and missing:
      fixes = "; ".join(f"{name}: {REQUIRED_ARGUMENTS[name]}" for name in missing)
      raise gin_config.GinConfigError(
          f"The run is missing {', '.join(missing)}. Set {fixes}.") from e
    raise
