"""Every action and observation space: distributions against slow references, the executed action is
the one whose log-probability is stored, and each space combination trains, evaluates and records
through the command line (PPO for all, IMPALA for a covering subset)."""
from __future__ import annotations

import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy import stats

import envs.testing  # noqa: F401  (registers SpacesTest-v0)
from envs.testing import ACTION_KINDS, OBS_KINDS, SpacesEnv
from srwm_rl.app.cli import main
from srwm_rl.nn.actions import action_spec
from srwm_rl.nn.cores import CoreConfig
from srwm_rl.nn.distributions import Bernoullis, ClippedGaussian, MultiCategorical, TanhGaussian
from srwm_rl.nn.policy import ActorCritic, PolicyConfig, obs_to_torch
from srwm_rl.run.checkpoint import space_from_dict, space_to_dict
from srwm_rl.run.environment import make_env
from srwm_rl.run.config import EnvConfig


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_clipped_gaussian_is_the_censored_normal():
    mean, log_std = torch.tensor([[0.3, -1.5]], dtype=torch.float64), torch.tensor([0.2, -0.5], dtype=torch.float64)
    low, high = torch.tensor([-1.0, -1.0], dtype=torch.float64), torch.tensor([1.0, 0.5], dtype=torch.float64)
    d = ClippedGaussian(mean, log_std, low, high)
    std = np.exp(log_std.numpy())
    for a in ([0.1, 0.0], [-1.0, 0.5], [1.0, -1.0], [-1.0, -1.0]):
        want = 0.0
        for i, x in enumerate(a):
            n = stats.norm(mean[0, i].item(), std[i])
            want += math.log(n.cdf(low[i].item()) if x <= low[i] else n.sf(high[i].item()) if x >= high[i]
                             else n.pdf(x))
        assert d.log_prob(torch.tensor([a], dtype=torch.float64)).item() == pytest.approx(want, rel=1e-9)
    torch.manual_seed(0)
    s = ClippedGaussian(mean.expand(20000, 2), log_std, low, high).sample()
    assert (s >= low).all() and (s <= high).all()
    # the mass at the upper bound of component 0 is P(u >= 1)
    assert (s[:, 0] == 1.0).double().mean().item() == pytest.approx(stats.norm(0.3, std[0]).sf(1.0), abs=0.01)


