"""Fuzzed task manifests (`aya-t5x tasks add` writes them; TASK_MANIFEST reads them).

`manifest.read` and the spec each entry becomes: entries, or a ValueError
naming the file, the entry and the field.
"""

from hypothesis import example, given
from hypothesis import strategies as st

from aya_t5x.data import manifest
from tests.fuzz.inputs import LANGUAGES, TEXT, VALUES, check_outcome, json_bytes, records

ENTRY = records(tuple(sorted(manifest.TASK_KEYS)),
                {"name": st.sampled_from(["my_task", "a.b:c", "bad name", ""]),
                 "language": LANGUAGES, "path": TEXT,
                 "template": st.one_of(VALUES, st.fixed_dictionaries(
                     {"inputs": TEXT, "targets": TEXT}, optional={"x": TEXT}))})


def read(path):
  return [manifest.spec_of_entry(entry) for entry in manifest.read(path).tasks]


@given(json_bytes(st.one_of(st.fixed_dictionaries({"tasks": st.lists(ENTRY, max_size=3)}),
                            VALUES)))
# Found: bad UTF-8 (UnicodeDecodeError), a task that is not an object (TypeError) and a
# template with another key (TypeError when the spec was built).
@example(content=b"\xff\xfe\x80")
@example(content=b'{"tasks": [5]}')
@example(content=b'{"tasks": [{"name": "t", "path": "p", "template": '
                 b'{"inputs": "{a}", "targets": "{b}", "x": "y"}}]}')
def test_read_manifest(tmp_path_factory, content):
  path = tmp_path_factory.mktemp("fuzz") / "tasks.json"
  path.write_bytes(content)
  check_outcome("task manifest", path, lambda: read(path))
