"""The DPO-family pair losses, as functions of sequence log-probabilities.

Each loss maps per-pair quantities (float32 [...]) to a per-pair loss and the implicit
rewards of the two answers; the trainer sums the losses over real pairs and divides by
their number. Conventions follow TRL's DPOTrainer so that a practitioner finds the
numbers they expect:

- 'sigmoid' (DPO, Rafailov et al. 2023): with h = (log pi(c) - log pi(r)) -
  (log ref(c) - log ref(r)), loss = -(1 - e) log sigmoid(beta h) - e log sigmoid(-beta h);
  e is the label smoothing (conservative DPO: the share of pairs assumed flipped).
- 'ipo' (Azar et al. 2023): the same h over length-normalised (mean per target token)
  log-probabilities, loss = (h - 1 / (2 beta))^2. It has no label smoothing.
- 'simpo' (Meng et al. 2024, reference-free): z = beta (mean log pi(c) - mean log pi(r))
  - gamma, loss = -(1 - e) log sigmoid(z) - e log sigmoid(-z), gamma = beta *
  `gamma_beta_ratio`.

Rewards are beta (log pi - log ref) for DPO and IPO (per token for IPO) and beta times the
mean log-probability for SimPO; reward accuracy is the share of pairs whose chosen reward
is the larger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class SequenceLogProbs(NamedTuple):
  """Per-pair sums of target-token log-probabilities and target-token counts, float32."""

  chosen: Array
  rejected: Array
  chosen_tokens: Array
  rejected_tokens: Array


class PairLoss(NamedTuple):
  loss: Array
  chosen_reward: Array
  rejected_reward: Array


@dataclasses.dataclass(frozen=True, kw_only=True)
class PairLossConfig:
  """Which pair loss and its hyperparameters (gin: `PairLossConfig.name = 'sigmoid'`)."""

  name: str = "sigmoid"
  beta: float = 0.1
  label_smoothing: float = 0.0
  gamma_beta_ratio: float = 0.5

  def __post_init__(self):
    if self.name not in PAIR_LOSSES:
      raise ValueError(f"PairLossConfig.name is {self.name!r}; choose from "
                       f"{sorted(PAIR_LOSSES)}.")
    if not self.beta > 0:
      raise ValueError(f"PairLossConfig.beta must be positive, got {self.beta}.")
    if not 0.0 <= self.label_smoothing < 0.5:
      raise ValueError("PairLossConfig.label_smoothing must be in [0, 0.5), got "
                       f"{self.label_smoothing}.")
    if self.name == "ipo" and self.label_smoothing:
      raise ValueError("IPO has no label smoothing: set PairLossConfig.label_smoothing = 0 "
                       "or use name = 'sigmoid' (conservative DPO).")

  @property
  def needs_reference(self) -> bool:
    return self.name in REFERENCE_LOSSES


def _smoothed_logistic(z: Array, label_smoothing: float) -> Array:
  return (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(z)
          - label_smoothing * jax.nn.log_sigmoid(-z))


def _mean(total: Array, tokens: Array) -> Array:
  return total / jnp.maximum(tokens, 1.0)


def sigmoid_dpo(policy: SequenceLogProbs, reference: SequenceLogProbs,
                config: PairLossConfig) -> PairLoss:
  chosen = config.beta * (policy.chosen - reference.chosen)
  rejected = config.beta * (policy.rejected - reference.rejected)
  return PairLoss(_smoothed_logistic(chosen - rejected, config.label_smoothing),
                  chosen, rejected)


def ipo(policy: SequenceLogProbs, reference: SequenceLogProbs,
        config: PairLossConfig) -> PairLoss:
  chosen = (_mean(policy.chosen, policy.chosen_tokens)
            - _mean(reference.chosen, reference.chosen_tokens))
  rejected = (_mean(policy.rejected, policy.rejected_tokens)
              - _mean(reference.rejected, reference.rejected_tokens))
  loss = jnp.square(chosen - rejected - 1.0 / (2.0 * config.beta))
  return PairLoss(loss, config.beta * chosen, config.beta * rejected)


def simpo(policy: SequenceLogProbs, reference: SequenceLogProbs | None,
          config: PairLossConfig) -> PairLoss:
  del reference  # reference-free
  chosen = config.beta * _mean(policy.chosen, policy.chosen_tokens)
  rejected = config.beta * _mean(policy.rejected, policy.rejected_tokens)
  gamma = config.beta * config.gamma_beta_ratio
  return PairLoss(_smoothed_logistic(chosen - rejected - gamma, config.label_smoothing),
                  chosen, rejected)


PAIR_LOSSES: dict[str, Callable[..., PairLoss]] = {
    "sigmoid": sigmoid_dpo, "ipo": ipo, "simpo": simpo}
REFERENCE_LOSSES = frozenset({"sigmoid", "ipo"})


def pair_loss(policy: SequenceLogProbs, reference: SequenceLogProbs | None,
              config: PairLossConfig) -> PairLoss:
  """The per-pair loss and rewards of `config.name` (see the module docstring)."""
  if config.needs_reference and reference is None:
    raise ValueError(f"The {config.name!r} loss needs reference log-probabilities.")
  return PAIR_LOSSES[config.name](policy, reference, config)