def test_tanh_gaussian_density_integrates_to_one_and_samples_in_bounds():
    mean, log_std = torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([-0.3], dtype=torch.float64)
    low, high = torch.tensor([-2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    d = TanhGaussian(mean, log_std, low, high)
    grid = torch.linspace(-2 + 1e-7, 3 - 1e-7, 200001, dtype=torch.float64)[:, None]
    dens = d.log_prob(grid).exp()
    assert torch.trapezoid(dens, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-4)
    # the density of a = g(u) is the normal's at u times |du/da|: check one point by finite differences
    u = torch.tensor([0.7], dtype=torch.float64)
    a, eps = d._squash(u), 1e-6
    dadu = (d._squash(u + eps) - d._squash(u - eps)) / (2 * eps)
    want = stats.norm(0.4, math.exp(-0.3)).logpdf(0.7) - math.log(dadu.item())
    assert d.log_prob(a[None]).item() == pytest.approx(want, rel=1e-6)
    torch.manual_seed(0)
    s = TanhGaussian(torch.full((5000, 1), 10.0), torch.zeros(1), low.float(), high.float()).sample()
    assert (s >= -2).all() and (s <= 3).all() and torch.isfinite(TanhGaussian(
        torch.full((5000, 1), 10.0), torch.zeros(1), low.float(), high.float()).log_prob(s)).all()


def test_multi_categorical_and_bernoullis_against_loops():
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    d = MultiCategorical(logits, (3, 4))
    a = d.sample()
    assert a.shape == (5, 2) and (a[:, 0] < 3).all() and (a[:, 1] < 4).all()
    p0, p1 = logits[:, :3].softmax(-1), logits[:, 3:].softmax(-1)
    want = torch.log(p0[torch.arange(5), a[:, 0]] * p1[torch.arange(5), a[:, 1]])
    torch.testing.assert_close(d.log_prob(a), want)
    ent = -(p0 * p0.log()).sum(-1) - (p1 * p1.log()).sum(-1)
    torch.testing.assert_close(d.entropy(), ent)
    b = Bernoullis(logits[:, :3])
    x = b.sample()
    p = torch.sigmoid(logits[:, :3])
    torch.testing.assert_close(b.log_prob(x), torch.log(torch.where(x == 1, p, 1 - p)).sum(-1))
    torch.testing.assert_close(b.entropy(), -(p * p.log() + (1 - p) * (1 - p).log()).sum(-1))


@pytest.mark.parametrize("obs", OBS_KINDS)
@pytest.mark.parametrize("action", ACTION_KINDS)
@torch.no_grad()
def test_policy_acts_in_every_space_and_stores_the_executed_action(obs, action):
    cfg = EnvConfig(id="envs.testing:SpacesTest-v0", num_envs=3, kwargs={"obs": obs, "action": action})
    pcfg = PolicyConfig(mlp_hidden=(8,), continuous_actions="tanh" if action == "box" else "clip")
    env = make_env(cfg, pcfg, seed=0)
    space = space_from_dict(space_to_dict(env.observation_space))      # checkpoints keep every space
    assert space == env.observation_space
    policy = ActorCritic(space, env.action_space, pcfg, CoreConfig(kind="lstm", hidden_size=8))
    o = env.reset(seed=0)
    state = policy.initial_state(3)
    for _ in range(10):
        dist, value, state = policy.step(obs_to_torch(o, "cpu"), state, torch.as_tensor(env.first))
        a = dist.sample()
        assert torch.isfinite(dist.log_prob(a)).all() and value.shape == (3,)
        assert a.dtype == policy.actions.dtype and a.shape == (3, *policy.actions.shape)
        o, *_ = env.step(a.numpy())                          # the env's own action check accepts it
        assert env.action_space.contains(np.asarray(a[0].numpy(), env.action_space.dtype)
                                         if action != "discrete" else int(a[0]))
    env.close()


def test_unsupported_spaces_name_what_is_supported():
    with pytest.raises(ValueError, match="supported: Discrete, MultiDiscrete, MultiBinary, Box"):
        action_spec(gym.spaces.Text(5))
    with pytest.raises(ValueError, match="continuous_actions='tanh' needs finite action bounds"):
        action_spec(gym.spaces.Box(-np.inf, np.inf, (2,)), "tanh")


TINY = ["--policy.mlp_hidden", "8", "--core.hidden_size", "8", "--core.num_heads", "2", "--core.num_layers", "1",
        "--torch_threads", "1", "--no-progress", "--env.num_envs", "2"]
IMPALA = ["--algo", "impala", "--impala.num_actors", "1", "--impala.envs_per_actor", "2", "--impala.batch_size", "2",
          "--impala.unroll_length", "8"]
# every observation kind and every action kind at least once with IMPALA (PPO: every combination)
IMPALA_COMBOS = list(zip(OBS_KINDS, ACTION_KINDS * 2))


def _train_evaluate_record(tmp_path, obs, action, algo_args, continuous="clip"):
    run = tmp_path / f"{obs}-{action}"
    kwargs = f'{{"obs": "{obs}", "action": "{action}", "episode_length": 4}}'
    assert main(["train", "--env.id", "envs.testing:SpacesTest-v0", "--env.kwargs", kwargs, "--total_steps", "32",
                 "--run_dir", str(run), "--policy.continuous_actions", continuous, *TINY, *algo_args]) == 0
    assert main(["evaluate", str(run), "--num_episodes", "2"]) == 0
    with open(next(run.glob("eval/*/episodes.csv")), newline="") as f:
        returns = [float(r["return"]) for r in csv.DictReader(f)]
    assert len(returns) == 2 and all(0 <= r <= 4 for r in returns)
    assert main(["record", str(run), "--out", str(tmp_path / f"{obs}-{action}.mp4"), "--max-steps", "6",
                 "--height", "128"]) == 0


# PPO: every combination; the fast suite runs a covering subset (each kind at least once, other pairs
# than IMPALA's), `make test-all` the rest
PPO_FAST = set(zip(OBS_KINDS, ACTION_KINDS[::-1] * 2))
PPO_COMBOS = [pytest.param(o, a, marks=() if (o, a) in PPO_FAST else pytest.mark.slow)
              for o in OBS_KINDS for a in ACTION_KINDS]


@pytest.mark.parametrize("obs,action", PPO_COMBOS)
def test_ppo_train_evaluate_record_every_space_combination(tmp_path, obs, action):
    _train_evaluate_record(tmp_path, obs, action, ["--ppo.num_steps", "8", "--ppo.num_minibatches", "1"],
                           continuous="tanh" if obs == "tuple" else "clip")


@pytest.mark.parametrize("obs,action", IMPALA_COMBOS)
def test_impala_train_evaluate_record(tmp_path, obs, action):
    _train_evaluate_record(tmp_path, obs, action, IMPALA, continuous="tanh" if obs == "dict" else "clip")


def test_spaces_env_rewards():
    env = SpacesEnv("multidiscrete", "multidiscrete")
    env.reset(seed=1)
    target = env._target.copy()
    assert env.step(target)[1] == 1.0


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCarContinuous-v0"])
@pytest.mark.parametrize("algo", [["--ppo.num_steps", "8", "--ppo.num_minibatches", "1"], IMPALA])
def test_continuous_control_trains_evaluates_and_records(tmp_path, env_id, algo):
    run = tmp_path / "run"
    assert main(["train", "--env.id", env_id, "--total_steps", "32", "--run_dir", str(run), *TINY, *algo]) == 0
    assert main(["evaluate", str(run), "--num_episodes", "1"]) == 0
    assert main(["record", str(run), "--out", str(tmp_path / "v.mp4"), "--max-steps", "5", "--height", "128"]) == 0


def test_clipped_box_actions_stay_inside_float64_bounds():
    space = gym.spaces.Box(np.array([-0.1, 0.0]), np.array([0.1, 0.3]), dtype=np.float64)
    spec = action_spec(space)
    assert np.all(spec.low.astype(np.float64) >= space.low) and np.all(spec.high.astype(np.float64) <= space.high)
    d = spec.make(torch.tensor([[5.0, -5.0]]), torch.zeros(2), torch.as_tensor(spec.low), torch.as_tensor(spec.high))
    assert space.contains(d.sample()[0].numpy().astype(np.float64))
