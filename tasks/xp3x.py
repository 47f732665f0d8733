"""xP3x: academic datasets under multilingual prompt templates (168M examples, 101 languages
after pruning).

Published schema (Hugging Face `CohereForAI/xP3x`): `inputs, targets, language, split,
template, dataset, config`. `language` is a FLORES-style tag (`arb_Arab`); `template`
names the prompt template, so template pruning (RECIPE.md §3) works per (dataset,
template): templates whose targets are mostly empty or one or two words go, and so do
near-duplicates of a longer template. The paper removed 50.2% of English and 35.9% of
multilingual templates (19.7% / 18.3% of instances); the scan reports the same figures.
"""

from aya_t5x.data import filters
from aya_t5x.data.sources import Field, SourceSpec, register_source

XP3X = register_source(SourceSpec(
    name="xp3x",
    title="xP3x (pruned templates)",
    schema=(Field(name="inputs"), Field(name="targets"), Field(name="language"),
            Field(name="split"), Field(name="template"), Field(name="dataset"),
            Field(name="config", required=False, nonempty=False)),
    language_field="language",
    dataset_field="dataset",
    split_field="split",
    template_field="template",
    filters=lambda: (filters.KeepMT5Languages(), filters.TemplatePruning()),
    description="academic datasets under multilingual templates",
))
