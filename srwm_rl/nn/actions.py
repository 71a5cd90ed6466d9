"""Action spaces: what the policy head outputs for each Gymnasium action space, the distribution
over it, how actions are stored, and how the previous action is fed back to the core.

One record per space type in :data:`ACTION_SPACES` (a registry, looked up with ``isinstance``):

    Discrete(n)          head n logits          Categorical       int64 [...]       prev: one-hot n
    MultiDiscrete(nvec)  head sum(nvec) logits  MultiCategorical  int64 [..., K]    prev: one-hot per part
    MultiBinary(K)       head K logits          Bernoullis        int64 [..., K]    prev: the 0/1 vector
    Box((A,))            head A means + log_std ClippedGaussian   float [..., A]    prev: the action
                                                (or TanhGaussian, ``policy.continuous_actions``)

A Box with an infinite bound gets a plain ``DiagGaussian`` under ``clip`` (nothing to clip on that
side is the same as the censored normal), and is refused under ``tanh`` (nothing to squash into).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from srwm_rl.nn.distributions import (Bernoullis, Categorical, ClippedGaussian, DiagGaussian, MultiCategorical,
                                      TanhGaussian)

# policy.continuous_actions -> the distribution of a bounded Box action
CONTINUOUS: dict[str, Callable] = {"clip": ClippedGaussian, "tanh": TanhGaussian}


@dataclass(frozen=True)
class ActionSpec:
    """How one action space is acted in (see the module docstring's table).

    ``outputs``: width of the policy head; ``prev_size``: width of the previous action as core input;
    ``shape``: one action's shape; ``dtype``: the torch dtype actions are stored in; ``gaussian``: the
    head has a learned log-std; ``make``: (head output [..., outputs], log_std, low, high) -> distribution;
    ``encode``: previous actions [..., *shape] -> float [..., prev_size].
    """

    outputs: int
    prev_size: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    make: Callable[..., object]
    encode: Callable[[Tensor], Tensor]
    gaussian: bool = False
    low: Optional[np.ndarray] = None
    high: Optional[np.ndarray] = None


def _discrete(space: gym.spaces.Discrete, continuous: str) -> ActionSpec:
    n = int(space.n)
    return ActionSpec(n, n, (), torch.int64, lambda out, *_: Categorical(out),
                      lambda a: F.one_hot(a.long(), n).float())


def _multi_discrete(space: gym.spaces.MultiDiscrete, continuous: str) -> ActionSpec:
    if space.nvec.ndim != 1:
        raise ValueError(f"action space {space}: only 1-D MultiDiscrete action spaces are supported")
    nvec = tuple(int(n) for n in space.nvec)
    start = tuple(int(s) for s in getattr(space, "start", np.zeros(len(nvec))))
    if any(start):
        raise ValueError(f"action space {space}: MultiDiscrete with a non-zero start is not supported")

    def encode(a: Tensor) -> Tensor:
        return torch.cat([F.one_hot(a[..., i].long(), n) for i, n in enumerate(nvec)], -1).float()
    return ActionSpec(sum(nvec), sum(nvec), (len(nvec),), torch.int64,
                      lambda out, *_: MultiCategorical(out, nvec), encode)


def _multi_binary(space: gym.spaces.MultiBinary, continuous: str) -> ActionSpec:
    if len(space.shape) != 1:
        raise ValueError(f"action space {space}: only 1-D MultiBinary action spaces are supported")
    k = int(space.shape[0])
    return ActionSpec(k, k, (k,), torch.int64, lambda out, *_: Bernoullis(out), lambda a: a.float())


def _box(space: gym.spaces.Box, continuous: str) -> ActionSpec:
    if len(space.shape) != 1:
        raise ValueError(f"action space {space}: only 1-D Box action spaces are supported")
    if continuous not in CONTINUOUS:
        raise ValueError(f"policy.continuous_actions={continuous!r}: must be one of {list(CONTINUOUS)}")
    a = int(space.shape[0])
    low, high = _inward_float32(space.low, space.high)
    bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
    if continuous == "tanh" and not bounded:
        raise ValueError(f"policy.continuous_actions='tanh' needs finite action bounds, but the action space is "
                         f"{space}; use policy.continuous_actions='clip'")
    if not bounded and not (np.any(np.isfinite(low)) or np.any(np.isfinite(high))):
        make = (lambda out, log_std, lo, hi: DiagGaussian(out, log_std))
    else:
        dist = CONTINUOUS[continuous]
        make = (lambda out, log_std, lo, hi: dist(out, log_std, lo, hi))
    return ActionSpec(a, a, (a,), torch.float32, make, lambda x: x.float(), gaussian=True, low=low, high=high)


def _inward_float32(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 bounds inside the (maybe float64) box: an action clipped to them passes the env's check."""
    lo, hi = low.astype(np.float32), high.astype(np.float32)
    lo = np.where(lo < low, np.nextafter(lo, np.float32(np.inf)), lo).astype(np.float32)
    hi = np.where(hi > high, np.nextafter(hi, np.float32(-np.inf)), hi).astype(np.float32)
    return lo, hi


ACTION_SPACES: dict[type, Callable[[gym.Space, str], ActionSpec]] = {
    gym.spaces.Discrete: _discrete, gym.spaces.MultiDiscrete: _multi_discrete,
    gym.spaces.MultiBinary: _multi_binary, gym.spaces.Box: _box}


def action_spec(space: gym.Space, continuous: str = "clip") -> ActionSpec:
    """The :class:`ActionSpec` of ``space``; ValueError naming the supported spaces otherwise."""
    for kind, build in ACTION_SPACES.items():
        if isinstance(space, kind):
            return build(space, continuous)
    raise ValueError(f"action space {space} is not supported; supported: "
                     f"{', '.join(k.__name__ for k in ACTION_SPACES)}")
