"""The Data Provenance collection: permissively licensed instruction sets (1.65M, 14 languages).

RECIPE.md gives no record schema for it; the collection is published in the Flan
format, so this spec reads `inputs, targets, task_name` (the dataset a record comes
from), with optional `task_type` (its task category) and `language` (English when
absent). Another layout: `dataclasses.replace(DATA_PROVENANCE, schema=..., ...)` and
`register_source(..., overwrite=True)`.

Rules (RECIPE.md §3): at most 20,000 examples per dataset; no code; no datasets derived
from evaluation sets (name them in `EVAL_DERIVED` or with `filters=`); no held-out task
types (textual entailment, coreference, sentence comparison).
"""

from aya_t5x.data import filters
from aya_t5x.data.sources import Field, SourceSpec, register_source

DATASET_CAP = 20_000
HELD_OUT_TASK_TYPES = ("textual entailment", "coreference", "sentence comparison", "code")
# Datasets made from the evaluation suite's sets (RECIPE.md §5) or holding code.
EVAL_DERIVED = ("xnli", "xcopa", "xstorycloze", "xwinograd", "copa", "story_cloze",
                "winogrande", "wsc", "anli", "rte", "mnli", "cb", "tydiqa", "xlsum",
                "flores", "mmlu", "code_alpaca", "codesearchnet", "the_stack")


def provenance_filters(seed: int = 0, cap: int = DATASET_CAP,
                       eval_derived: tuple[str, ...] = EVAL_DERIVED):
  return (filters.KeepMT5Languages(),
          filters.ExcludeTaskTypes(task_types=HELD_OUT_TASK_TYPES),
          filters.ExcludeDatasets(datasets=eval_derived),
          filters.Cap(cap=cap, by=("dataset",), seed=seed, name="cap_per_dataset"))


DATA_PROVENANCE = register_source(SourceSpec(
    name="data_provenance",
    title="Data Provenance collection",
    schema=(Field(name="inputs"), Field(name="targets"), Field(name="task_name"),
            Field(name="task_type", required=False, nonempty=False),
            Field(name="language", required=False)),
    language_field="language",
    default_language="en",
    dataset_field="task_name",
    task_type_field="task_type",
    filters=provenance_filters,
    description="permissively licensed instruction sets",
))
