"""Trials (boundaries, reset mask, task keeping) and the VecEnv wrappers, against hand-computed references."""

import gymnasium
import numpy as np
import pytest

import envs
from envs import ClipReward, NormalizeObservation, NormalizeReward, PrevActionReward, TrialVecEnv
from envs.api import VecEnv
from envs.testing import CountingEnv


@pytest.mark.parametrize("truncate", [False, True])
def test_trial_boundaries_reset_mask_and_info(truncate):
    lengths, K = np.array([2, 3]), 2
    env = TrialVecEnv(CountingEnv(lengths, truncate=truncate), trial_episodes=K)
    env.reset()
    assert env.first.all()
    ret = np.zeros(2)
    for k in range(1, 14):
        actions = np.array([k % 4, (k + 1) % 4])
        _, rew, term, trunc, info = env.step(actions)
        ret += rew
        inner_end = k % lengths == 0
        trial_end = k % (K * lengths) == 0
        np.testing.assert_array_equal(env.first, trial_end)  # memory resets only at a trial's start
        np.testing.assert_array_equal(term, trial_end)       # the trial end is the only cut point
        assert not trunc.any()
        np.testing.assert_array_equal(info["inner_episode_done"], inner_end)
        np.testing.assert_array_equal(info["inner_episode_index"],
                                      np.where(inner_end, (k - 1) // lengths % K, -1))
        np.testing.assert_array_equal(info["trial_episode"], (k // lengths) % K)
        np.testing.assert_array_equal(info["episode_done"], trial_end)
        np.testing.assert_array_equal(info["episode_length"], np.where(trial_end, K * lengths, 0))
        np.testing.assert_allclose(info["episode_return"][trial_end], ret[trial_end], rtol=1e-6)
        # a new task only when a trial ends: CountingEnv counts the tasks it started
        np.testing.assert_array_equal(info["task"], 1 + k // (K * lengths))
        ret[trial_end] = 0.0


def test_trials_on_an_in_context_task_keep_the_task():
    env = envs.make("srwm_rl/DarkRoom-v0", 3, seed=0, trial_episodes=3)
    env.reset()
    tasks, firsts = [], []
    for _ in range(120):
        _, _, term, _, info = env.step(np.zeros(3, int))
        tasks.append(info["task_id"])
        firsts.append(env.first)
    tasks, firsts = np.array(tasks), np.array(firsts)
    np.testing.assert_array_equal(np.flatnonzero(firsts[:, 0]), [59, 119])  # 3 x 20 steps per trial
    assert (tasks[:60] == tasks[0]).all() and (tasks[60:] == tasks[60]).all()
    assert (tasks[0] != tasks[60]).any()


def test_async_trials_equal_sync_trials():
    """Subprocess envs keep tasks across resets too (reset_mask with the keep_task option)."""
    rng = np.random.default_rng(0)
    sync, asyn = (envs.make("srwm_rl/DarkKeyToDoor-v0", 2, seed=3, trial_episodes=2, vectorization=v)
                  for v in ("sync", "async"))
    np.testing.assert_array_equal(sync.reset(), asyn.reset())
    for _ in range(220):
        a = rng.integers(0, 5, 2)
        for x, y in zip(sync.step(a), asyn.step(a)):
            if isinstance(x, dict):
                for k in ("task_id", "trial_episode", "inner_episode_done", "episode_done"):
                    np.testing.assert_array_equal(x[k], y[k])
            else:
                np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(sync.first, asyn.first)
    asyn.close()


def test_trials_need_an_env_that_keeps_tasks():
    class NoKeep(VecEnv):
        num_envs = 1

        def reset(self, seed=None):
            return np.zeros(1)

        def step(self, actions):
            raise NotImplementedError

        first = np.ones(1, bool)

        def close(self):
            pass

    with pytest.raises(TypeError, match="keep_task_on_reset.*NoKeep"):
        TrialVecEnv(NoKeep(), 2)
    with pytest.raises(ValueError, match="trial_episodes=0"):
        TrialVecEnv(CountingEnv([2]), 0)


def test_prev_action_reward():
    env = PrevActionReward(CountingEnv([2, 3]))
    obs = env.reset()
    assert env.observation_space.contains({k: v[0] for k, v in obs.items()})
    np.testing.assert_array_equal(obs["prev_action"], [0, 0])
    prev_a, prev_r = np.zeros(2), np.zeros(2)
    for k in range(1, 8):
        a = np.array([k % 4, 3 - k % 4])
        obs, rew, term, trunc, info = env.step(a)
        first = env.first
        assert obs["prev_action"].dtype == np.int64 and obs["prev_reward"].shape == (2, 1)
        np.testing.assert_array_equal(obs["prev_action"], np.where(first, 0, a))
        np.testing.assert_array_equal(obs["prev_reward"][:, 0], np.where(first, 0, rew))
        np.testing.assert_array_equal(obs["obs"][:, 2], k)
        if first.any():  # the ended episode's last obs carries the action and reward that led to it
            np.testing.assert_array_equal(info["final_obs"]["prev_action"][first], a[first])


def test_prev_action_reward_carries_over_inner_episodes_in_a_trial():
    env = PrevActionReward(TrialVecEnv(CountingEnv([2]), trial_episodes=3))
    env.reset()
    for k in range(1, 7):
        obs, rew, *_ = env.step(np.array([1]))
        assert obs["prev_reward"][0, 0] == (0.0 if k == 6 else rew[0])


def test_clip_reward_keeps_raw_episode_returns():
    env = ClipReward(CountingEnv([2]), -0.5, 0.5)
    env.reset()
    _, r1, *_ = env.step(np.array([3]))
    _, r2, _, _, info = env.step(np.array([2]))
    assert r1[0] == 0.5 and r2[0] == 0.5
    assert info["episode_return"][0] == pytest.approx(3 + 2.01)
    with pytest.raises(ValueError, match="low=1.0 must be < high=0.0"):
        ClipReward(CountingEnv([2]), 1.0, 0.0)


def _pooled(batches, eps=1e-4):
    """Mean/var of all rows plus a prior of ``eps`` pseudo-samples with mean 0, variance 1."""
    x = np.concatenate(batches).astype(np.float64)
    n = eps + len(x)
    mean = x.sum(0) / n
    var = (eps * (1 + mean**2) + ((x - mean) ** 2).sum(0)) / n
    return mean, var


def test_normalize_observation_matches_pooled_statistics_and_state_dict():
    env = NormalizeObservation(envs.make("CartPole-v1", 4, seed=1))
    raw_env = envs.make("CartPole-v1", 4, seed=1)  # the same envs unwrapped, for the raw observations
    assert env.reset(seed=2).dtype == np.float32
    raw_seen = [raw_env.reset(seed=2)]
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = rng.integers(0, 2, 4)
        obs = env.step(actions)[0]
        raw_seen.append(raw_env.step(actions)[0])
    mean, var = _pooled(raw_seen)
    np.testing.assert_allclose(env.rms.mean, mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(env.rms.var, var, rtol=1e-9)
    want = np.clip((raw_seen[-1] - mean) / np.sqrt(var + 1e-8), -10, 10)
    np.testing.assert_allclose(obs, want, rtol=1e-5, atol=1e-5)
    state = env.state_dict()
    assert set(state) == {"mean", "var", "count"} and isinstance(state["count"], float)
    other = NormalizeObservation(envs.make("CartPole-v1", 4, seed=1), update=False)
    other.load_state_dict(state)
    first = other.reset(seed=9)
    other.step(np.zeros(4, int))
    np.testing.assert_array_equal(other.rms.mean, state["mean"])  # frozen: no update
    np.testing.assert_array_equal(other.normalize(raw_seen[3]), env.normalize(raw_seen[3]))
    assert first.shape == (4, 4)
    with pytest.raises(ValueError, match=r"state\['mean'\]: expected shape \(4,\)"):
        other.load_state_dict({"mean": np.zeros(3), "var": np.ones(3), "count": 1.0})
    with pytest.raises(ValueError, match="needs a Box"):
        NormalizeObservation(PrevActionReward(CountingEnv([2])))


def test_normalize_reward_matches_discounted_return_statistics():
    gamma = 0.9
    env = NormalizeReward(CountingEnv([3, 4]), gamma=gamma)
    env.reset()
    ret, rets = np.zeros(2), []
    for k in range(1, 12):
        a = np.array([k % 4, (k * 3) % 4])
        _, scaled, term, trunc, _ = env.step(a)
        raw_t = (k - 1) % np.array([3, 4])
        raw = a + 0.01 * raw_t
        ret = ret * gamma + raw
        rets.append(ret.copy())
        _, var = _pooled(rets)
        np.testing.assert_allclose(scaled, np.clip(raw / np.sqrt(var + 1e-8), -10, 10), rtol=1e-5)
        ret[term | trunc] = 0.0
    state = env.state_dict()
    env.update = False
    env.step(np.zeros(2, int))
    assert env.state_dict()["count"] == state["count"]


def test_episode_stats_count_inner_episodes_of_trials():
    """The training curve's episode_return is per episode (as evaluate counts), trial_return per trial."""
    from srwm_rl.run.rollout import EpisodeStats
    stats = EpisodeStats(2)
    nan = np.nan
    stats.add_info({"episode_done": np.array([False, False]), "inner_episode_done": np.array([True, False]),
                    "inner_episode_return": np.array([1.0, nan]), "inner_episode_length": np.array([5, 0]),
                    "episode_return": np.array([nan, nan])})
    stats.add_info({"episode_done": np.array([True, False]), "inner_episode_done": np.array([True, True]),
                    "inner_episode_return": np.array([3.0, 2.0]), "inner_episode_length": np.array([4, 9]),
                    "episode_return": np.array([4.0, nan])})
    assert list(stats.returns) == [1.0, 3.0, 2.0] and list(stats.lengths) == [5, 4, 9]
    assert stats.metrics() == {"episode_return": 2.0, "episode_length": 6.0, "trial_return": 4.0}
