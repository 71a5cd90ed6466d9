"""Actor-critic: encoder -> [previous action, previous reward] -> recurrent core -> policy and value heads.

Observations are time-major [T, B, ...]; a Dict observation with keys "obs", "prev_action" and
"prev_reward" (the PrevActionReward wrapper) feeds the extras to the core beside the encoder output.
Any observation space the encoders take (Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple
of them) and any action space of ``srwm_rl.nn.actions`` (Discrete, MultiDiscrete, MultiBinary, Box).

Two entry points, one computation:
    forward(obs [T, B, ...], state, first [T, B]) -> (dist over [T, B], value [T, B], state)   training
    step(obs [B, ...], state, first [B])          -> (dist over [B], value [B], state)         acting
``step`` is what every loop that acts uses (PPO's rollout, IMPALA's actors, evaluation, ``predict``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import gymnasium as gym
import numpy as np
import optree
import torch
from torch import Tensor, nn

from srwm_rl.nn.cores import CoreConfig, State, make_core
from srwm_rl.nn.actions import CONTINUOUS, action_spec
from srwm_rl.nn.encoders import ENCODERS, is_image_space, make_encoder
from srwm_rl.nn.tree import tree_map

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
    continuous_actions: str = "clip"
    """Box actions: clip (a Gaussian sample clipped to the bounds; log-probabilities of the censored normal, so of the executed action) or tanh (squashed into the bounds with tanh)."""
    encoder_chunk: int = 128
    """On the CPU, run an image encoder over at most this many observations at a time (cache-sized activations: the IMPALA CNN's forward + backward over a training batch runs ~2x faster in chunks of 100-200); 0 = the whole batch at once. Same weights, same results; vector encoders always take the whole batch."""

    def validate(self) -> list[str]:
        errs = []
        if self.encoder not in ("auto", *ENCODERS):
            errs.append(f"policy.encoder={self.encoder!r}: must be one of {['auto', *ENCODERS]}")
        if any(h < 1 for h in self.mlp_hidden) or not self.mlp_hidden:
            errs.append(f"policy.mlp_hidden={list(self.mlp_hidden)}: widths must be >= 1")
        if any(c < 1 for c in self.cnn_channels) or not self.cnn_channels or self.cnn_features < 1:
            errs.append("policy.cnn_channels/cnn_features: must be >= 1")
        if self.continuous_actions not in CONTINUOUS:
            errs.append(f"policy.continuous_actions={self.continuous_actions!r}: must be one of {list(CONTINUOUS)}")
        if self.encoder_chunk < 0:
            errs.append(f"policy.encoder_chunk={self.encoder_chunk}: must be >= 0 (0 = no chunks)")
        return errs


def _init_linear(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def encode_in_chunks(encoder: nn.Module, x: Tensor, chunk: int) -> Tensor:
    """``encoder(x)`` for x [N, ...], computed over at most ``chunk`` rows at a time (0 = all at once)."""
    if not chunk or x.shape[0] <= chunk:
        return encoder(x)
    return torch.cat([encoder(c) for c in x.split(chunk)])


class ActorCritic(nn.Module):
    """encoder -> extras -> core -> heads. See :meth:`forward` and :meth:`step` for shapes."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, cfg: PolicyConfig, core_cfg: CoreConfig):
        super().__init__()
        self.obs_space, self.action_space = obs_space, action_space
        self.obs_keys, main = observation_part(obs_space)
        self.encoder = make_encoder(cfg.encoder, main, cfg)
        self.encoder_chunk = cfg.encoder_chunk if is_image_space(main) else 0   # chunks only help convolutions
        # The wrapper always provides both; feed only those the config asks for.
        self.extras = [k for k in EXTRAS
                       if getattr(cfg, k) and isinstance(obs_space, gym.spaces.Dict) and k in obs_space.spaces]
        self.actions = action_spec(action_space, getattr(cfg, "continuous_actions", "clip"))
        self.n_actions = int(action_space.n) if isinstance(action_space, gym.spaces.Discrete) else None
        extra = sum(1 if k == "prev_reward" else self.actions.prev_size for k in self.extras)
        self.core = make_core(self.encoder.output_size + extra, core_cfg)
        out = self.core.output_size
        self.pi = _init_linear(nn.Linear(out, self.actions.outputs), 0.01)
        if self.actions.gaussian:
            self.log_std = nn.Parameter(torch.zeros(self.actions.outputs))
            self.register_buffer("action_low", torch.as_tensor(self.actions.low), persistent=False)
            self.register_buffer("action_high", torch.as_tensor(self.actions.high), persistent=False)
        self.v = _init_linear(nn.Linear(out, 1), 1.0)

    def initial_state(self, batch_size: int, device=None) -> State:
        return self.core.initial_state(batch_size, device)

    def features(self, obs: Obs, state: State, first: Tensor) -> tuple[Tensor, State]:
        """The core's output h [T, B, D] and the new state, for obs [T, B, ...] and first bool [T, B]."""
        T, B = first.shape
        main = select_observation(obs, self.obs_keys)
        flat = tree_map(lambda v: v.reshape(T * B, *v.shape[2:]), main)
        chunk = self.encoder_chunk if first.device.type == "cpu" else 0
        z = encode_in_chunks(self.encoder, flat, chunk).view(T, B, -1)
        parts = [z]
        for k in self.extras:
            e = obs[k]
            if k == "prev_action":
                e = self.actions.encode(e)
            parts.append(e.reshape(T, B, -1).to(z.dtype))
        return self.core(torch.cat(parts, -1) if len(parts) > 1 else z, state, first)

    def forward(self, obs: Obs, state: State, first: Tensor) -> tuple[Any, Tensor, State]:
        """obs [T, B, ...] (or a dict of such), state from initial_state, first bool [T, B].

        Returns the action distribution over [T, B], the value [T, B] and the new state.
        """
        h, state = self.features(obs, state, first)
        return self.distribution(h), self.v(h).squeeze(-1), state

    def step(self, obs: Obs, state: State, first: Tensor) -> tuple[Any, Tensor, State]:
        """One step of B environments: obs [B, ...] (or a dict of such), first bool [B].

        Returns the action distribution over [B], the value [B] and the new state.
        """
        h, state = self.features(tree_map(lambda v: v.unsqueeze(0), obs), state, first.view(1, -1))
        return self.distribution(h[0]), self.v(h[0]).squeeze(-1), state

    def distribution(self, h: Tensor):
        """The action distribution (``srwm_rl.nn.actions``) for core outputs h [..., D]."""
        if self.actions.gaussian:
            return self.actions.make(self.pi(h), self.log_std, self.action_low, self.action_high)
        return self.actions.make(self.pi(h))

    @torch.inference_mode()
    def predict(self, obs, state: Optional[State] = None, episode_start: Optional[np.ndarray] = None,
                deterministic: bool = False) -> tuple[np.ndarray, State]:
        """Stable-Baselines3's recurrent convention on already wrapped observations: one step for a
        batch of B environments. ``srwm_rl.run.agent.Agent.predict`` takes the environment's own
        observations instead (and does the wrappers' bookkeeping).

        obs: numpy [B, ...] (or dict of such); state: from a previous call, or None for a fresh one;
        episode_start: bool [B], true where a new episode starts (its memory is reset).
        Returns actions (numpy [B] or [B, A]) and the new state.
        """
        device = next(self.parameters()).device
        o = obs_to_torch(obs, device)
        B = optree.tree_leaves(o)[0].shape[0]
        state = self.initial_state(B, device) if state is None else state
        first = torch.zeros(B, dtype=torch.bool, device=device) if episode_start is None else \
            torch.as_tensor(np.asarray(episode_start, dtype=bool), device=device).view(B)
        dist, _, state = self.step(o, state, first)
        action = dist.mode() if deterministic else dist.sample()
        return action.cpu().numpy(), state


EXTRAS = ("prev_action", "prev_reward")


def observation_part(obs_space: gym.Space) -> tuple[Optional[tuple[str, ...]], gym.Space]:
    """The keys of a Dict observation that are the environment's own (None: the whole observation),
    and their space: "obs" alone when the PrevActionReward wrapper wrapped a non-Dict observation."""
    if not isinstance(obs_space, gym.spaces.Dict) or not set(EXTRAS) & set(obs_space.spaces):
        return None, obs_space
    keys = tuple(k for k in obs_space.spaces if k not in EXTRAS)
    if keys == ("obs",):
        return keys, obs_space["obs"]
    return keys, gym.spaces.Dict({k: obs_space[k] for k in keys})


def select_observation(obs: Obs, keys: Optional[tuple[str, ...]]):
    """The environment's own part of an observation batch (see :func:`observation_part`)."""
    if keys is None:
        return obs
    if keys == ("obs",):
        return obs["obs"]
    return {k: obs[k] for k in keys}


def obs_to_torch(obs, device) -> Obs:
    """numpy observation (array or dict of arrays) -> torch on ``device`` (uint8 images stay uint8)."""
    return tree_map(lambda v: torch.as_tensor(v, device=device), obs)
