"""Policy-gradient, PPO-clip, value and entropy losses as pure functions of tensors."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor


class ClipStats(NamedTuple):
    loss: Tensor        # scalar
    approx_kl: Tensor   # scalar, the k3 estimator E[(r - 1) - log r]
    clip_frac: Tensor   # scalar, fraction of samples where the ratio left [1 - clip, 1 + clip]


def ppo_clip_loss(logp: Tensor, logp_old: Tensor, adv: Tensor, clip: float) -> ClipStats:
    """PPO's clipped surrogate, to minimise: mean(max(-A r, -A clip(r, 1 - c, 1 + c))), r = exp(logp - logp_old)."""
    log_ratio = logp - logp_old
    ratio = log_ratio.exp()
    loss = torch.max(-adv * ratio, -adv * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()
    with torch.no_grad():
        kl = ((ratio - 1.0) - log_ratio).mean()
        frac = ((ratio - 1.0).abs() > clip).float().mean()
    return ClipStats(loss, kl, frac)


def value_loss(value: Tensor, returns: Tensor, value_old: Optional[Tensor] = None,
               clip: Optional[float] = None) -> Tensor:
    """0.5 * mean((V - R)^2); with ``clip``, PPO2's pessimistic clipped variant around ``value_old``."""
    err = (value - returns).square()
    if clip is not None:
        clipped = value_old + (value - value_old).clamp(-clip, clip)
        err = torch.max(err, (clipped - returns).square())
    return 0.5 * err.mean()


def policy_gradient_loss(logp: Tensor, adv: Tensor) -> Tensor:
    """-mean(log pi(a|s) * A), with A treated as a constant."""
    return -(logp * adv.detach()).mean()


def entropy_bonus(entropy: Tensor) -> Tensor:
    """Mean entropy (subtract ``coef * this`` from the loss)."""
    return entropy.mean()
