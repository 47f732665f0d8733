"""The trainer hook that runs an evaluation suite every N steps (a `train_evaluators` contract).

    train.evaluators = [@TeacherForcedEvaluator(), @SuiteEvaluator()]
    SuiteEvaluator.suite = @EvalSuite()

(`gin/eval/during_training.gin` binds exactly this.) The suite is planned once, at the
first evaluation, so a missing file stops the run then rather than at every step. The
parameters stay sharded as the trainer holds them; batches are sharded over its data
axes. Each evaluation yields the per-task scores and the benchmark and resource-group
averages for the trainer's log, and with `output_dir` the chief process writes the full
report to `output_dir/eval_<suite>/step_<N>/`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax

from aya_t5x.evaluation import predict, report
from aya_t5x.evaluation import suite as suite_lib
from aya_t5x.train_evaluators import EvalContext


@dataclasses.dataclass(kw_only=True)
class SuiteEvaluator:
  """Runs `suite` on the current parameters; metrics are named `<suite>/<benchmark>/...`.

  Attributes:
    suite: the suite (gin: `@EvalSuite()` with a suite file of gin/eval/).
    output_dir: where the chief writes each step's report (None: log only).
    write_predictions: also write each task's predictions next to the report.
  """

  suite: suite_lib.EvalSuite
  output_dir: str | None = None
  write_predictions: bool = False
  _plan: Any = dataclasses.field(default=None, init=False, repr=False)

  @property
  def name(self) -> str:
    return self.suite.name

  def run(self, params: Any, context: EvalContext) -> Iterable[tuple[str, float]]:
    if self._plan is None:
      self._plan = suite_lib.plan(self.suite)
    placement = predict.Placement(context.mesh, context.partitioner)
    result = suite_lib.run(self._plan, params, context.config, placement)
    built = report.build(result, step=context.step, config=context.config)
    if self.output_dir and jax.process_index() == 0:
      folder = Path(self.output_dir) / f"eval_{self.suite.name}" / f"step_{context.step}"
      report.write(built, folder)
      if self.write_predictions:
        report.write_predictions(result, folder)
    yield from report.scalars(built).items()
