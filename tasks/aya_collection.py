"""The Aya Collection: existing datasets as instructions, templated (18.9M, 61 languages)
and machine-translated (7.53M, 93 languages; 19 datasets by NLLB 3.3B).

Published schema (Hugging Face `CohereForAI/aya_collection`): `id, inputs, targets,
dataset_name, sub_dataset_name, task_type, template_id, language, script, split`.
`language` is ISO 639-3 (`arb`), `script` ISO 15924, `split` train/validation/test.
The two parts come as separate folders; give each its own path.

Translated part (RECIPE.md §3): at most 3,000 examples per language per dataset, a
different seeded sample per language, Dolly uncapped; outputs containing `<unk>` go.
"""

from aya_t5x.data import filters
from aya_t5x.data.sources import Field, SourceSpec, register_source

SCHEMA = (Field(name="id", type=(int, str)), Field(name="inputs"), Field(name="targets"),
          Field(name="dataset_name"), Field(name="sub_dataset_name", nonempty=False),
          Field(name="task_type", nonempty=False), Field(name="template_id", type=(int, str)),
          Field(name="language"), Field(name="script"), Field(name="split"))

TRANSLATED_CAP = 3000
UNCAPPED = ("dolly",)

_COMMON = dict(schema=SCHEMA, language_field="language", dataset_field="dataset_name",
               split_field="split", template_field="template_id",
               task_type_field="task_type", id_field="id")

AYA_TEMPLATED = register_source(SourceSpec(
    name="aya_templated",
    title="Aya Collection, templated",
    filters=lambda: (filters.KeepMT5Languages(),),
    description="existing datasets turned into instructions by templates, 61 languages",
    **_COMMON,
))


def translated_filters(seed: int = 0, cap: int = TRANSLATED_CAP):
  return (filters.KeepMT5Languages(), filters.DropUnk(),
          filters.Cap(cap=cap, by=("language", "dataset"), seed=seed, uncapped=UNCAPPED,
                      name="cap_per_language_dataset"))


AYA_TRANSLATED = register_source(SourceSpec(
    name="aya_translated",
    title="Aya Collection, translated",
    filters=translated_filters,
    description="19 datasets machine-translated (NLLB 3.3B) into 93 languages",
    **_COMMON,
))
