"""The Aya weighting schemes (RECIPE.md §4) as SeqIO mixtures over the six training sources.

Each scheme gives every source a share of the sampling budget, in percent:

| scheme | Aya Dataset | Aya templated | xP3x | Data Prov. | Aya translated | ShareGPT-Command |
|---|---|---|---|---|---|---|
| human_heavy | 25 | 4 | 20 | 6 | 30 | 15 |
| translation_heavy (final) | 10 | 1.5 | 15 | 3.5 | 47.5 | 22.5 |
| template_heavy | 20 | 10 | 30 | 10 | 20 | 10 |

Inside a source the share is spread over its tasks by a `mixing` strategy
(size-proportional by default, with a boost for Dolly, which gets tasks of its own).
`aya_mixture` (gin: `gin/mixtures/*.gin`) scans the sources at the paths given,
registers their tasks and the mixture `aya_<scheme>`, and returns its name for
`MIXTURE_OR_TASK_NAME`. The machinery is `aya_t5x.data.schemes`; a scheme of your own is
one `schemes.scheme_over_sources(...)` or `schemes.register_scheme(...)` call here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gin
from aya_t5x.data import schemes

HUMAN_HEAVY = schemes.scheme_over_sources("human_heavy", "human-annotation-heavy",
                                          25, 4, 20, 6, 30, 15)
TRANSLATION_HEAVY = schemes.scheme_over_sources("translation_heavy", "translation-heavy (final)",
                                                10, 1.5, 15, 3.5, 47.5, 22.5)
TEMPLATE_HEAVY = schemes.scheme_over_sources("template_heavy", "template-heavy",
                                             20, 10, 30, 10, 20, 10)


@gin.configurable(module="aya_t5x.mixtures")
def aya_mixture(scheme: str = gin.REQUIRED, sources: Mapping[str, Any] = gin.REQUIRED,
                vocabulary=gin.REQUIRED, **kwargs: Any) -> str:
  """Registers a scheme's mixture over the sources and returns its name (`aya_<scheme>`).

  The gin entry point of `gin/mixtures/*.gin`; keyword arguments as
  `aya_t5x.data.schemes.plan_aya_mixture`.
  """
  return schemes.register_aya_mixture(scheme, sources, vocabulary, **kwargs)
