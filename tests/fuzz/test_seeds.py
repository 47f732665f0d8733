"""Fuzzed annotation seed imports (`aya-t5x annotate seed`): prompt/completion pairs.

`seeds.import_seeds` adds the good pairs and counts the bad (tolerant) or raises a
ValueError naming the file, line and field.
"""

from hypothesis import given
from hypothesis import strategies as st

from aya_t5x.annotation import seeds
from aya_t5x.annotation.store import Store
from tests.fuzz.inputs import LANGUAGES, check_outcome, jsonl_bytes, records


@given(jsonl_bytes(records(("inputs", "targets", "language"), {"language": LANGUAGES})),
       # The --language flag is checked before any file is read (tests/annotation): here
       # it is a valid code or absent, and each record's language field is fuzzed.
       st.booleans(), st.sampled_from([None, "sw", "yo"]))
def test_import_seeds(tmp_path_factory, content, tolerant, language):
  folder = tmp_path_factory.mktemp("fuzz")
  path = folder / "seeds.jsonl"
  path.write_bytes(content)
  with Store(folder / "annotations.db") as store:
    result = check_outcome("annotation seeds", path, lambda: seeds.import_seeds(
        store, path, language=language, language_key=None if language else "language",
        tolerant=tolerant))
  if isinstance(result, seeds.SeedReport):
    # Every pair is added, a duplicate, or skipped with its line named; no line twice.
    lines = content.count(b"\n") + 1
    assert sum(result.added.values()) + result.duplicates + len(result.skipped) <= lines
    assert all(where.startswith(f"{path}:") for where in result.skipped)
    assert result.format()
