"""T-Maze (Bakker, 2002): a cue at the start of a corridor says which arm of the T to take at its end.

Cells ``0..L`` along the corridor (L = corridor length); the junction is cell L. Observation float32 [3]:
``[cue_0, cue_1, at_junction]``; the cue is visible on cell 0 only, the corridor looks all-zero, so the
agent must carry the cue in memory for L steps. Actions: 0 forward, 1 back, 2 take arm 0, 3 take arm 1
(arms act only at the junction). Taking the arm the cue named gives reward 1, the other 0; either
terminates. Episodes are truncated after ``max_steps`` (default ``2 * L + 10``).

Tasks: ``(cue, L)``, id ``2 * L + cue``. Train corridors have lengths ``[min_corridor_length,
corridor_length]`` (default: exactly ``corridor_length``); test corridors are longer,
``[corridor_length + 1, test_corridor_length]`` (default ``2 * corridor_length``): disjoint sets, and
the test measures whether the memory generalises to longer delays. Under the trial wrapper the task
(cue and length) is kept for the whole trial.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from envs.meta.base import MetaEnv, check_int, render_grid


class TMaze(MetaEnv):
    """T-Maze with a cue at the start and the decision at the end (see the module docstring)."""

    def __init__(self, corridor_length: int = 10, min_corridor_length: int | None = None,
                 test_corridor_length: int | None = None, max_steps: int | None = None,
                 task_split: str = "train", render_mode: str | None = None) -> None:
        super().__init__(task_split, render_mode)
        self.corridor_length = check_int("corridor_length", corridor_length, 1)
        lo = self.corridor_length if min_corridor_length is None else min_corridor_length
        self.min_corridor_length = check_int("min_corridor_length", lo, 1)
        if self.min_corridor_length > self.corridor_length:
            raise ValueError(f"min_corridor_length={lo} is not valid; expected <= corridor_length={corridor_length}")
        hi = 2 * self.corridor_length if test_corridor_length is None else test_corridor_length
        self.test_corridor_length = check_int("test_corridor_length", hi, self.corridor_length + 1)
        self.max_steps = None if max_steps is None else check_int("max_steps", max_steps, 1)
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(4)
        self.cue, self.length, self.pos, self._t = 0, self.corridor_length, 0, 0

    def _lengths(self, split: str) -> range:
        if split == "train":
            return range(self.min_corridor_length, self.corridor_length + 1)
        return range(self.corridor_length + 1, self.test_corridor_length + 1)

    def task_ids(self, split: str) -> np.ndarray:
        return np.array([2 * n + c for n in self._lengths(split) for c in (0, 1)])

    def _set_task(self, task_id: int) -> None:
        self.length, self.cue = divmod(int(task_id), 2)

    def _episode_limit(self) -> int:
        return 2 * self.length + 10 if self.max_steps is None else self.max_steps

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3, np.float32)
        if self.pos == 0:
            obs[self.cue] = 1.0
        if self.pos == self.length:
            obs[2] = 1.0
        return obs

    def _reset_episode(self) -> np.ndarray:
        self.pos, self._t = 0, 0
        return self._obs()

    def step(self, action: Any):
        action = int(action)
        if not 0 <= action < 4:
            raise ValueError(f"action={action} is not valid; allowed: 0..3 (forward, back, arm 0, arm 1)")
        self._t += 1
        reward, terminated = 0.0, False
        if action == 0:
            self.pos = min(self.pos + 1, self.length)
        elif action == 1:
            self.pos = max(self.pos - 1, 0)
        elif self.pos == self.length:
            reward, terminated = float(action - 2 == self.cue), True
        truncated = not terminated and self._t >= self._episode_limit()
        return self._obs(), reward, terminated, truncated, self._info()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        arms = [(0, self.length), (2, self.length)]
        goal = arms[self.cue]
        return render_grid(3, self.length + 1, {(80, 80, 80): [(1, c) for c in range(self.length + 1)],
                                                 (0, 160, 0): [goal], (255, 255, 255): [(1, self.pos)]})
