"""The XLA flags aya_t5x sets by default, and why: one place, applied before jax starts.

On CPU, XLA's own dot kernels run the mT5 step's matmuls well below the machine's peak;
routing dots through XNNPACK (`--xla_cpu_experimental_xnn_fusion_type=dot`) made the
mT5-small train step 1.3x faster on the 2-core benchmark machine (BENCHMARKS.md), with
float32 results equal to the reference within the tests' tolerances. The flag only affects
the CPU backend, so it is harmless on GPU and TPU hosts.

Opt out with AYA_T5X_XLA_DEFAULTS=0, or override by setting the flag yourself in
XLA_FLAGS (a flag already present is never touched).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

DEFAULT_FLAGS = ("--xla_cpu_experimental_xnn_fusion_type=dot",)


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> str:
  """Adds the default flags to `environ['XLA_FLAGS']` unless opted out or already set.

  Must run before jax initialises its backends (the CLI calls it first thing). Returns
  the resulting XLA_FLAGS.
  """
  flags = environ.get("XLA_FLAGS", "")
  if environ.get("AYA_T5X_XLA_DEFAULTS", "1") == "0":
    return flags
  for flag in DEFAULT_FLAGS:
    name = flag.split("=", 1)[0]
    if name not in flags:
      flags = f"{flags} {flag}".strip()
  environ["XLA_FLAGS"] = flags
  return flags
