"""What every loop that collects experience shares: episode statistics and the truncation bootstrap."""
from __future__ import annotations

import math
from collections import deque
from typing import Any, Iterable, Optional

import numpy as np
import torch

from srwm_rl.nn.cores import State, select_state
from srwm_rl.nn.policy import ActorCritic, obs_to_torch
from srwm_rl.nn.tree import tree_map


class EpisodeStats:
    """Returns and lengths of the last ``window`` finished episodes of ``num_envs`` environments.

    ``score``, the run's selection score for best.pt, is their mean return once at least
    ``min(10, num_envs)`` episodes have finished (None before: too few to compare).
    """

    def __init__(self, num_envs: int, window: int = 100):
        self.returns: deque = deque(maxlen=window)
        self.lengths: deque = deque(maxlen=window)
        self.min_count = min(10, num_envs)

    def add(self, returns: Iterable[float], lengths: Iterable[float]) -> None:
        self.returns.extend(returns)
        self.lengths.extend(lengths)

    def add_info(self, info: dict[str, Any]) -> None:
        """The episodes that ended in one step of a VecEnv (its ``info`` arrays)."""
        done = info["episode_done"]
        if done.any():
            self.add(info["episode_return"][done].tolist(), info["episode_length"][done].tolist())

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths)) if self.lengths else math.nan

    @property
    def score(self) -> Optional[float]:
        return self.mean_return if len(self.returns) >= self.min_count else None


@torch.no_grad()
def bootstrap_truncated(policy: ActorCritic, reward: np.ndarray, truncated: np.ndarray, info: dict[str, Any],
                        state: State, gamma: float) -> np.ndarray:
    """float32 rewards [N] with ``gamma * V(final obs)`` added where an episode was cut off (truncated),
    so that a time limit is not mistaken for the end of the task. V is computed from the memory before
    the reset: ``state`` is the core state after the step that produced ``info["final_obs"]``."""
    reward = np.array(reward, np.float32)
    if not truncated.any():
        return reward
    idx = np.flatnonzero(truncated)
    device = next(policy.parameters()).device
    final = obs_to_torch(tree_map(lambda v: np.asarray(v)[idx], info["final_obs"]), device)
    _, value, _ = policy.step(final, select_state(state, torch.as_tensor(idx, device=device)),
                              torch.zeros(len(idx), dtype=torch.bool, device=device))
    reward[idx] += gamma * value.cpu().numpy()
    return reward
