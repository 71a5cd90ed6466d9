"""Actor-critic: encoder -> [previous action, previous reward] -> recurrent core -> policy and value heads.

Observations are time-major [T, B, ...]; a Dict observation with keys "obs", "prev_action" and
"prev_reward" (the PrevActionReward wrapper) feeds the extras to the core beside the encoder output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Union

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srwm_rl.nn.cores import CoreConfig, State, make_core
from srwm_rl.nn.encoders import ENCODERS, make_encoder

Obs = Union[Tensor, dict[str, Tensor]]


@dataclass(frozen=True)
class PolicyConfig:
    """Options of the actor-critic around the core."""

    encoder: str = "auto"
    """Observation encoder: auto (impala for images, mlp otherwise), impala, nature, mlp."""
    mlp_hidden: tuple[int, ...] = (64, 64)
    """Hidden widths of the MLP encoder."""
    cnn_channels: tuple[int, ...] = (16, 32, 32)
    """Channels of the IMPALA CNN stages."""
    cnn_features: int = 256
    """Output features of the IMPALA CNN."""
    prev_action: bool = True
    """Feed the previous action to the core (needed to learn in context)."""
    prev_reward: bool = True
    """Feed the previous (clipped) reward to the core."""

    def validate(self) -> list[str]:
        errs = []
        if self.encoder not in ("auto", *ENCODERS):
            errs.append(f"policy.encoder={self.encoder!r}: must be one of {['auto', *ENCODERS]}")
        if any(h < 1 for h in self.mlp_hidden) or not self.mlp_hidden:
            errs.append(f"policy.mlp_hidden={list(self.mlp_hidden)}: widths must be >= 1")
        if any(c < 1 for c in self.cnn_channels) or not self.cnn_channels or self.cnn_features < 1:
            errs.append(f"policy.cnn_channels/cnn_features: must be >= 1")
        return errs


class Categorical:
    """Categorical over the last dim of ``logits`` [..., A]; actions are int64 [...]."""

    def __init__(self, logits: Tensor):
        self.logits = logits - logits.logsumexp(-1, keepdim=True)

    def sample(self) -> Tensor:
        return torch.multinomial(self.logits.exp().reshape(-1, self.logits.shape[-1]), 1).view(self.logits.shape[:-1])

    def mode(self) -> Tensor:
        return self.logits.argmax(-1)

    def log_prob(self, a: Tensor) -> Tensor:
        return self.logits.gather(-1, a.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)

    @property
    def probs(self) -> Tensor:
        return self.logits.exp()


class DiagGaussian:
    """Independent normals over the last dim; actions are float [..., A]."""

    def __init__(self, mean: Tensor, log_std: Tensor):
        self.mean, self.log_std = mean, log_std.expand_as(mean)

    def sample(self) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, a: Tensor) -> Tensor:
        z = (a - self.mean) / self.log_std.exp()
        return (-0.5 * z.square() - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> Tensor:
        return (self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)


def _init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """encoder -> extras -> core -> heads. See :meth:`forward` for shapes."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, cfg: PolicyConfig, core_cfg: CoreConfig):
        super().__init__()
        self.obs_space, self.action_space = obs_space, action_space
        main = obs_space["obs"] if isinstance(obs_space, gym.spaces.Dict) else obs_space
        self.encoder = make_encoder(cfg.encoder, main, cfg)
        # The wrapper always provides both; feed only those the config asks for.
        self.extras = [k for k in ("prev_action", "prev_reward")
                       if getattr(cfg, k) and isinstance(obs_space, gym.spaces.Dict) and k in obs_space.spaces]
        self.n_actions = int(action_space.n) if isinstance(action_space, gym.spaces.Discrete) else None
        extra = sum(self._extra_size(k) for k in self.extras)
        self.core = make_core(self.encoder.output_size + extra, core_cfg)
        out = self.core.output_size
        if self.n_actions is not None:
            self.pi = _init_linear(nn.Linear(out, self.n_actions), 0.01)
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.pi = _init_linear(nn.Linear(out, action_space.shape[0]), 0.01)
            self.log_std = nn.Parameter(torch.zeros(action_space.shape[0]))
        else:
            raise ValueError(f"action space {action_space} is not supported (Discrete or 1-D Box)")
        self.v = _init_linear(nn.Linear(out, 1), 1.0)

    def _extra_size(self, key: str) -> int:
        if key == "prev_reward":
            return 1
        return self.n_actions if self.n_actions is not None else int(np.prod(self.action_space.shape))

    def initial_state(self, batch_size: int, device=None) -> State:
        return self.core.initial_state(batch_size, device)

    def forward(self, obs: Obs, state: State, first: Tensor) -> tuple[Any, Tensor, State]:
        """obs [T, B, ...] (or a dict of such), state from initial_state, first bool [T, B].

        Returns the action distribution over [T, B], the value [T, B] and the new state.
        """
        T, B = first.shape
        main = obs["obs"] if isinstance(obs, dict) else obs
        z = self.encoder(main.reshape(T * B, *main.shape[2:])).view(T, B, -1)
        parts = [z]
        for k in self.extras:
            e = obs[k]
            if k == "prev_action" and self.n_actions is not None:
                e = F.one_hot(e.long(), self.n_actions)
            parts.append(e.reshape(T, B, -1).to(z.dtype))
        h, state = self.core(torch.cat(parts, -1) if len(parts) > 1 else z, state, first)
        return self.distribution(h), self.v(h).squeeze(-1), state

    def distribution(self, h: Tensor):
        if self.n_actions is not None:
            return Categorical(self.pi(h))
        return DiagGaussian(self.pi(h), self.log_std)

    @torch.inference_mode()
    def predict(self, obs, state: Optional[State] = None, episode_start: Optional[np.ndarray] = None,
                deterministic: bool = False) -> tuple[np.ndarray, State]:
        """Stable-Baselines3's recurrent convention: one step for a batch of B environments.

        obs: numpy [B, ...] (or dict of such); state: from a previous call, or None for a fresh one;
        episode_start: bool [B], true where a new episode starts (its memory is reset).
        Returns actions (numpy [B] or [B, A]) and the new state.
        """
        device = next(self.parameters()).device
        o = obs_to_torch(obs, device)
        B = (o["obs"] if isinstance(o, dict) else o).shape[0]
        state = self.initial_state(B, device) if state is None else state
        first = torch.zeros(1, B, dtype=torch.bool, device=device) if episode_start is None else \
            torch.as_tensor(np.asarray(episode_start, dtype=bool), device=device).view(1, B)
        o = {k: v.unsqueeze(0) for k, v in o.items()} if isinstance(o, dict) else o.unsqueeze(0)
        dist, _, state = self(o, state, first)
        action = dist.mode() if deterministic else dist.sample()
        return action[0].cpu().numpy(), state


def obs_to_torch(obs, device) -> Obs:
    """numpy observation (array or dict of arrays) -> torch on ``device`` (uint8 images stay uint8)."""
    if isinstance(obs, dict):
        return {k: torch.as_tensor(v, device=device) for k, v in obs.items()}
    return torch.as_tensor(obs, device=device)
