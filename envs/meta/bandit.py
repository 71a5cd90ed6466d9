"""Bernoulli k-armed bandit, the RL^2 protocol (Duan et al., 2016).

One episode = ``num_pulls`` pulls of one bandit whose arm probabilities are the task. Observation: the
elapsed fraction of the episode ``[t / num_pulls]`` (float32 [1]); the agent learns from its previous
action and reward (``envs.wrappers.PrevActionReward``). ``info["regret"]`` is the expected regret of
the pull, ``max(p) - p[action]``.

Tasks: task id ``i`` gives arm probabilities ``U[0, 1]^k`` drawn from a generator seeded by ``(i, k)``.
Train ids are ``[0, 2^31)``, test ids ``[2^31, 2^32)``: disjoint sets, same distribution (as in RL^2,
evaluation bandits are fresh draws). ``num_tasks`` restricts a split to its first ``num_tasks`` ids
(a finite training set, to study generalisation from few tasks).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from envs.meta.base import MetaEnv, check_int

_SPLIT_OFFSET = {"train": 0, "test": 2**31}
_SPLIT_SIZE = 2**31


class BernoulliBandit(MetaEnv):
    """k-armed Bernoulli bandit with ``num_pulls`` pulls per episode (see the module docstring)."""

    metadata = {"render_modes": [], "render_fps": 4}
    reports_regret = True   # info["regret"]: analysis compares the agent with Thompson sampling and UCB1

    def __init__(self, num_arms: int = 5, num_pulls: int = 100, task_split: str = "train",
                 num_tasks: int | None = None, render_mode: str | None = None) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r} is not valid; the bandit has no rendering (None)")
        super().__init__(task_split)
        self.num_arms = check_int("num_arms", num_arms, 2)
        self.num_pulls = check_int("num_pulls", num_pulls, 1)
        self.num_tasks = None if num_tasks is None else check_int("num_tasks", num_tasks, 1)
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(self.num_arms)
        self.arm_probs = np.zeros(self.num_arms)
        self._t = 0

    def _split_range(self, split: str) -> tuple[int, int]:
        size = _SPLIT_SIZE if self.num_tasks is None else self.num_tasks
        return _SPLIT_OFFSET[split], _SPLIT_OFFSET[split] + size

    def sample_task_id(self) -> int:
        lo, hi = self._split_range(self.task_split)
        return int(self.np_random.integers(lo, hi))

    def in_split(self, task_id: int, split: str) -> bool:
        lo, hi = self._split_range(split)
        return lo <= task_id < hi

    def task_ids(self, split: str) -> np.ndarray:
        if self.num_tasks is None:
            raise ValueError("task_ids: the bandit's task sets are 2^31 ids each; pass num_tasks to list them")
        return np.arange(*self._split_range(split))

    def arm_probabilities(self, task_id: int) -> np.ndarray:
        """The arm probabilities [num_arms] of task ``task_id`` (for baselines run on the same tasks)."""
        return np.random.default_rng([int(task_id), self.num_arms]).uniform(size=self.num_arms)

    def _set_task(self, task_id: int) -> None:
        self.arm_probs = self.arm_probabilities(task_id)

    def _obs(self) -> np.ndarray:
        return np.array([self._t / self.num_pulls], np.float32)

    def _reset_episode(self) -> np.ndarray:
        self._t = 0
        return self._obs()

    def step(self, action: Any):
        action = int(action)
        if not 0 <= action < self.num_arms:
            raise ValueError(f"action={action} is not valid; allowed: 0..{self.num_arms - 1}")
        p = self.arm_probs[action]
        reward = float(self.np_random.random() < p)
        self._t += 1
        info = {"task_id": self.task_id, "regret": float(self.arm_probs.max() - p)}
        return self._obs(), reward, self._t >= self.num_pulls, False, info
