"""V-trace against a float64 numpy transcription of the IMPALA paper's definition (eq. 1, the n-step sum)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from srwm_rl.ops import vtrace


def reference_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, pg_rho_bar, c_bar):
    """The paper's definition written out, no recursion:

    v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))
    pg_s = min(pg_rho_bar, pi/mu)_s (r_s + gamma_s v_{s+1} - V(x_s)),  v_T = V(x_T) = bootstrap.
    """
    T, B = log_rhos.shape
    ratio = np.exp(log_rhos)
    clip = (lambda x, c: x if c is None else np.minimum(x, c))
    rho, c, pg_rho = clip(ratio, rho_bar), clip(ratio, c_bar), clip(ratio, pg_rho_bar)
    v_next = np.concatenate([values[1:], bootstrap[None]])
    vs = np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            total = 0.0
            for t in range(s, T):
                weight = np.prod([discounts[i, b] * c[i, b] for i in range(s, t)])  # empty product = 1
                total += weight * rho[t, b] * (rewards[t, b] + discounts[t, b] * v_next[t, b] - values[t, b])
            vs[s, b] = values[s, b] + total
    vs_next = np.concatenate([vs[1:], bootstrap[None]])
    pg = pg_rho * (rewards + discounts * vs_next - values)
    return vs, pg


def make_inputs(T, B, seed, end_prob=0.2):
    rng = np.random.default_rng(seed)
    log_rhos = rng.normal(0.0, 1.0, (T, B))            # ratios from ~0.1 to ~10: the clipping matters
    discounts = np.where(rng.random((T, B)) < end_prob, 0.0, 0.99)   # zeros = episode ends inside
    rewards = rng.normal(0.0, 1.0, (T, B))
    values = rng.normal(0.0, 1.0, (T, B))
    bootstrap = rng.normal(0.0, 1.0, B)
    return log_rhos, discounts, rewards, values, bootstrap


THRESHOLDS = [(1.0, 1.0, 1.0), (None, None, None), (0.5, 2.0, 1.0), (3.7, 2.2, 1.0), (2.0, 0.3, 0.7)]


@pytest.mark.parametrize("T,B", [(1, 1), (1, 4), (5, 1), (7, 3), (20, 2)])
@pytest.mark.parametrize("rho_bar,pg_rho_bar,c_bar", THRESHOLDS)
def test_from_importance_weights_matches_paper(T, B, rho_bar, pg_rho_bar, c_bar):
    inp = make_inputs(T, B, seed=T * 100 + B)
    want_vs, want_pg = reference_vtrace(*inp, rho_bar, pg_rho_bar, c_bar)
    t = [torch.tensor(x) for x in inp]
    got = vtrace.from_importance_weights(*t, clip_rho_threshold=rho_bar, clip_pg_rho_threshold=pg_rho_bar,
                                         clip_c_threshold=c_bar)
    assert isinstance(got, vtrace.VTraceReturns)
    np.testing.assert_allclose(got.vs.numpy(), want_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.pg_advantages.numpy(), want_pg, rtol=1e-10, atol=1e-10)


def test_episode_end_cuts_the_trace():
    """With a zero discount at step k, v_s for s <= k does not depend on anything after step k."""
    log_rhos, discounts, rewards, values, bootstrap = make_inputs(6, 2, seed=3, end_prob=0.0)
    discounts[2] = 0.0
    a = vtrace.from_importance_weights(*(torch.tensor(x) for x in (log_rhos, discounts, rewards, values, bootstrap)))
    rewards2, values2, boot2 = rewards.copy(), values.copy(), bootstrap + 5.0
    rewards2[3:] += 1.0
    values2[3:] -= 2.0
    b = vtrace.from_importance_weights(*(torch.tensor(x) for x in (log_rhos, discounts, rewards2, values2, boot2)))
    torch.testing.assert_close(a.vs[:3], b.vs[:3])
    torch.testing.assert_close(a.pg_advantages[:3], b.pg_advantages[:3])


def test_on_policy_no_clipping_is_the_discounted_return():
    """rho = 1 everywhere: v_s is the n-step bootstrapped discounted return."""
    T, B, gamma = 6, 3, 0.9
    rng = np.random.default_rng(0)
    rewards, values, bootstrap = rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=B)
    disc = np.full((T, B), gamma)
    got = vtrace.from_importance_weights(torch.zeros(T, B, dtype=torch.float64), torch.tensor(disc),
                                         torch.tensor(rewards), torch.tensor(values), torch.tensor(bootstrap))
    ret, want = bootstrap.copy(), np.zeros((T, B))
    for t in reversed(range(T)):
        ret = rewards[t] + gamma * ret
        want[t] = ret
    np.testing.assert_allclose(got.vs.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("rho_bar,pg_rho_bar,c_bar", THRESHOLDS[:3])
def test_from_logits(rho_bar, pg_rho_bar, c_bar):
    T, B, A = 5, 4, 3
    g = torch.Generator().manual_seed(0)
    mu_logits = torch.randn(T, B, A, generator=g, dtype=torch.float64)
    pi_logits = torch.randn(T, B, A, generator=g, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(0, A, (T, B), generator=g)
    log_rhos, discounts, rewards, values, bootstrap = make_inputs(T, B, seed=1)
    out = vtrace.from_logits(mu_logits, pi_logits, actions, torch.tensor(discounts), torch.tensor(rewards),
                             torch.tensor(values), torch.tensor(bootstrap), rho_bar, pg_rho_bar, c_bar)
    mu_lp = torch.log_softmax(mu_logits, -1).gather(-1, actions[..., None])[..., 0]
    pi_lp = torch.log_softmax(pi_logits, -1).gather(-1, actions[..., None])[..., 0]
    torch.testing.assert_close(out.behavior_action_log_probs, mu_lp)
    torch.testing.assert_close(out.log_rhos, (pi_lp - mu_lp).detach())
    want_vs, want_pg = reference_vtrace(out.log_rhos.numpy(), discounts, rewards, values, bootstrap,
                                        rho_bar, pg_rho_bar, c_bar)
    np.testing.assert_allclose(out.vs.numpy(), want_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.pg_advantages.numpy(), want_pg, rtol=1e-10, atol=1e-10)
    # the targets carry no gradient; the target log-probabilities do (for the policy-gradient loss)
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad
    out.target_action_log_probs.sum().backward()
    assert pi_logits.grad is not None and pi_logits.grad.abs().sum() > 0


def test_values_with_grad_are_detached():
    T, B = 4, 2
    values = torch.randn(T, B, requires_grad=True)
    out = vtrace.from_action_log_probs(torch.zeros(T, B), torch.zeros(T, B), torch.full((T, B), 0.99),
                                       torch.randn(T, B), values, torch.randn(B, requires_grad=True))
    assert not out.vs.requires_grad


def test_shape_errors_name_the_tensor():
    with pytest.raises(ValueError, match="rewards"):
        vtrace.from_importance_weights(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 1),
                                       torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="bootstrap_value"):
        vtrace.from_importance_weights(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2),
                                       torch.zeros(3, 2), torch.zeros(3))
