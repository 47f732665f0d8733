"""Under CI (AYA_T5X_CI=1, set by .ci/run), a skipped test fails the run unless allowed here.

CI provides what the optional tests need (chromium, a PostgreSQL server, libtpu, the
shared XCOPA files, root for a tmpfs mount); a test that skips there for want of one of
them tested nothing while the run looked green. `ALLOWED` is the one list of skips CI
accepts, each with why; any other skip is printed and the session's exit status set to
failure. Outside CI nothing changes: a skip says what is missing, as before.

Loaded by tests/conftest.py (and by `-p tests.ci_skips` in other pytest runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pytest

ENV = "AYA_T5X_CI"


@dataclass(frozen=True, kw_only=True)
class AllowedSkip:
  """A skip CI accepts: its reason contains `reason`, and `applies()` holds."""

  reason: str
  why: str
  applies: Callable[[], bool] = lambda: True


def _not_root() -> bool:
  return os.geteuid() != 0


ALLOWED = (
    AllowedSkip(reason="could not import 'apache_beam'",
                why="the Beam tests run in their own venv, in `make test-beam`"),
    AllowedSkip(reason="cannot mount a tmpfs here", applies=_not_root,
                why="only root may mount; the file-size limit test covers a full disk"),
)


def unexpected(reasons: Iterable[str]) -> list[str]:
  """The skip reasons that no entry of `ALLOWED` accepts, in order."""
  return [r for r in reasons if not any(a.reason in r and a.applies() for a in ALLOWED)]


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
  longrepr = report.longrepr
  if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
    path, line, why = longrepr
    return f"{path}:{line}: {str(why).removeprefix('Skipped: ')}"
  return str(longrepr)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
  if not os.environ.get(ENV):
    return
  reporter = session.config.pluginmanager.get_plugin("terminalreporter")
  if reporter is None:  # an xdist worker: the controller checks every report
    return
  skipped = [_reason(r) for r in reporter.stats.get("skipped", [])]
  bad = unexpected(dict.fromkeys(skipped))  # a module's skip is reported once per worker
  if bad:
    reporter.write_sep("=", f"{len(bad)} skip(s) CI must not have ({ENV}=1)", red=True)
    for reason in bad:
      reporter.write_line(f"  {reason}")
    reporter.write_line("CI provides what these tests need; if one is meant to skip in CI, "
                        "add it to ALLOWED in tests/ci_skips.py with why.")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
