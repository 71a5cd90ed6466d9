"""A deterministic counting VecEnv for tests: ``first`` falls at known steps, observations say where.

``CountingEnv(episode_lengths=[3, 5])``: env i's episodes last ``episode_lengths[i]`` steps. The obs of
env i is float32 ``[t, i, k]``: ``t`` the step index within its current episode (0 at the first obs),
``i`` the env index, ``k`` the number of steps since ``reset()``. So after the k-th ``step()``
(k = 1, 2, ...), ``obs[i] == [k % L_i, i, k]`` and ``first[i] == (k % L_i == 0)``. The reward of a step is ``float(action) + 0.01 * t_before`` (t before
the step), which lets a test check that actions reach the right env at the right time. An episode
ends by ``terminated`` unless ``truncate=True``. ``final_obs`` holds ``[L_i, i, k]`` for ended episodes.
Tasks are counted too: ``keep_task_on_reset`` is honoured and ``info["task"]`` int64 [N] is the
number of new tasks env i has started (so trial tests can check when tasks change).
"""

from __future__ import annotations

from typing import Sequence

import gymnasium
import numpy as np

from envs.api import EpisodeTracker, StepResult, VecEnv, validate_actions


class CountingEnv(VecEnv):
    """Counting env (see the module docstring). ``num_actions`` discrete actions; obs float32 [N, 3]."""

    def __init__(self, episode_lengths: Sequence[int], num_actions: int = 4, truncate: bool = False) -> None:
        lengths = np.asarray(episode_lengths, np.int64)
        if lengths.ndim != 1 or lengths.size == 0 or np.any(lengths < 1):
            raise ValueError(f"episode_lengths={list(episode_lengths)} is not valid; expected integers >= 1")
        self.lengths = lengths
        self.num_envs = len(lengths)
        self.truncate = bool(truncate)
        self.observation_space = gymnasium.spaces.Box(0.0, np.inf, (3,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(num_actions)
        self._t = np.zeros(self.num_envs, np.int64)
        self._k = 0
        self._task = np.zeros(self.num_envs, np.int64)
        self._keep = np.zeros(self.num_envs, bool)
        self._first = np.ones(self.num_envs, bool)
        self._tracker = EpisodeTracker(self.num_envs)

    def _obs(self, t: np.ndarray) -> np.ndarray:
        k = np.full(self.num_envs, self._k)
        return np.stack([t, np.arange(self.num_envs), k], axis=1).astype(np.float32)

    @property
    def first(self) -> np.ndarray:
        return self._first.copy()

    def keep_task_on_reset(self, keep: np.ndarray) -> None:
        self._keep = np.asarray(keep, bool).copy()

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._t[:] = 0
        self._k = 0
        self._task += 1
        self._first[:] = True
        self._tracker.reset()
        return self._obs(self._t)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = validate_actions(actions, self.action_space, self.num_envs)
        rew = (actions + 0.01 * self._t).astype(np.float32)
        self._t += 1
        self._k += 1
        done = self._t >= self.lengths
        final = self._obs(self._t)
        self._task += done & ~self._keep
        self._t[done] = 0
        self._first = done
        info = self._tracker.update(rew, done)
        info.update(final_obs=final, task=self._task.copy())
        no = np.zeros(self.num_envs, bool)
        return self._obs(self._t), rew, (no if self.truncate else done.copy()), (done.copy() if self.truncate else no), info

    def close(self) -> None:
        pass
