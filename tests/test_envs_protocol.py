"""The VecEnv protocol for every registered env family, against obviously-correct references."""

import gymnasium
import numpy as np
import pytest

import envs
from envs.api import spawn_seeds, validate_actions
from envs.gymnasium_env import AsyncGymnasiumVecEnv, GymnasiumVecEnv
from envs.meta import META_ENVS
from envs.testing import CountingEnv

IDS = [*META_ENVS, "CartPole-v1", "procgen:coinrun", "procgen:bigfish+maze"]


def _random_actions(env, rng):
    space = env.action_space
    if isinstance(space, gymnasium.spaces.Discrete):
        return rng.integers(0, space.n, env.num_envs)
    return rng.uniform(space.low, space.high, (env.num_envs, *space.shape)).astype(space.dtype)


def _rollout(env_id, steps, seed=3, num_envs=4, **kw):
    rng = np.random.default_rng(0)
    env = envs.make(env_id, num_envs, seed=seed, **kw)
    out = [env.reset()]
    for _ in range(steps):
        obs, rew, term, trunc, info = env.step(_random_actions(env, rng))
        out.append((obs, rew, term, trunc, info["episode_done"], env.first))
    env.close()
    return env, out


@pytest.mark.parametrize("env_id", IDS)
def test_protocol_shapes_dtypes_first_and_determinism(env_id):
    steps = 60 if env_id.startswith("procgen") else 250
    env, out = _rollout(env_id, steps)
    n, space = env.num_envs, env.observation_space
    obs0 = out[0]
    assert obs0.shape == (n, *space.shape) and obs0.dtype == space.dtype
    assert all(space.contains(o) for o in obs0)
    ended = 0
    for obs, rew, term, trunc, done, first in out[1:]:
        assert obs.shape == (n, *space.shape) and obs.dtype == space.dtype
        assert rew.shape == (n,) and rew.dtype == np.float32
        assert term.dtype == bool and trunc.dtype == bool and term.shape == trunc.shape == (n,)
        np.testing.assert_array_equal(first, term | trunc)  # same-step autoreset: first marks every end
        np.testing.assert_array_equal(done, term | trunc)
        ended += done.sum()
    if not env_id.startswith("procgen"):
        assert ended > 0, "the rollout should cross at least one episode end"
    _, again = _rollout(env_id, steps)  # same seed, same actions -> same trajectory
    for a, b in zip(out[1:], again[1:]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_first_is_true_after_reset_and_info_episode_stats():
    env = envs.make("srwm_rl/DarkRoom-v0", 3, seed=0)
    env.reset()
    assert env.first.all()
    for t in range(1, 21):
        obs, rew, term, trunc, info = env.step(np.array([4, 2, 0]))
        if t < 20:
            assert not env.first.any() and np.isnan(info["episode_return"]).all()
    assert trunc.all() and not term.any() and env.first.all()
    np.testing.assert_array_equal(info["episode_length"], [20, 20, 20])
    np.testing.assert_array_equal(obs, np.full((3, 2), 4.0))  # already the next episode's start
    np.testing.assert_array_equal(info["final_obs"][2], [4.0, 4.0])  # no-op stays at the centre


def _reference_gymnasium(env_id, seed, actions):
    """One plain gymnasium env per column, reset by hand after each end: the obvious reference."""
    n = actions.shape[1]
    gens = [gymnasium.make(env_id) for _ in range(n)]
    obs = [g.reset(seed=s)[0] for g, s in zip(gens, spawn_seeds(seed, n))]
    rows = []
    for a in actions:
        step = [g.step(int(a[i])) for i, g in enumerate(gens)]
        final = np.stack([s[0] for s in step])
        term = np.array([s[2] for s in step])
        trunc = np.array([s[3] for s in step])
        obs = [g.reset()[0] if (te or tr) else s[0] for g, s, te, tr in zip(gens, step, term, trunc)]
        rows.append((np.stack(obs), np.array([s[1] for s in step], np.float32), term, trunc, final))
    return rows


@pytest.mark.parametrize("cls", [GymnasiumVecEnv, AsyncGymnasiumVecEnv])
def test_gymnasium_adapter_equals_hand_stepped_envs(cls):
    actions = np.random.default_rng(1).integers(0, 2, (120, 3))
    ref = _reference_gymnasium("CartPole-v1", 5, actions)
    env = cls([lambda: gymnasium.make("CartPole-v1")] * 3, seed=5)
    env.reset()
    for a, (obs, rew, term, trunc, final) in zip(actions, ref):
        o, r, te, tr, info = env.step(a)
        np.testing.assert_array_equal(o, obs)
        np.testing.assert_array_equal(r, rew)
        np.testing.assert_array_equal(te, term)
        np.testing.assert_array_equal(tr, trunc)
        if (te | tr).any():  # the ended episode's last obs, never a transition from the reset obs
            np.testing.assert_array_equal(info["final_obs"][te | tr], final[te | tr])
    assert sum(len(r) for r in ref) and any(r[2].any() for r in ref)
    env.close()


def test_info_arrays_from_env_infos():
    env = envs.make("srwm_rl/Bandit-v0", 4, seed=0)
    env.reset()
    _, _, _, _, info = env.step(np.zeros(4, int))
    assert info["regret"].dtype == np.float64 and info["regret"].shape == (4,)
    assert (info["regret"] >= 0).all() and info["task_id"].dtype == np.int64


def test_counting_env_first_falls_at_known_steps():
    env = CountingEnv([2, 3])
    obs = env.reset()
    np.testing.assert_array_equal(obs, [[0, 0, 0], [0, 1, 0]])
    for k in range(1, 8):
        obs, rew, term, _, info = env.step(np.array([1, 2]))
        np.testing.assert_array_equal(env.first, [k % 2 == 0, k % 3 == 0])
        np.testing.assert_array_equal(obs, [[k % 2, 0, k], [k % 3, 1, k]])
        np.testing.assert_allclose(rew, [1 + 0.01 * ((k - 1) % 2), 2 + 0.01 * ((k - 1) % 3)], rtol=1e-6)
    np.testing.assert_array_equal(term, [False, False])


def test_seed_streams_are_independent_and_bounded():
    a, b = spawn_seeds(0, 4), spawn_seeds(1, 4)
    assert len(set(a) | set(b)) == 8 and all(0 <= s < 2**31 for s in a + b)
    assert spawn_seeds(None, 2) == [None, None]


# ---- bad input ------------------------------------------------------------------------------------
def test_unknown_id_lists_close_matches():
    with pytest.raises(ValueError, match=r"CartPole-v1") as err:
        envs.make("CartPol-v1", 2)
    assert "not a registered environment" in str(err.value)
    with pytest.raises(ValueError, match=r"srwm_rl/DarkRoom-v0"):
        envs.make("srwm_rl/DarkRom-v0", 2)
    with pytest.raises(ValueError, match="num_envs"):
        envs.make("CartPole-v1", 0)
    with pytest.raises(ValueError, match="vectorization='threads'.*sync, async"):
        envs.make("CartPole-v1", 2, vectorization="threads")


def test_unknown_env_kwargs_name_the_allowed_ones():
    with pytest.raises(ValueError, match=r"srwm_rl/DarkRoom-v0 does not take \['goal'\]; allowed: size, "
                                         r"episode_length, task_split"):
        envs.make("srwm_rl/DarkRoom-v0", 2, goal=3)
    with pytest.raises(ValueError, match="task_split='val' is not valid"):
        envs.make("srwm_rl/CartPoleNoVel-v0", 2, task_split="val")


def test_out_of_range_and_misshapen_actions_raise_clear_errors():
    env = envs.make("srwm_rl/TMaze-v0", 3, seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"Discrete\(4\) allows \[0, 3\], got \[7\]"):
        env.step(np.array([0, 7, 1]))
    with pytest.raises(ValueError, match=r"expected shape \(3,\).*got shape \(2,\)"):
        env.step(np.array([0, 1]))
    with pytest.raises(ValueError, match="integers"):
        env.step(np.array([0.5, 1, 1]))
    box = gymnasium.spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(ValueError, match="clip before stepping"):
        validate_actions(np.full((3, 2), 2.0), box, 3)
    with pytest.raises(ValueError, match=r"expected shape \(3, 2\)"):
        validate_actions(np.zeros((3,)), box, 3)
    with pytest.raises(RuntimeError, match="before reset"):
        envs.make("CartPole-v1", 1).step(np.zeros(1, int))


def test_known_ids_and_help_text():
    ids = envs.known_env_ids()
    assert set(META_ENVS) <= set(ids) and "procgen:coinrun" in ids and "CartPole-v1" in ids
    assert "procgen:" in envs.describe_envs() and "srwm_rl/Bandit-v0" in envs.describe_envs()


def test_module_prefixed_gymnasium_id():
    env = envs.make("envs.meta:srwm_rl/Bandit-v0", 2, seed=0)
    assert env.reset().shape == (2, 1)
    with pytest.raises(ValueError, match="cannot import module 'no_such_mod'"):
        envs.make("no_such_mod:Env-v0", 2)
