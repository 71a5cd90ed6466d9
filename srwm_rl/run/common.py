"""What every training loop shares: environments from the config, the policy, seeding, checkpoints, signals."""
from __future__ import annotations

import importlib
import random
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch

import envs
from envs.meta import META_ENVS, MetaEnv
from envs.wrappers import ClipReward, NormalizeObservation, NormalizeReward, PrevActionReward
from srwm_rl.run.checkpoint import (CheckpointError, load_checkpoint, rng_state, save_checkpoint, space_from_dict,
                                space_to_dict)
from srwm_rl.run.config import EnvConfig, PolicyConfig, TrainConfig, from_dict, to_dict
from srwm_rl.nn.encoders import is_image_space
from srwm_rl.nn.policy import ActorCritic

NORMALIZERS = (NormalizeObservation, NormalizeReward)


def configure_threads(cfg: TrainConfig, obs_space, device: torch.device) -> int:
    """Apply ``cfg.torch_threads``; 0 picks one thread on the CPU for vector observations (small
    networks: intra-op threads cost more than they give, measured 4x slower with 2 threads on the
    5x5 Dark Room preset) and PyTorch's default for images (convolutions do use both cores)."""
    n = cfg.torch_threads
    if n == 0 and device.type == "cpu":
        main = obs_space["obs"] if isinstance(obs_space, gym.spaces.Dict) and "obs" in obs_space.spaces else obs_space
        n = 0 if is_image_space(main) else 1
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def takes_task_split(env_id: str) -> bool:
    """True for the in-context tasks with train/test task sets (MetaEnv subclasses)."""
    if env_id not in META_ENVS:
        return False
    module, cls = META_ENVS[env_id][0].split(":")
    return issubclass(getattr(importlib.import_module(module), cls), MetaEnv)


def env_kwargs(cfg: EnvConfig) -> dict[str, Any]:
    """The options of :func:`envs.make` that apply to ``cfg.id``."""
    kw: dict[str, Any] = {}
    if cfg.id.startswith("procgen:"):
        kw.update(num_levels=cfg.num_levels, start_level=cfg.start_level,
                  distribution_mode=cfg.distribution_mode, use_sequential_levels=cfg.use_sequential_levels)
    elif takes_task_split(cfg.id):
        kw.update(task_split=cfg.task_split)
    else:
        kw.update(vectorization=cfg.vectorization)
    if cfg.trial_episodes:
        kw.update(trial_episodes=cfg.trial_episodes)
    kw.update(cfg.kwargs)
    return kw


def make_env(cfg: EnvConfig, policy: PolicyConfig, seed: int, num_envs: Optional[int] = None, **overrides):
    """The wrapped batched environment a run trains on.

    base -> clip rewards -> normalise observations -> previous action and (clipped, raw-scale) reward
    as inputs -> normalise the training reward. The policy sees the previous reward before
    normalisation, so its input does not drift as the return statistics change.
    """
    env_cfg = replace(cfg, **overrides) if overrides else cfg
    env = envs.make(env_cfg.id, num_envs or env_cfg.num_envs, seed, **env_kwargs(env_cfg))
    if env_cfg.clip_reward > 0:
        env = ClipReward(env, -env_cfg.clip_reward, env_cfg.clip_reward)
    if env_cfg.normalize_obs:
        env = NormalizeObservation(env)
    if policy.prev_action or policy.prev_reward:
        env = PrevActionReward(env)
    if env_cfg.normalize_reward:
        env = NormalizeReward(env, gamma=0.99)
    return env


def normalizers(env) -> list:
    """The normalising wrappers inside ``env``, outermost first."""
    found = []
    while env is not None:
        if isinstance(env, NORMALIZERS):
            found.append(env)
        env = getattr(env, "env", None)
    return found


def normalizer_state(env) -> list[dict]:
    return [w.state_dict() for w in normalizers(env)]


def load_normalizer_state(env, states: list[dict], update: Optional[bool] = None) -> None:
    ws = normalizers(env)
    if len(ws) != len(states):
        raise CheckpointError(f"the checkpoint has {len(states)} normaliser states, the environment {len(ws)}")
    for w, s in zip(ws, states):
        w.load_state_dict(s)
        if update is not None:
            w.update = update


def build_policy(cfg: TrainConfig, obs_space, action_space, device) -> ActorCritic:
    return ActorCritic(obs_space, action_space, cfg.policy, cfg.core).to(device)


def checkpoint_payload(cfg: TrainConfig, policy: ActorCritic, optimizer, env, global_step: int,
                       update: int, **extra) -> dict[str, Any]:
    return {"config": to_dict(cfg), "obs_space": space_to_dict(policy.obs_space),
            "action_space": space_to_dict(policy.action_space), "model": policy.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else {},
            "normalizers": normalizer_state(env) if env is not None else [],
            "global_step": global_step, "update": update, "rng": rng_state(), **extra}


def load_agent(path: str | Path, device: str | torch.device = "cpu") -> tuple[TrainConfig, ActorCritic, dict]:
    """Rebuild the policy from a checkpoint file or run directory alone (no command line needed)."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        cfg = from_dict(TrainConfig, ckpt["config"])
        policy = build_policy(cfg, space_from_dict(ckpt["obs_space"]), space_from_dict(ckpt["action_space"]), device)
        policy.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this version of srwm-rl: {e}") from None
    return cfg, policy, ckpt


def save(run_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    path = Path(run_dir) / "checkpoints" / f"{name}.pt"
    save_checkpoint(path, payload)
    return path


class StopSignal:
    """Turns SIGINT / SIGTERM into a flag the loop checks, so it can checkpoint and exit cleanly."""

    def __init__(self):
        self.received: Optional[int] = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:           # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False

    def __bool__(self) -> bool:
        return self.received is not None
