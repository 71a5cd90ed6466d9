"""The Python API: load_agent returns one object whose predict takes the environment's own
observations and does the training wrappers' bookkeeping inside (checked against evaluate, which
runs the wrapped environment)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from evaluation_helpers import make_run, one_thread, tiny_config
from srwm_rl.eval.evaluate import evaluate
from srwm_rl.run.agent import Agent, load_agent


@pytest.fixture(autouse=True)
def _one_thread():
    yield from one_thread()


def predict_returns(agent: Agent, n: int, num_envs: int, **overrides) -> list[float]:
    """Per-episode returns of the first ``n`` episodes (trials: inner episodes) with predict."""
    env = agent.make_env(num_envs=num_envs, seed=0, **overrides)
    trials = getattr(env, "trial_episodes", 0)
    obs, state, reward = env.reset(seed=0), None, np.zeros(num_envs)
    returns, counted = [], np.zeros(num_envs, int)
    while (counted < n // num_envs).any():
        action, state = agent.predict(obs, state, episode_start=env.first, reward=reward, deterministic=True)
        obs, reward, term, trunc, info = env.step(action)
        done = info["inner_episode_done"] if trials else info["episode_done"]
        key = "inner_episode_return" if trials else "episode_return"
        for i in np.flatnonzero(done & (counted < n // num_envs)):
            returns.append(float(info[key][i]))
        counted += info["episode_done"]
    env.close()
    return sorted(returns)


@pytest.mark.parametrize("env_id,kw", [("srwm_rl/DarkRoom-v0", {"trial_episodes": 2}),
                                       ("CartPole-v1", {"clip_reward": 0.5, "normalize_obs": True})])
def test_predict_on_the_raw_environment_acts_as_evaluate(tmp_path, env_id, kw):
    run = make_run(tmp_path / "run", tiny_config(env_id, **kw))
    agent = load_agent(run)
    assert isinstance(agent, Agent) and agent.policy.extras == ["prev_action", "prev_reward"]
    split = {"task_split": "test"} if env_id.startswith("srwm_rl/") else {}
    records, _ = evaluate(run, split="test", num_episodes=4, num_envs=2, seed=0, agent=agent)
    assert predict_returns(agent, 4, 2, **split) == sorted(r.ret for r in records)


def test_predict_takes_one_gymnasium_env_observation(tmp_path):
    agent = load_agent(make_run(tmp_path / "run", tiny_config("CartPole-v1")))
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=3)
    batch_state = state = None
    reward = 0.0
    for t in range(30):
        action, state = agent.predict(obs, state, reward=reward, deterministic=True)
        batch_action, batch_state = agent.predict(obs[None], batch_state, reward=np.array([reward]),
                                                  deterministic=True)
        assert env.action_space.contains(action) and action == batch_action[0]
        obs, reward, term, trunc, _ = env.step(action)
        if term or trunc:
            break
    torch.testing.assert_close(state[0], batch_state[0])


def test_predict_asks_for_the_reward_and_unpacks(tmp_path):
    agent = load_agent(make_run(tmp_path / "run", tiny_config("CartPole-v1")))
    obs = np.zeros((2, 4), np.float32)
    _, state = agent.predict(obs)
    with pytest.raises(ValueError, match="reward= is needed"):
        agent.predict(obs, state)
    cfg, policy, ckpt = agent
    assert cfg is agent.config and policy is agent.policy and ckpt["global_step"] == 1234
