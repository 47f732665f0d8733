"""The DPO-family losses and their gradients against PyTorch on the Hugging Face model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aya_t5x.checkpoints import hf
from aya_t5x.preference.losses import PairLossConfig
from aya_t5x.preference.objective import PreferenceObjective
from aya_t5x.testing.models import TINY, hf_reference_model, hf_state_dict_numpy
from aya_t5x.train_step import LossConfig

CONFIG = dataclasses.replace(TINY, dropout_rate=0.0)
INPUT_LENGTH, TARGET_LENGTH = 7, 6


def _pairs(seed=0, count=3):
  """Prompts, chosen and rejected token lists of uneven lengths (no zeros inside)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    out.append(tuple(list(rng.integers(2, CONFIG.vocab_size, rng.integers(2, n + 1)))
                     for n in (INPUT_LENGTH, TARGET_LENGTH, TARGET_LENGTH)))
  return out


def _pad(tokens, length):
  return np.array(list(tokens) + [0] * (length - len(tokens)), np.int32)


def _batch(pairs):
  batch = {"encoder_input_tokens": np.stack([_pad(p, INPUT_LENGTH) for p, _, _ in pairs])}
  for index, side in ((1, "chosen"), (2, "rejected")):
    targets = np.stack([_pad(pair[index], TARGET_LENGTH) for pair in pairs])
    batch[f"{side}_target_tokens"] = targets
    batch[f"{side}_input_tokens"] = np.pad(targets, ((0, 0), (1, 0)))[:, :-1]
    batch[f"{side}_loss_weights"] = (targets > 0).astype(np.int32)
  return batch


def _torch_token_logps(model, batch, side):
  import torch

  inputs = torch.tensor(batch["encoder_input_tokens"], dtype=torch.long)
  decoder_inputs = torch.tensor(batch[f"{side}_input_tokens"], dtype=torch.long)
  targets = torch.tensor(batch[f"{side}_target_tokens"], dtype=torch.long)
  logits = model(input_ids=inputs, attention_mask=(inputs > 0).long(),
                 decoder_input_ids=decoder_inputs).logits.float()
  token = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
  return token * (targets > 0).float(), (targets > 0).float()


def _torch_loss(policy, reference, batch, config: PairLossConfig):
  """An independent transcription of TRL's DPO/IPO/SimPO losses (mean over pairs)."""
  import torch.nn.functional as F

  pc, wc = _torch_token_logps(policy, batch, "chosen")
  pr, wr = _torch_token_logps(policy, batch, "rejected")
  eps = config.label_smoothing
  if config.name == "simpo":
    logits = config.beta * (pc.sum(-1) / wc.sum(-1) - pr.sum(-1) / wr.sum(-1))
    logits = logits - config.beta * config.gamma_beta_ratio
    return (-(1 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)).mean()
  import torch
  with torch.no_grad():
    rc, _ = _torch_token_logps(reference, batch, "chosen")
    rr, _ = _torch_token_logps(reference, batch, "rejected")
  if config.name == "ipo":
    h = (pc.sum(-1) / wc.sum(-1) - pr.sum(-1) / wr.sum(-1)) - (
        rc.sum(-1) / wc.sum(-1) - rr.sum(-1) / wr.sum(-1))
    return ((h - 1 / (2 * config.beta)) ** 2).mean()
  h = (pc.sum(-1) - pr.sum(-1)) - (rc.sum(-1) - rr.sum(-1))
  z = config.beta * h
  return (-(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)).mean()


@pytest.fixture(scope="module")
def models():
  policy = hf_reference_model(CONFIG, seed=0)
  reference = hf_reference_model(CONFIG, seed=1)
  return policy, reference


LOSSES = [PairLossConfig(name="sigmoid", beta=0.1),
          PairLossConfig(name="sigmoid", beta=0.5, label_smoothing=0.2),
          PairLossConfig(name="ipo", beta=0.3),
          PairLossConfig(name="simpo", beta=2.0, gamma_beta_ratio=0.5, label_smoothing=0.1)]


# Every loss tiled and untiled (48 does not divide the vocabulary of 128), each reference
# source at least once.
CASES = [(LOSSES[0], "live", None), (LOSSES[0], "precomputed", 48),
         (LOSSES[1], "precomputed", None), (LOSSES[1], "live", 48),
         (LOSSES[2], "live", None), (LOSSES[2], "precomputed", 48),
         (LOSSES[3], "none", None), (LOSSES[3], "none", 48)]


@pytest.mark.parametrize("pair_loss,reference,tile", CASES,
                         ids=lambda c: getattr(c, "name", str(c)))
def test_loss_and_gradient_equal_pytorch(models, pair_loss, reference, tile):
  import torch
  policy_hf, reference_hf = models
  pairs = _pairs()
  batch = _batch(pairs)
  policy_hf.zero_grad()
  expected = _torch_loss(policy_hf, reference_hf, batch, pair_loss)
  expected.backward()
  expected_grads = {name: p.grad.numpy() for name, p in policy_hf.named_parameters()
                    if p.grad is not None}

  params = hf.params_from_hf_state_dict(hf_state_dict_numpy(policy_hf), CONFIG)
  reference_params = hf.params_from_hf_state_dict(hf_state_dict_numpy(reference_hf), CONFIG)
  if reference == "precomputed":
    with torch.no_grad():
      for side in ("chosen", "rejected"):
        batch[f"{side}_reference_logps"] = _torch_token_logps(
            reference_hf, batch, side)[0].numpy()
  objective = PreferenceObjective(pair_loss=pair_loss, reference=reference)
  from aya_t5x.model import MT5

  def loss_fn(p):
    numerator, sums = objective.loss_terms(
        MT5(CONFIG), LossConfig(vocab_tile_size=tile), p, jax.tree.map(jnp.asarray, batch),
        jax.random.key(0), False, reference_params)
    return numerator / sums["denominator"]

  loss, grads = jax.value_and_grad(loss_fn)(params)
  np.testing.assert_allclose(float(loss), expected.item(), rtol=1e-5, atol=1e-5)
  got = hf.params_to_hf_state_dict(grads, CONFIG)
  compared = 0
  for name, value in got.items():
    if name in expected_grads:
      np.testing.assert_allclose(value, expected_grads[name], rtol=1e-5, atol=1e-5,
                                 err_msg=name)
      compared += 1
  assert compared >= 10
