"""An actor-critic agent from its configuration, or from a checkpoint alone.

    agent = load_agent("runs/x")                   # run directory or checkpoint file
    agent.config, agent.policy, agent.checkpoint   # also unpacks: cfg, policy, ckpt = load_agent(...)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import torch

from srwm_rl.nn.policy import ActorCritic
from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint, space_from_dict
from srwm_rl.run.config import RunConfig, from_dict


class Agent(NamedTuple):
    """A loaded agent: its run configuration, its policy (on the requested device) and the checkpoint."""

    config: RunConfig
    policy: ActorCritic
    checkpoint: dict[str, Any]


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


def load_agent(path: str | Path, device: str | torch.device = "cpu", config_cls: type = RunConfig) -> Agent:
    """Rebuild the policy from a checkpoint file or run directory alone (no command line needed)."""
    ckpt = load_checkpoint(path, map_location=device)
    try:
        cfg = config_from_checkpoint(ckpt, config_cls)
        policy = build_policy(cfg, space_from_dict(ckpt["obs_space"]), space_from_dict(ckpt["action_space"]), device)
        policy.load_state_dict(ckpt["model"])
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this version of srwm-rl: {e}") from None
    return Agent(cfg, policy, ckpt)
