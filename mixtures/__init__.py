"""SeqIO mixture registrations: the weighting schemes (installed as aya_t5x.mixtures).

`aya` registers the recipe's three schemes (human_heavy, translation_heavy,
template_heavy) and `aya_mixture`, the gin entry point of `gin/mixtures/*.gin`. The
planning machinery they use is `aya_t5x.data.schemes`, re-exported here for notebooks.
"""

from aya_t5x import tasks  # noqa: F401  (the source specs the schemes name)
from aya_t5x.data.schemes import (
  PUBLISHED_SIZES,
  SOURCES,
  WeightingScheme,
  get_scheme,
  plan_aya_mixture,
  published_plan,
  register_plan,
  register_scheme,
  registered_plan,
  scheme_names,
)
from aya_t5x.mixtures import aya
from aya_t5x.mixtures.aya import HUMAN_HEAVY, TEMPLATE_HEAVY, TRANSLATION_HEAVY, aya_mixture

__all__ = ["HUMAN_HEAVY", "PUBLISHED_SIZES", "SOURCES", "TEMPLATE_HEAVY", "TRANSLATION_HEAVY",
           "WeightingScheme", "aya", "aya_mixture", "get_scheme", "plan_aya_mixture",
           "published_plan", "register_plan", "register_scheme", "registered_plan",
           "scheme_names"]
