"""The XLA defaults: added once, never over a user's own setting, and can be turned off."""

from aya_t5x import xla_flags


def test_defaults_are_added_once_and_respect_the_user():
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  flags = xla_flags.apply_defaults(env)
  assert "--xla_force_host_platform_device_count=8" in flags
  assert "--xla_cpu_experimental_xnn_fusion_type=dot" in flags
  assert xla_flags.apply_defaults(env) == flags  # idempotent
  user = {"XLA_FLAGS": "--xla_cpu_experimental_xnn_fusion_type=eltwise"}
  assert xla_flags.apply_defaults(user) == "--xla_cpu_experimental_xnn_fusion_type=eltwise"
  off = {"AYA_T5X_XLA_DEFAULTS": "0"}
  assert xla_flags.apply_defaults(off) == ""
  assert "XLA_FLAGS" not in off
