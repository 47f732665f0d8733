"""The evaluation sets of the Aya recipe (RECIPE.md §5), one module each.

Importing this module registers their definitions with `aya_t5x.evaluation.eval_sets`;
their SeqIO tasks are registered from a data folder by
`eval_sets.register_benchmark(name, vocabulary=..., data_dir=...)`, which the eval
suites (`gin/eval/*.gin`) do. See docs/evaluation.md for where each set's files go.
"""

from aya_t5x.tasks.eval_demo import DEMO
from aya_t5x.tasks.eval_flores import FLORES_EN_X, FLORES_X_EN
from aya_t5x.tasks.eval_mmlu import MMLU
from aya_t5x.tasks.eval_tydiqa import TYDIQA
from aya_t5x.tasks.eval_xcopa import XCOPA
from aya_t5x.tasks.eval_xlsum import XLSUM
from aya_t5x.tasks.eval_xnli import XNLI
from aya_t5x.tasks.eval_xstorycloze import XSTORYCLOZE
from aya_t5x.tasks.eval_xwinograd import XWINOGRAD

HELD_OUT = (XCOPA, XNLI, XSTORYCLOZE, XWINOGRAD)
GENERATIVE = (MMLU, FLORES_X_EN, FLORES_EN_X, XLSUM, TYDIQA)

__all__ = ["DEMO", "GENERATIVE", "HELD_OUT"]
