"""GAE against closed forms and a float64 loop; the PPO losses against hand-computed values."""
import numpy as np
import pytest
import torch

from srwm_rl.ops.losses import policy_gradient_loss, ppo_clip_loss, value_loss
from srwm_rl.ops.returns import gae


def test_gae_reward_only_at_the_end_constant_value():
    # One episode of T steps, reward 1 on the last, V = c everywhere, terminal at the end:
    # delta_t = gamma*c - c for t < T-1, delta_{T-1} = 1 - c; A_t = sum_k (gamma lam)^k delta_{t+k}.
    T, gamma, lam, c = 6, 0.9, 0.8, 0.5
    r = torch.zeros(T, 1, dtype=torch.float64)
    r[-1] = 1.0
    v = torch.full((T, 1), c, dtype=torch.float64)
    dones = torch.zeros(T, 1, dtype=torch.bool)
    dones[-1] = True
    adv, ret = gae(r, v, dones, torch.tensor([123.0], dtype=torch.float64), gamma, lam)
    gl = gamma * lam
    for t in range(T):
        n = T - 1 - t
        expected = (gamma * c - c) * (1 - gl ** n) / (1 - gl) + gl ** n * (1 - c)
        assert adv[t, 0].item() == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(ret, adv + v)


def test_gae_lambda_one_gives_discounted_returns_and_zero_gives_td():
    g = torch.Generator().manual_seed(0)
    T, B, gamma = 7, 3, 0.95
    r = torch.randn(T, B, generator=g, dtype=torch.float64)
    v = torch.randn(T, B, generator=g, dtype=torch.float64)
    nv = torch.randn(B, generator=g, dtype=torch.float64)
    dones = torch.rand(T, B, generator=g) < 0.25
    _, ret1 = gae(r, v, dones, nv, gamma, 1.0)
    adv0, _ = gae(r, v, dones, nv, gamma, 0.0)
    for b in range(B):
        acc = nv[b].item()
        for t in reversed(range(T)):
            acc = r[t, b].item() + gamma * acc * (1 - dones[t, b].item())
            assert ret1[t, b].item() == pytest.approx(acc, abs=1e-12)
            v_next = nv[b].item() if t == T - 1 else v[t + 1, b].item()
            td = r[t, b].item() + gamma * v_next * (1 - dones[t, b].item()) - v[t, b].item()
            assert adv0[t, b].item() == pytest.approx(td, abs=1e-12)


def test_gae_shape_error():
    with pytest.raises(ValueError, match="gae"):
        gae(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3), 0.9, 0.9)


def test_ppo_clip_loss_by_hand():
    logp_old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    logp = torch.log(torch.tensor([0.75, 0.25, 0.55, 0.4]))    # ratios 1.5, 0.5, 1.1, 0.8
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0])
    clip = 0.2
    # per sample max(-A r, -A clip(r)): [-1.2, -0.5, 2.2, 0.8] -> mean 0.325
    out = ppo_clip_loss(logp, logp_old, adv, clip)
    assert out.loss.item() == pytest.approx(0.325, abs=1e-6)
    assert out.clip_frac.item() == pytest.approx(0.5)
    r = np.array([1.5, 0.5, 1.1, 0.8])
    assert out.approx_kl.item() == pytest.approx(np.mean((r - 1) - np.log(r)), abs=1e-6)


def test_value_loss_plain_and_clipped():
    v, ret, v_old = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.0]), torch.tensor([1.5, 1.0])
    assert value_loss(v, ret).item() == pytest.approx(0.5 * (1 + 9) / 2)
    # clipped values: 1.5 + clamp(-0.5, +-0.2) = 1.3; 1.0 + clamp(2.0) = 1.2
    # errors: max(1, 0.49) = 1; max(9, 1.44) = 9
    assert value_loss(v, ret, v_old, 0.2).item() == pytest.approx(0.5 * (1 + 9) / 2)
    v2 = torch.tensor([1.9, 0.1])  # clipped: 1.7 (err 0.09 vs 0.01) and 0.8 (err 0.64 vs 0.01)
    assert value_loss(v2, ret, v_old, 0.2).item() == pytest.approx(0.5 * (0.09 + 0.64) / 2)


def test_policy_gradient_loss_treats_advantage_as_constant():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    adv = torch.tensor([2.0, -1.0], requires_grad=True)
    loss = policy_gradient_loss(logp, adv)
    assert loss.item() == pytest.approx(-(-2.0 + 2.0) / 2)
    loss.backward()
    assert adv.grad is None
    torch.testing.assert_close(logp.grad, torch.tensor([-1.0, 0.5]))
