"""Whole files or none: a failed write keeps the previous version and leaves no litter."""

import pytest

from aya_t5x.atomic_files import atomic_open, write_bytes_atomically, write_text_atomically


def test_a_write_creates_the_folder_and_replaces_the_file(tmp_path):
  path = tmp_path / "new" / "report.md"
  assert write_text_atomically(path, "first ✓\n") == path
  assert path.read_text(encoding="utf-8") == "first ✓\n"
  write_bytes_atomically(path, b"\x00second")
  assert path.read_bytes() == b"\x00second"
  assert sorted(p.name for p in path.parent.iterdir()) == ["report.md"]


def test_an_interrupted_write_keeps_the_previous_file_whole(tmp_path):
  path = tmp_path / "manifest.json"
  path.write_text('{"tasks": ["kept"]}')
  with pytest.raises(RuntimeError, match="killed"), atomic_open(path) as f:
    f.write('{"tasks": [')
    raise RuntimeError("killed half way")
  assert path.read_text() == '{"tasks": ["kept"]}'
  assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary file


def test_text_mode_passes_newline_through(tmp_path):
  path = tmp_path / "table.tsv"
  with atomic_open(path, newline="") as f:
    f.write("a\r\nb\n")
  assert path.read_bytes() == b"a\r\nb\n"


def test_only_whole_file_modes(tmp_path):
  with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_open(tmp_path / "x", "a"):
    pass
