"""The Aya Dataset: 199.5K human-written prompt/completion pairs in 64 languages.

Published schema (Hugging Face `CohereForAI/aya_dataset`, train and test splits):
`inputs, targets, language, language_code, annotation_type, user_id`, all strings.
`language` is a name ("Moroccan Arabic"), `language_code` ISO 639-3 (`ary`); the
code decides the task's language, so dialects fold into their mT5 language.
"""

from aya_t5x.data import filters
from aya_t5x.data.sources import Field, SourceSpec, register_source

AYA_DATASET = register_source(SourceSpec(
    name="aya_dataset",
    title="Aya Dataset (human)",
    schema=(Field(name="inputs"), Field(name="targets"), Field(name="language"),
            Field(name="language_code"), Field(name="annotation_type"),
            Field(name="user_id")),
    language_field="language_code",
    default_dataset="aya_dataset",
    filters=lambda: (filters.KeepMT5Languages(),),
    description="original human annotations and re-annotations, 64 languages",
))
