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
    """Returns and lengths of the last ``window`` finished episodes of ``num_envs`` environments, in
    the environment's own reward units (before clipping or normalisation).

    An episode is always one episode: with trials (K episodes on one task), ``returns`` holds each
    inner episode's return, as ``evaluate`` and ``adaptation`` count them, and ``trial_returns`` the
    whole trials' (logged as ``trial_return``). ``score``, the run's selection score for best.pt, is the
    mean episode return once at least ``min(10, num_envs)`` episodes have finished (None before).
    """

    def __init__(self, num_envs: int, window: int = 100):
        self.returns: deque = deque(maxlen=window)
        self.lengths: deque = deque(maxlen=window)
        self.trial_returns: deque = deque(maxlen=window)
        self.min_count = min(10, num_envs)

    def add(self, returns: Iterable[float], lengths: Iterable[float], trials: Iterable[float] = ()) -> None:
        """Finished episodes' returns and lengths, and finished trials' returns (see ``episodes_of``)."""
        self.returns.extend(returns)
        self.lengths.extend(lengths)
        self.trial_returns.extend(trials)

    def add_info(self, info: dict[str, Any]) -> None:
        """The episodes that ended in one step of a VecEnv (its ``info`` arrays)."""
        self.add(*episodes_of(info))

    @property
    def mean_trial_return(self) -> float:
        return float(np.mean(self.trial_returns)) if self.trial_returns else math.nan

    def metrics(self) -> dict[str, float]:
        """``episode_return`` and ``episode_length`` (and ``trial_return`` with trials) for the logs."""
        out = {"episode_return": self.mean_return, "episode_length": self.mean_length}
        if self.trial_returns:
            out["trial_return"] = self.mean_trial_return
        return out

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths)) if self.lengths else math.nan

    @property
    def score(self) -> Optional[float]:
        return self.mean_return if len(self.returns) >= self.min_count else None


def episodes_of(info: dict[str, Any]) -> tuple[list[float], list[int], list[float]]:
    """The (returns, lengths) of the episodes that ended in one VecEnv step - inner episodes where the
    env runs trials - and the returns of the trials that ended (empty without trials)."""
    done = info["episode_done"]
    if "inner_episode_done" in info:
        inner = info["inner_episode_done"]
        return (info["inner_episode_return"][inner].tolist(), info["inner_episode_length"][inner].tolist(),
                info["episode_return"][done].tolist())
    if not done.any():
        return [], [], []
    return info["episode_return"][done].tolist(), info["episode_length"][done].tolist(), []


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
