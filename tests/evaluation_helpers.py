"""Tiny checkpoints and a fixed policy for the evaluation, video and analysis tests."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from agents.ppo import PPOConfig
from agents.registry import TrainConfig
from srwm_rl.nn.cores import CoreConfig
from srwm_rl.nn.distributions import Categorical
from srwm_rl.nn.policy import PolicyConfig
from srwm_rl.run.agent import build_policy
from srwm_rl.run.config import EnvConfig, to_dict
from srwm_rl.run.environment import make_env
from srwm_rl.run.harness import Run
from srwm_rl.run.runlog import write_json

TINY_CORE = CoreConfig(hidden_size=16, num_heads=2, num_layers=2)


def tiny_config(env_id: str, trial_episodes: int = 0, **env) -> TrainConfig:
    image = env_id.startswith("procgen:")
    policy = PolicyConfig(encoder="impala" if image else "mlp", mlp_hidden=(16,), cnn_channels=(4, 4),
                          cnn_features=16, prev_action=not image)
    return TrainConfig(env=EnvConfig(id=env_id, num_envs=2, trial_episodes=trial_episodes, **env), policy=policy,
                       core=TINY_CORE, ppo=PPOConfig(num_steps=8, num_minibatches=1), device="cpu")


def make_run(run_dir: Path, cfg: TrainConfig, seed: int = 0) -> Path:
    """A run directory with config.json and checkpoints/latest.pt of an untrained policy."""
    torch.manual_seed(seed)
    env = make_env(cfg.env, cfg.policy, 0, num_envs=1)
    policy = build_policy(cfg, env.observation_space, env.action_space, "cpu")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", to_dict(replace(cfg, run_dir=str(run_dir))))
    run = Run(cfg, run_dir, progress=False)
    run.track(policy, None, env.observation_space, env.action_space, env=env)
    run.global_step, run.update = 1234, 1
    run.checkpoint("latest")
    env.close()
    return run_dir


class FixedPolicy(nn.Module):
    """Same logits at every step; counts its steps in the state (no learning, no encoder)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.as_tensor(logits, dtype=torch.float32))

    def initial_state(self, batch_size, device=None):
        return (torch.zeros(batch_size, 1, device=device),)

    def forward(self, obs, state, first):
        T, B = first.shape
        return Categorical(self.logits.expand(T, B, -1)), torch.zeros(T, B), (state[0] + T,)

    def step(self, obs, state, first):
        B = first.shape[0]
        return Categorical(self.logits.expand(B, -1)), torch.zeros(B), (state[0] + 1,)


def one_thread():
    """Generator for an autouse fixture: tiny models run fastest on one thread on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
