"""The novelty bonus: a training-reward-only first-visit bonus, checked against a Dark Room replayed by hand."""

import numpy as np
import pytest

from envs import NoveltyBonus, PrevActionReward
from envs.testing import CountingEnv
from srwm_rl.nn.policy import PolicyConfig
from srwm_rl.run.config import EnvConfig
from srwm_rl.run.environment import make_env

MOVES = {0: (0, 0), 1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1)}


def _replay(actions, goals, size, episode_length, trial_episodes, bonus, cap):
    """The bonus of every step from the actions and goal cells alone: positions walked by hand (start at
    the centre each episode, walls stop a move), cells remembered per trial, nothing after the trial's
    first step on its goal, first-visit counts over the run in the order env 0, 1, ... of each step.
    Returns float64 [T, N]."""
    steps, n = actions.shape
    centre = (size // 2, size // 2)
    pos = [centre] * n
    seen = [{centre} for _ in range(n)]
    paid = [False] * n
    visits, total = {}, 0
    out = np.zeros((steps, n))
    for t in range(steps):
        for i in range(n):
            dr, dc = MOVES[int(actions[t, i])]
            pos[i] = (min(max(pos[i][0] + dr, 0), size - 1), min(max(pos[i][1] + dc, 0), size - 1))
            if pos[i] not in seen[i] and not paid[i]:
                w = 1.0 if cap == 0 else min(np.sqrt(total / max(len(visits), 1) / visits.get(pos[i], 1)), cap)
                out[t, i] = bonus * w
                if cap:
                    visits[pos[i]] = visits.get(pos[i], 0) + 1
                    total += 1
            seen[i].add(pos[i])
            paid[i] = paid[i] or pos[i] == goals[t][i]
            if (t + 1) % episode_length == 0:  # the episode ended: back to the centre
                pos[i] = centre
                if (t + 1) % (episode_length * trial_episodes) == 0:
                    seen[i], paid[i] = {centre}, False
    return out


def _inner_envs(env):
    """The DarkRoom instances under the wrappers, in batch order."""
    return [e.unwrapped for e in env.unwrapped.envs]


@pytest.mark.parametrize("cap", [0.0, 1.3])
def test_novelty_bonus_matches_a_hand_replay_and_stays_out_of_inputs_and_returns(cap):
    size, length, trial, n, steps = 5, 6, 2, 3, 60
    cfg = EnvConfig(id="srwm_rl/DarkRoom-v0", num_envs=n, trial_episodes=trial, normalize_reward=False,
                    novelty_bonus=0.25, novelty_rarity=cap,
                    kwargs={"size": size, "episode_length": length, "test_fraction": 0.0})
    env = make_env(cfg, PolicyConfig(), seed=3)
    assert isinstance(env, NoveltyBonus) and isinstance(env.env, PrevActionReward)
    env.reset(3)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 5, (steps, n))
    got, returns, goals = np.zeros((steps, n)), [], []
    for t in range(steps):
        goals.append([tuple(int(c) for c in g.goal) for g in _inner_envs(env)])
        obs, rew, term, trunc, info = env.step(actions[t])
        got[t] = rew - info["raw_reward"]
        assert np.all((info["raw_reward"] == 0) | (info["raw_reward"] == 1))  # the env's own reward
        returns += info["episode_return"][info["episode_done"]].tolist()
        # the policy's previous-reward input is the env's reward, never the bonus
        np.testing.assert_array_equal(obs["prev_reward"][:, 0], np.where(env.first, 0.0, info["raw_reward"]))
    want = _replay(actions, goals, size, length, trial, 0.25, cap)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert want.max() > 0 and (want == 0).any()
    assert returns and any(r > 0 for r in returns)  # some trials found their goal: the bonus stopped there
    if cap:  # rarity both below and at its cap
        assert np.isclose(want.max(), 0.25 * cap) and ((want > 0) & (want < 0.25)).any()
    assert returns and all(r == int(r) for r in returns)  # trial returns count goal steps only


def test_novelty_bonus_compares_observations_without_the_previous_action_and_reward_and_stops_once_paid():
    # CountingEnv's obs changes every step ([t, i, k]), so every arrival is novel; with action 0 its reward
    # is 0.01 * t (t before the step): 0 on an episode's first step, positive from the second on, so the
    # bonus is paid on the first two steps of every episode and stops after the first positive reward
    lengths = np.array([3, 4])
    env = NoveltyBonus(PrevActionReward(CountingEnv(lengths)), 0.5)
    env.reset()
    for k in range(1, 12):
        _, rew, _, _, info = env.step(np.array([0, 0]))
        np.testing.assert_allclose(rew - info["raw_reward"], np.where((k - 1) % lengths < 2, 0.5, 0.0))


def test_novelty_bonus_refuses_bad_values():
    with pytest.raises(ValueError, match="bonus=0.0"):
        NoveltyBonus(CountingEnv([2]), 0.0)
    with pytest.raises(ValueError, match="rarity_cap=-1"):
        NoveltyBonus(CountingEnv([2]), 0.1, -1.0)
    assert EnvConfig(novelty_bonus=-0.1).validate() == ["env.novelty_bonus=-0.1: must be >= 0 (0 = off)"]
    assert EnvConfig(novelty_bonus=0.1, novelty_rarity=-2.0).validate() == [
        "env.novelty_rarity=-2.0: must be >= 0 (0 = off)"]
    errs = EnvConfig(novelty_rarity=3.0).validate()      # rarity without a bonus would do nothing: refused
    assert len(errs) == 1 and "env.novelty_rarity=3.0 with env.novelty_bonus=0" in errs[0]
    errs = EnvConfig(novelty_bonus=0.1, normalize_obs=True).validate()
    assert len(errs) == 1 and "env.novelty_bonus=0.1 with env.normalize_obs=True" in errs[0]
