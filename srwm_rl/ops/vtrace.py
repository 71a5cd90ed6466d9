"""V-trace off-policy targets (Espeholt et al., 2018, "IMPALA", section 4) as pure functions.

All tensors are time-major ``[T, B]`` (``[T, B, A]`` for logits), with the bootstrap value ``[B]``
the value of the state after the last step. ``discounts[t]`` is gamma where the episode goes on after
step t and 0 where it ended at step t (terminated; fold a truncated episode's bootstrap into its reward).

    rho_t   = min(rho_bar, pi(a_t|x_t) / mu(a_t|x_t))        c_t = min(c_bar, pi / mu)
    delta_t = rho_t (r_t + discounts_t V(x_{t+1}) - V(x_t))
    v_t     = V(x_t) + delta_t + discounts_t c_t (v_{t+1} - V(x_{t+1})),   v_T = V(x_T) = bootstrap
    pg_adv_t = min(pg_rho_bar, pi / mu) (r_t + discounts_t v_{t+1} - V(x_t))

The targets ``vs`` and ``pg_advantages`` carry no gradient; ``target_action_log_probs`` of
:func:`from_logits` / :func:`from_action_log_probs` keeps the graph for the policy-gradient loss.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor


class VTraceReturns(NamedTuple):
    vs: Tensor               # [T, B] value targets
    pg_advantages: Tensor    # [T, B] advantages for the policy gradient


class VTraceFromLogitsReturns(NamedTuple):
    vs: Tensor                        # [T, B]
    pg_advantages: Tensor             # [T, B]
    log_rhos: Tensor                  # [T, B] log pi(a|x) - log mu(a|x), no gradient
    behavior_action_log_probs: Tensor  # [T, B] log mu(a|x)
    target_action_log_probs: Tensor   # [T, B] log pi(a|x), with gradient


def _check(log_rhos: Tensor, discounts: Tensor, rewards: Tensor, values: Tensor, bootstrap_value: Tensor) -> None:
    if log_rhos.dim() != 2:
        raise ValueError(f"log_rhos has shape {list(log_rhos.shape)}, expected [T, B]")
    for name, t in (("discounts", discounts), ("rewards", rewards), ("values", values)):
        if t.shape != log_rhos.shape:
            raise ValueError(f"{name} has shape {list(t.shape)}, expected {list(log_rhos.shape)} (as log_rhos)")
    if bootstrap_value.shape != log_rhos.shape[1:]:
        raise ValueError(f"bootstrap_value has shape {list(bootstrap_value.shape)}, expected [{log_rhos.shape[1]}]")


@torch.no_grad()
def from_importance_weights(log_rhos: Tensor, discounts: Tensor, rewards: Tensor, values: Tensor,
                            bootstrap_value: Tensor, clip_rho_threshold: Optional[float] = 1.0,
                            clip_pg_rho_threshold: Optional[float] = 1.0,
                            clip_c_threshold: Optional[float] = 1.0) -> VTraceReturns:
    """V-trace from log importance weights ``log_rhos`` = log pi - log mu, all [T, B]; a threshold
    of None means no clipping. Returns ``vs`` and ``pg_advantages`` [T, B] (no gradient)."""
    _check(log_rhos, discounts, rewards, values, bootstrap_value)
    rhos = log_rhos.exp()
    clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
    cs = rhos if clip_c_threshold is None else rhos.clamp(max=clip_c_threshold)
    values_tp1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)])
    deltas = clipped_rhos * (rewards + discounts * values_tp1 - values)
    acc = torch.zeros_like(bootstrap_value)
    vs_minus_v = torch.empty_like(values)
    for t in range(values.shape[0] - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        vs_minus_v[t] = acc
    vs = vs_minus_v + values
    vs_tp1 = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)])
    pg_rhos = rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
    return VTraceReturns(vs=vs, pg_advantages=pg_rhos * (rewards + discounts * vs_tp1 - values))


def from_action_log_probs(behavior_action_log_probs: Tensor, target_action_log_probs: Tensor,
                          discounts: Tensor, rewards: Tensor, values: Tensor, bootstrap_value: Tensor,
                          clip_rho_threshold: Optional[float] = 1.0, clip_pg_rho_threshold: Optional[float] = 1.0,
                          clip_c_threshold: Optional[float] = 1.0) -> VTraceFromLogitsReturns:
    """V-trace from the log-probabilities of the taken actions under mu (behaviour) and pi (target),
    [T, B] each; works for any action distribution (discrete or continuous)."""
    log_rhos = target_action_log_probs.detach() - behavior_action_log_probs
    vt = from_importance_weights(log_rhos, discounts, rewards, values.detach(), bootstrap_value.detach(),
                                 clip_rho_threshold, clip_pg_rho_threshold, clip_c_threshold)
    return VTraceFromLogitsReturns(vt.vs, vt.pg_advantages, log_rhos, behavior_action_log_probs,
                                   target_action_log_probs)


def action_log_probs(policy_logits: Tensor, actions: Tensor) -> Tensor:
    """log softmax(logits)[action]: logits [T, B, A], actions int [T, B] -> [T, B]."""
    return F.log_softmax(policy_logits, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def from_logits(behavior_policy_logits: Tensor, target_policy_logits: Tensor, actions: Tensor,
                discounts: Tensor, rewards: Tensor, values: Tensor, bootstrap_value: Tensor,
                clip_rho_threshold: Optional[float] = 1.0, clip_pg_rho_threshold: Optional[float] = 1.0,
                clip_c_threshold: Optional[float] = 1.0) -> VTraceFromLogitsReturns:
    """V-trace for categorical policies: logits [T, B, A] (unnormalised is fine), actions [T, B]."""
    if behavior_policy_logits.shape != target_policy_logits.shape or behavior_policy_logits.dim() != 3:
        raise ValueError(f"behavior_policy_logits {list(behavior_policy_logits.shape)} and target_policy_logits "
                         f"{list(target_policy_logits.shape)} must both be [T, B, A]")
    return from_action_log_probs(action_log_probs(behavior_policy_logits, actions),
                                 action_log_probs(target_policy_logits, actions), discounts, rewards, values,
                                 bootstrap_value, clip_rho_threshold, clip_pg_rho_threshold, clip_c_threshold)
