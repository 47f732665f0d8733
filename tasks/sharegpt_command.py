"""ShareGPT-Command: English ShareGPT prompts with synthetic answers, translated (6.8M, 93
languages).

Not published; this spec reads `inputs, targets, language` with optional `id` and
`original_inputs` (the English prompt a translated record was made from). Prompt rules
(RECIPE.md §3), applied to the English prompt: no URLs, at most 10,000 characters,
English only.
"""

from aya_t5x.data import filters
from aya_t5x.data.sources import Field, SourceSpec, register_source

SHAREGPT_COMMAND = register_source(SourceSpec(
    name="sharegpt_command",
    title="ShareGPT-Command",
    schema=(Field(name="inputs"), Field(name="targets"), Field(name="language"),
            Field(name="id", type=(int, str), required=False),
            Field(name="original_inputs", required=False)),
    language_field="language",
    default_dataset="sharegpt_command",
    id_field="id",
    filters=lambda: (filters.KeepMT5Languages(), filters.ShareGPTPrompts()),
    description="English prompts with synthetic answers, translated",
))
