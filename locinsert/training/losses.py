"""Preference losses on box log-probabilities (DPO and its variants).

A box is always 4 coordinate tokens, so a sequence log-probability is a sum of 4 token log-probs and
"length normalisation" is a division by 4. The formulas follow trl 1.16's ``DPOTrainer`` (Apache-2.0),
which keeps them inline in a private method; trl has no public DPO loss function to call.

With d = (log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected)):

- ``sigmoid`` (DPO):      -log sigma(beta d)
- ``hinge`` (SLiC):       max(0, 1 - beta d)
- ``ipo``:                (d / 4 - 1 / (2 beta))^2      (per-token average, as trl and the IPO authors do)
- ``robust`` (rDPO):      (-(1 - e) log sigma(beta d) + e log sigma(-beta d)) / (1 - 2e),  e = label_smoothing
- ``sft``:                mean token NLL of the chosen box (RPO's extra term), weighted by ``loss_weights``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

BOX_TOKENS = 4
PAIRWISE_LOSSES = ("sigmoid", "hinge", "ipo", "robust")
LOSS_TYPES = PAIRWISE_LOSSES + ("sft",)


def check_loss_types(loss_type: str | Sequence[str], loss_weights: Sequence[float] | None = None,
                     beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[list[str], list[float]]:
    """Validate a loss specification; return ``(loss_types, loss_weights)`` as lists."""
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    if not types:
        raise ValueError("loss_type is empty; use one or more of " + ", ".join(LOSS_TYPES))
    unknown = [t for t in types if t not in LOSS_TYPES]
    if unknown:
        raise ValueError(f"unsupported DPO loss_type {unknown}; this trainer implements {list(LOSS_TYPES)}")
    if not any(t in PAIRWISE_LOSSES for t in types):
        raise ValueError(f"loss_type {types} has no preference term; add one of {list(PAIRWISE_LOSSES)}")
    weights = [1.0] * len(types) if loss_weights is None else [float(w) for w in loss_weights]
    if len(weights) != len(types):
        raise ValueError(f"loss_weights has {len(weights)} entries but loss_type has {len(types)}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if "robust" in types and not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"robust DPO needs 0 <= label_smoothing < 0.5, got {label_smoothing}")
    return types, weights


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1,
             loss_type: str = "sigmoid", label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-pair preference loss (shape (B,)) of one pairwise variant; log-probs are summed over the 4 tokens."""
    check_loss_types(loss_type, beta=beta, label_smoothing=label_smoothing)
    if loss_type == "sft":
        raise ValueError("'sft' is not a pairwise loss; combine it through preference_loss(loss_type=[..., 'sft'])")
    d = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * d)
    if loss_type == "hinge":
        return torch.relu(1 - beta * d)
    if loss_type == "ipo":
        return (d / BOX_TOKENS - 1 / (2 * beta)) ** 2
    # robust
    e = label_smoothing
    return (-(1 - e) * F.logsigmoid(beta * d) + e * F.logsigmoid(-beta * d)) / (1 - 2 * e)


@dataclass
class PreferenceOutput:
    """The scalar loss to minimise and the figures worth logging (detached)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


def preference_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                    ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1,
                    loss_type: str | Sequence[str] = "sigmoid", loss_weights: Sequence[float] | None = None,
                    label_smoothing: float = 0.0) -> PreferenceOutput:
    """Weighted sum of per-batch means of the requested terms, plus DPO's usual diagnostics.

    ``loss_type=["sigmoid", "sft"], loss_weights=[1.0, alpha]`` is DPO plus an SFT term on the chosen box
    (trl's spelling of RPO). The metrics are per-batch means: ``rewards/chosen`` = beta (log pi - log ref)
    of the chosen box, ``rewards/rejected`` likewise, ``rewards/margins`` their difference,
    ``rewards/accuracies`` the share of pairs with chosen reward > rejected reward, and
    ``logps/chosen`` / ``logps/rejected`` the policy's box log-probs.
    """
    types, weights = check_loss_types(loss_type, loss_weights, beta, label_smoothing)
    loss = policy_chosen_logps.new_zeros(())
    for t, w in zip(types, weights):
        if t == "sft":
            term = -policy_chosen_logps.mean() / BOX_TOKENS
        else:
            term = dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                            beta=beta, loss_type=t, label_smoothing=label_smoothing).mean()
        loss = loss + w * term
    with torch.no_grad():
        chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
        rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
        metrics = {
            "rewards/chosen": chosen_rewards.mean(),
            "rewards/rejected": rejected_rewards.mean(),
            "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
            "logps/chosen": policy_chosen_logps.mean(),
            "logps/rejected": policy_rejected_logps.mean(),
        }
    return PreferenceOutput(loss=loss, metrics={k: v.detach() for k, v in metrics.items()})
