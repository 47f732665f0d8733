"""Registry lookups: a typo names the closest entries and everything registered."""

import pytest

from aya_t5x import registry


def test_lookup_returns_the_entry_or_names_the_alternatives():
  table = {"aya_dataset": 1, "xp3x": 2}
  assert registry.lookup(table, "xp3x", what="source") == 2
  with pytest.raises(KeyError, match=r"unknown source 'aya_datset'\. Did you mean "
                                     r"aya_dataset\? Registered: aya_dataset, xp3x"):
    registry.lookup(table, "aya_datset", what="source")
  with pytest.raises(KeyError, match=r"Registered: \(none; import it\)"):
    registry.lookup({}, "x", what="source", empty="(none; import it)")
