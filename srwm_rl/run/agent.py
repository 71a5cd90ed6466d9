"""An agent from a checkpoint alone: its policy, its configuration and its environment, in one object
whose ``predict`` takes the environment's own observations (as Stable-Baselines3's ``load``).

    agent = load_agent("runs/x")                   # a run directory or a checkpoint file
    env = agent.make_env(num_envs=4, seed=0)       # the environment it was trained on, unwrapped
    obs, state, reward = env.reset(seed=0), None, np.zeros(4)
    while ...:
        action, state = agent.predict(obs, state, episode_start=env.first, reward=reward)
        obs, reward, terminated, truncated, info = env.step(action)

``predict`` does inside what training's environment wrappers do (``srwm_rl.run.environment``): it
feeds the observation and reward through the very same wrappers (reward clipping, the observation
normaliser frozen at the checkpoint's statistics, the previous action and reward as inputs), so the
policy sees exactly what it saw in training. ``agent.config``, ``agent.policy`` and
``agent.checkpoint`` are the parts; ``cfg, policy, ckpt = load_agent(...)`` unpacks them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator, Optional

import gymnasium as gym
import numpy as np
import optree
import torch

import envs
from envs.api import Obs, StepResult, VecEnv
from srwm_rl.nn.encoders import space_leaves
from srwm_rl.nn.policy import ActorCritic, obs_to_torch, observation_part
from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint, space_from_dict
from srwm_rl.run.config import RunConfig, from_dict
from srwm_rl.run.environment import env_options, load_normalizer_state, wrap_env


def build_policy(cfg: RunConfig, obs_space, action_space, device) -> ActorCritic:
    """The actor-critic of ``cfg`` for one environment's spaces, on ``device``."""
    return ActorCritic(obs_space, action_space, cfg.policy, cfg.core).to(device)


def config_from_checkpoint(ckpt: dict[str, Any], config_cls: type = RunConfig) -> RunConfig:
    """The run configuration stored in a checkpoint, as ``config_cls``. Sections that class does not
    have (other algorithms' options, with the library's :class:`RunConfig`) are skipped."""
    data = ckpt["config"]
    if isinstance(data, dict):
        known = {f.name for f in dataclasses.fields(config_cls)}
        data = {k: v for k, v in data.items() if k in known or not isinstance(v, dict)}
    return from_dict(config_cls, data)


