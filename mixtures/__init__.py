"""SeqIO mixture registrations: the weighting schemes (installed as aya_t5x.mixtures).

`aya` holds the recipe's three schemes (human_heavy, translation_heavy, template_heavy)
and `aya_mixture`, the gin entry point of `gin/mixtures/*.gin`.
"""

from aya_t5x import tasks  # noqa: F401  (the source specs the schemes name)
from aya_t5x.mixtures import aya
from aya_t5x.mixtures.aya import (
  HUMAN_HEAVY,
  PUBLISHED_SIZES,
  TEMPLATE_HEAVY,
  TRANSLATION_HEAVY,
  WeightingScheme,
  aya_mixture,
  get_scheme,
  plan_aya_mixture,
  published_plan,
  register_plan,
  register_scheme,
  scheme_names,
)

__all__ = ["HUMAN_HEAVY", "PUBLISHED_SIZES", "TEMPLATE_HEAVY", "TRANSLATION_HEAVY",
           "WeightingScheme", "aya", "aya_mixture", "get_scheme", "plan_aya_mixture",
           "published_plan", "register_plan", "register_scheme", "scheme_names"]
