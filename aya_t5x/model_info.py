"""Parameter counts and memory of a configured mT5, from shapes alone (nothing allocated)."""

from __future__ import annotations

import dataclasses
import math

from flax import traverse_util

from aya_t5x.model import param_shapes
from aya_t5x.model_config import MT5Config

# Parameter kinds, recognised by the name of the module that owns the parameter.
_KINDS = (("embedding", "token_embedder"), ("logits", "logits_dense"),
          ("attention", "attention"), ("mlp", "mlp"), ("relpos_bias", "relpos_bias"),
          ("layer_norm", "norm"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParameterReport:
  """Counts by top-level group (token_embedder, encoder, decoder) and by kind."""

  config: MT5Config
  total: int
  by_group: dict[str, int]
  by_kind: dict[str, int]

  @property
  def bytes_per_parameter(self) -> int:
    import jax.numpy as jnp
    return jnp.dtype(self.config.param_dtype).itemsize


def _kind(path: tuple[str, ...]) -> str:
  joined = "/".join(path)
  for kind, marker in _KINDS:
    if marker in joined:
      return kind
  return "other"


def parameter_report(config: MT5Config) -> ParameterReport:
  flat = traverse_util.flatten_dict(param_shapes(config))
  by_group: dict[str, int] = {}
  by_kind: dict[str, int] = {}
  for path, shape in flat.items():
    n = math.prod(shape.shape)
    by_group[path[0]] = by_group.get(path[0], 0) + n
    by_kind[_kind(path)] = by_kind.get(_kind(path), 0) + n
  return ParameterReport(config=config, total=sum(by_group.values()), by_group=by_group,
                         by_kind=by_kind)


def human_count(n: int) -> str:
  """12.9B, 0.30B, 58.2M: the precision the mT5 paper uses."""
  if n >= 10**10:
    return f"{n / 1e9:.1f}B"
  if n >= 10**8:
    return f"{n / 1e9:.2f}B"
  if n >= 10**6:
    return f"{n / 1e6:.1f}M"
  return f"{n / 1e3:.1f}K"


def human_bytes(n: float) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024:
      return f"{n:.1f} {unit}"
    n /= 1024
  return f"{n:.1f} TiB"


def format_report(report: ParameterReport) -> str:
  """A plain-text table: totals, then bytes per group and per kind in the parameter dtype."""
  cfg = report.config
  width = report.bytes_per_parameter
  lines = [
      f"mT5: d_model={cfg.d_model} heads={cfg.num_heads} d_kv={cfg.d_kv} d_ff={cfg.d_ff} "
      f"layers={cfg.num_encoder_layers}/{cfg.num_decoder_layers} vocab={cfg.vocab_size}",
      f"parameters: {human_count(report.total)} ({report.total:,}), "
      f"{human_bytes(report.total * width)} in {cfg.param_dtype}",
      "",
      f"{'group':<16}{'parameters':>16}{'share':>8}{'bytes (' + cfg.param_dtype + ')':>20}",
  ]
  for title, counts in (("by module", report.by_group), ("by kind", report.by_kind)):
    lines.append(f"-- {title}")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
      lines.append(f"{name:<16}{n:>16,}{n / report.total:>8.1%}"
                   f"{human_bytes(n * width):>20}")
  return "\n".join(lines)
