"""SeqIO task registrations, one module per data source or evaluation set.

Installed as aya_t5x.tasks. Importing it registers the specs of the recipe's six
training sources (RECIPE.md §3) in `aya_t5x.data.sources`; their SeqIO tasks are
registered from the paths a user gives, by `register_aya_source` here or by the gin
files in `gin/mixtures/` (see docs/data.md):

    from aya_t5x import tasks
    tasks.register_aya_source("aya_dataset", "/data/aya_dataset", vocabulary=vocab)

gives one task per language (`aya_dataset.sw`, ...) and the source mixture
`aya_dataset` over them.
"""

from aya_t5x.tasks import (
  aya_collection,
  aya_dataset,
  data_provenance,
  sharegpt_command,
  xp3x,
)
from aya_t5x.tasks.aya_collection import AYA_TEMPLATED, AYA_TRANSLATED
from aya_t5x.tasks.aya_dataset import AYA_DATASET
from aya_t5x.tasks.data_provenance import DATA_PROVENANCE
from aya_t5x.tasks.sharegpt_command import SHAREGPT_COMMAND
from aya_t5x.tasks.xp3x import XP3X

# In the order of RECIPE.md §4's table.
TRAINING_SOURCES = (AYA_DATASET, AYA_TEMPLATED, XP3X, DATA_PROVENANCE, AYA_TRANSLATED,
                    SHAREGPT_COMMAND)


def register_aya_source(name: str, paths, **kwargs):
  """SeqIO tasks for one of the six sources; see `registration.register_source_tasks`."""
  from aya_t5x.data import registration

  return registration.register_source_tasks(name, paths, **kwargs)


__all__ = ["TRAINING_SOURCES", "aya_collection", "aya_dataset", "data_provenance",
           "register_aya_source", "sharegpt_command", "xp3x"]
