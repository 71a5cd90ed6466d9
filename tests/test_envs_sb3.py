"""The SB3 adapter: SB3's VecEnv conventions, and SB3 PPO / sb3-contrib RecurrentPPO train on our tasks."""

import numpy as np
import pytest
import torch

import envs
from envs.sb3 import SB3VecEnv
from envs.testing import CountingEnv


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("truncate", [False, True])
def test_sb3_conventions(truncate):
    vec = SB3VecEnv(CountingEnv([2, 3], truncate=truncate))
    vec.seed(0)
    obs = vec.reset()
    assert obs.shape == (2, 3) and vec.num_envs == 2
    for k in range(1, 7):
        obs, rew, dones, infos = vec.step(np.array([1, 2]))
        assert dones.dtype == bool and rew.dtype == np.float32 and len(infos) == 2
        np.testing.assert_array_equal(dones, [k % 2 == 0, k % 3 == 0])
        for i in np.flatnonzero(dones):
            assert infos[i]["TimeLimit.truncated"] is truncate
            np.testing.assert_array_equal(infos[i]["terminal_observation"], [[2, 0, k], [3, 1, k]][i])
            assert infos[i]["episode"]["l"] == [2, 3][i]
        for i in np.flatnonzero(~dones):
            assert infos[i] == {}
    assert vec.get_attr("num_envs") == [2, 2] and vec.env_is_wrapped(object) == [False, False]


def test_sb3_ppo_learns_on_our_env_without_nans():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecCheckNan

    vec = VecCheckNan(SB3VecEnv(envs.make("srwm_rl/CartPoleNoVel-v0", 4, seed=0)), raise_exception=True)
    model = PPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=2, seed=0)
    model.learn(512)
    assert model.num_timesteps == 512 and len(model.ep_info_buffer) > 0
    assert all(ep["l"] <= 500 for ep in model.ep_info_buffer)


def test_sb3_ppo_with_dict_obs_and_recurrent_ppo_on_a_trial_task():
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO

    vec = SB3VecEnv(envs.PrevActionReward(envs.make("srwm_rl/Bandit-v0", 4, seed=0, num_pulls=10)))
    PPO("MultiInputPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0).learn(256)
    vec = SB3VecEnv(envs.make("srwm_rl/TMaze-v0", 4, seed=0, corridor_length=2, trial_episodes=2))
    model = RecurrentPPO("MlpLstmPolicy", vec, n_steps=32, batch_size=64, n_epochs=1, seed=0)
    model.learn(256)
    assert model.num_timesteps == 256
