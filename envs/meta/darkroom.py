"""Dark Room and Dark Key-to-Door, as in Algorithm Distillation (Laskin et al., 2022).

The agent sees only its own cell, ``[row, col]`` as float32 [2], in a ``size x size`` room (9x9). Actions:
0 no-op, 1 up, 2 down, 3 left, 4 right (moves into a wall leave it in place).

* **Dark Room**: a hidden goal cell is the task. The agent starts at the centre; reward 1 on every step
  it ends on the goal; episodes last ``episode_length`` (20) steps, ended as *truncated* (a time
  limit the agent cannot observe). Tasks: the ``size**2`` goal cells.
* **Dark Key-to-Door**: a hidden key cell and a hidden door cell (distinct) are the task. The agent
  starts on a random cell each episode; reward 1 on first reaching the key, then 1 on reaching the door
  with the key, which *terminates* the episode; otherwise truncated after ``episode_length`` (50).
  Tasks: the ``size**2 * (size**2 - 1)`` ordered (key, door) pairs, id ``key * size**2 + door``.

Train and test task sets: a fixed random partition (``split_seed``) with ``test_fraction`` of the
tasks held out for testing. ``test_fraction=0`` holds none out: the training set is every task (a
control: an agent trained so can be scored on another partition's cells, whose goals it was rewarded on).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from envs.meta.base import MetaEnv, check_int, render_grid, split_ids

_MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


class _DarkGrid(MetaEnv):
    action_names = ("noop", "up", "down", "left", "right")

    """Shared grid mechanics: position, moves, episode clock, rendering."""

    def __init__(self, size: int, episode_length: int, task_split: str, test_fraction: float,
                 split_seed: int, render_mode: str | None) -> None:
        super().__init__(task_split, render_mode)
        self.size = check_int("size", size, 2)
        self.episode_length = check_int("episode_length", episode_length, 1)
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        self.observation_space = gymnasium.spaces.Box(0.0, float(self.size - 1), (2,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(5)
        self.pos = np.zeros(2, np.int64)
        self._t = 0
        self._splits = split_ids(self._num_tasks(), self.test_fraction, self.split_seed)
        if len(self.task_ids(self.task_split)) == 0:
            raise ValueError(f"task_split={task_split!r} is not valid with test_fraction={test_fraction!r}: "
                             f"that split has no tasks (allowed: 'train', or a test_fraction > 0)")

    def _num_tasks(self) -> int:
        raise NotImplementedError

    def task_ids(self, split: str) -> np.ndarray:
        return self._splits[split]

    def _cell(self, index: int) -> np.ndarray:
        return np.array(divmod(int(index), self.size))

    def _obs(self) -> np.ndarray:
        return self.pos.astype(np.float32)

    def _move(self, action: Any) -> None:
        action = int(action)
        if not 0 <= action < 5:
            raise ValueError(f"action={action} is not valid; allowed: 0..4 (no-op, up, down, left, right)")
        self.pos = np.clip(self.pos + _MOVES[action], 0, self.size - 1)
        self._t += 1

    def _render_cells(self) -> dict:
        raise NotImplementedError

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return render_grid(self.size, self.size, self._render_cells())


class DarkRoom(_DarkGrid):
    """Dark Room: find a hidden goal cell from reward alone (see the module docstring)."""

    def __init__(self, size: int = 9, episode_length: int = 20, task_split: str = "train",
                 test_fraction: float = 0.2, split_seed: int = 0, render_mode: str | None = None) -> None:
        super().__init__(size, episode_length, task_split, test_fraction, split_seed, render_mode)
        self.goal = np.zeros(2, np.int64)

    def _num_tasks(self) -> int:
        return self.size**2

    def _set_task(self, task_id: int) -> None:
        self.goal = self._cell(task_id)

    def _reset_episode(self) -> np.ndarray:
        self._t = 0
        self.pos = np.array([self.size // 2, self.size // 2])
        return self._obs()

    def step(self, action: Any):
        self._move(action)
        reward = float(np.array_equal(self.pos, self.goal))
        return self._obs(), reward, False, self._t >= self.episode_length, self._info()

    def _render_cells(self) -> dict:
        return {(0, 160, 0): [tuple(self.goal)], (255, 255, 255): [tuple(self.pos)]}


class DarkKeyToDoor(_DarkGrid):
    """Dark Key-to-Door: find a hidden key, then a hidden door (see the module docstring)."""

    def __init__(self, size: int = 9, episode_length: int = 50, task_split: str = "train",
                 test_fraction: float = 0.2, split_seed: int = 0, render_mode: str | None = None) -> None:
        super().__init__(size, episode_length, task_split, test_fraction, split_seed, render_mode)
        self.key = np.zeros(2, np.int64)
        self.door = np.zeros(2, np.int64)
        self.has_key = False

    def _num_tasks(self) -> int:
        return self.size**4

    def task_ids(self, split: str) -> np.ndarray:
        ids = self._splits[split]
        cells = self.size**2
        return ids[ids // cells != ids % cells]  # key and door on distinct cells

    def _set_task(self, task_id: int) -> None:
        key, door = divmod(int(task_id), self.size**2)
        self.key, self.door = self._cell(key), self._cell(door)

    def _reset_episode(self) -> np.ndarray:
        self._t = 0
        self.has_key = False
        self.pos = self._cell(self.np_random.integers(self.size**2))
        return self._obs()

    def step(self, action: Any):
        self._move(action)
        reward, terminated = 0.0, False
        if not self.has_key and np.array_equal(self.pos, self.key):
            self.has_key, reward = True, 1.0
        elif self.has_key and np.array_equal(self.pos, self.door):
            reward, terminated = 1.0, True
        truncated = not terminated and self._t >= self.episode_length
        return self._obs(), reward, terminated, truncated, self._info()

    def _render_cells(self) -> dict:
        cells = {(0, 160, 0): [tuple(self.door)], (255, 255, 255): [tuple(self.pos)]}
        if not self.has_key:
            cells = {(200, 200, 0): [tuple(self.key)], **cells}
        return cells
