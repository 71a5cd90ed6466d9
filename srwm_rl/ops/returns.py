"""Generalised advantage estimation (Schulman et al., 2016) as a pure function. Time-major [T, B]."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class GAEReturns(NamedTuple):
    advantages: Tensor  # [T, B]
    returns: Tensor     # [T, B] = advantages + values, the value targets


def gae(rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor, gamma: float, lam: float) -> GAEReturns:
    """Advantages and returns for one rollout.

    rewards, values: [T, B]; dones: [T, B], true where the episode ended with transition t (no
    bootstrap from step t + 1; fold a truncated episode's bootstrap value into its last reward);
    next_value: [B], the value of the observation after the last step.

        delta_t = r_t + gamma * V_{t+1} * (1 - done_t) - V_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}
    """
    T = rewards.shape[0]
    if not (rewards.shape == values.shape == dones.shape and next_value.shape == rewards.shape[1:]):
        raise ValueError(f"gae: rewards {list(rewards.shape)}, values {list(values.shape)}, dones "
                         f"{list(dones.shape)} must be [T, B] and next_value {list(next_value.shape)} [B]")
    not_done = 1.0 - dones.to(values.dtype)
    adv = torch.empty_like(values)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        v_next = next_value if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * v_next * not_done[t] - values[t]
        last = delta + gamma * lam * not_done[t] * last
        adv[t] = last
    return GAEReturns(adv, adv + values)
