"""Batched environments behind one protocol (``envs.api.VecEnv``) and the in-context tasks.

    import envs
    env = envs.make("procgen:coinrun", num_envs=64, seed=0, num_levels=200, distribution_mode="easy")
    env = envs.make("srwm_rl/DarkRoom-v0", num_envs=16, seed=0, trial_episodes=4, task_split="test")
    obs = env.reset()
    obs, reward, terminated, truncated, info = env.step(actions)   # env.first: memory-reset mask

The ground floor of the project: nothing here imports ``srwm_rl`` or ``agents``.
"""

from envs.api import Obs, SupportsKeepTask, VecEnv
from envs.families import EnvFamily, draws_headless, env_class
from envs.registry import FAMILIES, describe_envs, family_of, known_env_ids, make
from envs.trials import TrialVecEnv
from envs.wrappers import (ClipReward, NormalizeObservation, NormalizeReward, NoveltyBonus, PrevActionReward,
                           VecEnvWrapper)

__all__ = ["FAMILIES", "ClipReward", "EnvFamily", "NormalizeObservation", "NormalizeReward", "NoveltyBonus", "Obs", "PrevActionReward",
           "SupportsKeepTask", "TrialVecEnv", "VecEnv", "VecEnvWrapper", "describe_envs", "draws_headless", "env_class", "family_of",
           "known_env_ids", "make"]
