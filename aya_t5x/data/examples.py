"""`Example`: one validated training record, the unit every data stage passes on.

Sources make examples (`aya_t5x.data.sources`), templates render them and filters judge
them; each of those modules imports this one, and none imports another for the type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aya_t5x.data.readers import Location


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Example:
  """A record after validation: what a SeqIO task yields, plus where it came from."""

  inputs: str
  targets: str
  language: str            # mT5 code from languages.csv
  dataset: str
  split: str
  language_code: str = ""  # as the record gave it (for example `ary`, `arb_Arab`)
  template: str = ""
  task_type: str = ""
  record_id: str = ""
  location: Location | None = None
  fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the raw record

