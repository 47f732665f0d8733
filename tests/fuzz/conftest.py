"""Hypothesis profiles for the fuzz tests, and the count of inputs each reader was given.

The default profile ("ci") keeps the suite's budget; AYA_FUZZ_PROFILE=soak runs many more
examples (AYA_FUZZ_EXAMPLES per test, default 1000; the figures in BENCHMARKS.md). With
AYA_FUZZ_COUNTS=FILE the number of inputs each reader was given is written to FILE as
JSON at the end of the session.
"""

import json
import os

from hypothesis import HealthCheck, settings

# Files are written per example and some readers start slowly: no deadline, and
# generated inputs may be large (huge fields) on purpose.
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                     HealthCheck.data_too_large,
                                                     HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=30, derandomize=True, **_COMMON)
settings.register_profile("soak", max_examples=int(os.environ.get("AYA_FUZZ_EXAMPLES", "1000")),
                          **_COMMON)
settings.load_profile(os.environ.get("AYA_FUZZ_PROFILE", "ci"))

from tests.fuzz.inputs import INPUTS  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
  target = os.environ.get("AYA_FUZZ_COUNTS")
  if target and INPUTS:
    with open(target, "w") as f:
      json.dump(dict(sorted(INPUTS.items())), f, indent=1)
