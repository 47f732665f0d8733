"""CI fails on a skip it should not have (tests/ci_skips.py), and only under AYA_T5X_CI."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ci_skips

REPO = Path(__file__).resolve().parents[1]

SKIPPING = '''
import pytest

def test_needs_chromium():
  pytest.skip("Debian's chromium is not installed")

def test_needs_beam():
  pytest.skip("could not import 'apache_beam': No module named 'apache_beam'")

def test_runs():
  assert True
'''


def run_pytest(folder: Path, ci: bool) -> subprocess.CompletedProcess:
  (folder / "test_skipping.py").write_text(SKIPPING)
  env = {k: v for k, v in os.environ.items() if k != ci_skips.ENV}
  if ci:
    env[ci_skips.ENV] = "1"
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "-p", "tests.ci_skips", "-rs", str(folder / "test_skipping.py")],
                        cwd=folder, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ci", [False, True])
def test_a_skip_ci_should_not_have_fails_the_run_only_under_ci(tmp_path, ci):
  result = run_pytest(tmp_path, ci)
  assert result.returncode == (1 if ci else 0), result.stdout
  assert "1 passed, 2 skipped" in result.stdout
  assert ("1 skip(s) CI must not have" in result.stdout) == ci, result.stdout
  if ci:
    listed = result.stdout.split("skip(s) CI must not have")[1].split("CI provides")[0]
    assert "test_skipping.py:5: Debian's chromium is not installed" in listed
    assert "apache_beam" not in listed  # an allowed skip


def test_the_allowed_list_names_what_ci_provides_as_unexpected():
  provided = ["the real XCOPA files are not at /x", "no PostgreSQL server: set ...",
              "libtpu is not installed (pip install -e '.[tpu]')",
              "Debian's chromium is not installed", "no mount command"]
  assert ci_skips.unexpected(provided) == provided
  assert ci_skips.unexpected(["could not import 'apache_beam': no module"]) == []
  tmpfs = "cannot mount a tmpfs here (permission denied)"
  assert ci_skips.unexpected([tmpfs]) == ([tmpfs] if os.geteuid() == 0 else [])
