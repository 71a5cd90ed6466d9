"""Shared machinery of the in-context tasks: task splits, keeping a task across resets, grid rendering.

A *task* is what an agent must discover within a trial (bandit arm probabilities, a hidden goal cell,
...). Each task family has integer task ids; ``task_split="train"`` and ``task_split="test"`` draw from
DISJOINT id sets, so that evaluation is on tasks never seen in training.

Reset options understood by every in-context env:
* ``{"keep_task": True}``: keep the current task (the trial wrapper uses it between inner episodes);
* ``{"task_id": i}``: use task ``i`` (must belong to the env's split), e.g. for a fixed evaluation set.
Without options a new task is drawn from the split with the env's seeded ``np_random``.
"""

from __future__ import annotations

import abc
from typing import Any

import gymnasium
import numpy as np

TASK_SPLITS = ("train", "test")


def check_choice(name: str, value: Any, allowed: tuple | list) -> Any:
    """Raise ValueError naming ``name``, ``value`` and ``allowed`` unless ``value in allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; allowed: {', '.join(map(repr, allowed))}")
    return value


def check_int(name: str, value: Any, minimum: int) -> int:
    """Raise ValueError unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is not valid; expected an integer >= {minimum}")
    return int(value)


def split_ids(num_ids: int, test_fraction: float, split_seed: int) -> dict[str, np.ndarray]:
    """Deterministic partition of ``range(num_ids)`` into sorted, disjoint "train" and "test" id arrays.

    The test set holds ``round(test_fraction * num_ids)`` ids (at least one of each split), or none at all
    for ``test_fraction == 0``: every id is a training id (a control without held-out tasks).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r} is not valid; expected 0 <= test_fraction < 1")
    perm = np.random.default_rng(split_seed).permutation(num_ids)
    n_test = 0 if test_fraction == 0 else min(max(1, round(test_fraction * num_ids)), num_ids - 1)
    return {"train": np.sort(perm[n_test:]), "test": np.sort(perm[:n_test])}


class MetaEnv(gymnasium.Env, abc.ABC):
    """A gymnasium Env with a task drawn per trial from a split's task set (see the module docstring).

    Subclasses define ``task_ids(split)`` (finite sets) or override ``sample_task_id``/``in_split``
    (huge id ranges), ``_set_task(task_id)`` and ``_reset_episode() -> obs``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, task_split: str = "train", render_mode: str | None = None) -> None:
        self.task_split = check_choice("task_split", task_split, TASK_SPLITS)
        self.render_mode = check_choice("render_mode", render_mode, [None, "rgb_array"])
        self.task_id: int | None = None

    # -- task sets -------------------------------------------------------------------------------
    def task_ids(self, split: str) -> np.ndarray:
        """All task ids of ``split`` (finite task families)."""
        raise NotImplementedError(f"{type(self).__name__} has no finite task list")

    def sample_task_id(self) -> int:
        """A task id of this env's split, drawn with ``self.np_random``."""
        ids = self.task_ids(self.task_split)
        return int(ids[self.np_random.integers(len(ids))])

    def in_split(self, task_id: int, split: str) -> bool:
        """Whether ``task_id`` belongs to ``split``."""
        ids = self.task_ids(split)
        pos = np.searchsorted(ids, task_id)
        return bool(pos < len(ids) and ids[pos] == task_id)

    @abc.abstractmethod
    def _set_task(self, task_id: int) -> None:
        """Decode ``task_id`` into the task's parameters."""

    @abc.abstractmethod
    def _reset_episode(self) -> np.ndarray:
        """Start an episode on the current task; returns the first observation."""

    def _info(self) -> dict[str, Any]:
        return {"task_id": self.task_id}

    # -- gymnasium API ---------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        if "task_id" in options:
            task_id = int(options["task_id"])
            if not self.in_split(task_id, self.task_split):
                raise ValueError(f"options['task_id']={task_id} is not in task_split={self.task_split!r}")
            self.task_id = task_id
            self._set_task(task_id)
        elif not (options.get("keep_task") and self.task_id is not None):
            self.task_id = self.sample_task_id()
            self._set_task(self.task_id)
        return self._reset_episode(), self._info()


def render_grid(height: int, width: int, cells: dict[tuple[int, int, int], list[tuple[int, int]]],
                scale: int = 8) -> np.ndarray:
    """uint8 RGB image ``[height*scale, width*scale, 3]`` of a dark grid with coloured (row, col) cells."""
    img = np.full((height, width, 3), 40, np.uint8)
    for colour, positions in cells.items():
        for r, c in positions:
            img[r, c] = colour
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