class _Fed(VecEnv):
    """A VecEnv whose next observation, reward and ``first`` are pushed from outside (``predict``)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, num_envs: int):
        self.observation_space, self.action_space, self.num_envs = observation_space, action_space, num_envs
        self.obs: Obs = None
        self.reward = np.zeros(num_envs, np.float32)
        self._first = np.ones(num_envs, bool)

    def reset(self, seed: Optional[int] = None) -> Obs:
        return self.obs

    def step(self, actions: np.ndarray) -> StepResult:
        no = np.zeros(self.num_envs, bool)
        return self.obs, self.reward, no, no, {"episode_done": no}

    @property
    def first(self) -> np.ndarray:
        return self._first

    def close(self) -> None:
        pass


@dataclasses.dataclass
class Agent:
    """A loaded agent (module docstring): ``config``, ``policy`` (on its device), ``checkpoint``."""

    config: RunConfig
    policy: ActorCritic
    checkpoint: dict[str, Any]

    def __iter__(self) -> Iterator[Any]:
        return iter((self.config, self.policy, self.checkpoint))

    def __getitem__(self, i: int) -> Any:
        return tuple(self)[i]

    # ---- the environment ---------------------------------------------------------------------------
    def make_env(self, num_envs: int = 1, seed: Optional[int] = None, **overrides: Any) -> VecEnv:
        """The environment the agent was trained on, as a batch of ``num_envs`` (``envs.api.VecEnv``),
        with the environment's own observations and rewards (no training wrappers: ``predict`` applies
        them). ``overrides``: EnvConfig fields to change, e.g. ``task_split="test"`` or ``start_level``."""
        cfg = dataclasses.replace(self.config.env, **overrides) if overrides else self.config.env
        return envs.make(cfg.id, num_envs, seed, **env_options(cfg))

    # ---- acting --------------------------------------------------------------------------------------
    def _inputs(self, num_envs: int) -> tuple[_Fed, VecEnv]:
        cache = self.__dict__.setdefault("_pipes", {})
        if num_envs not in cache:
            _, base = observation_part(self.policy.obs_space)
            fed = _Fed(base, self.policy.action_space, num_envs)
            pipe = wrap_env(fed, self.config.env, self.config.policy)
            load_normalizer_state(pipe, self.checkpoint.get("normalizers", []), update=False)
            cache[num_envs] = (fed, pipe)
        return cache[num_envs]

    def _batched(self, obs: Any) -> bool:
        """True for a batch [B, ...] of observations, False for one environment's observation."""
        path, space = space_leaves(observation_part(self.policy.obs_space)[1])[0]
        leaf = obs
        for p in path:
            leaf = leaf[p]
        return np.ndim(leaf) == len(space.shape) + 1

    @torch.inference_mode()
    def predict(self, obs: Any, state: Optional[tuple] = None, episode_start: Any = None,
                deterministic: bool = False, reward: Any = None) -> tuple[np.ndarray, tuple]:
        """Actions for the environment's own observation(s), Stable-Baselines3's recurrent convention.

        ``obs``: one environment's observation, or a batch [B, ...] (a ``VecEnv``'s or
        ``gymnasium.vector``'s); ``state``: what the previous call returned (None: new episodes);
        ``episode_start``: bool (or [B]) - True where ``obs`` starts a new episode (memory is reset
        there), default True on the first call and False after; ``deterministic``: the mode instead of
        a sample; ``reward``: the reward that came with ``obs`` (float or [B]), needed where the agent
        was trained with the previous reward as an input (``policy.prev_reward``).
        Returns the action (one, or [B, ...]) in the environment's action space and the new state.
        """
        batched = self._batched(obs)
        if not batched:
            obs = optree.tree_map(lambda v: np.asarray(v)[None], obs)
        B = int(np.shape(optree.tree_leaves(obs)[0])[0])
        start = np.ones(B, bool) if state is None and episode_start is None else \
            np.zeros(B, bool) if episode_start is None else np.broadcast_to(np.asarray(episode_start, bool), (B,)).copy()
        if reward is None:
            if "prev_reward" in self.policy.extras and not start.all():
                raise ValueError("predict: reward= is needed (the reward that came with obs): this agent was "
                                 "trained with the previous reward as an input (policy.prev_reward)")
            reward = 0.0
        fed, pipe = self._inputs(B)
        fed.obs, fed._first = obs, start.copy()
        fed.reward = np.broadcast_to(np.asarray(reward, np.float32), (B,)).copy()
        device = next(self.policy.parameters()).device
        core_state, prev_action = (self.policy.initial_state(B, device), None) if state is None else state
        wrapped = pipe.reset() if prev_action is None else pipe.step(prev_action)[0]
        dist, _, core_state = self.policy.step(obs_to_torch(wrapped, device), core_state,
                                               torch.as_tensor(start, device=device))
        action = (dist.mode() if deterministic else dist.sample()).cpu().numpy()
        return (action if batched else action[0]), (core_state, action)


def load_agent(path: str | Path, device: str | torch.device = "cpu", config_cls: type = RunConfig) -> Agent:
    """Rebuild the agent from a checkpoint file or run directory alone (no command line needed)."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        cfg = config_from_checkpoint(ckpt, config_cls)
        policy = build_policy(cfg, space_from_dict(ckpt["obs_space"]), space_from_dict(ckpt["action_space"]), device)
        policy.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this version of srwm-rl: {e}") from None
    return Agent(cfg, policy, ckpt)
