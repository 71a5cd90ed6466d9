"""Sequential N-way K-shot classification as an RL task: the action is the predicted label.

One episode = one task of ``envs.fewshot.tasks`` (N classes, a fresh label permutation, K labelled
shots per class, then Q queries per class). Observation at step t (float32 [64 + N] in [0, 1]):
the example x_t as 64 pixels and the one-hot CORRECT label of step t - 1 (all zero at t = 0 and after
a query, whose label stays hidden unless ``query_labels``). Reward 1 when the action is x_t's label,
else 0. The episode terminates after its N * (K + Q) predictions. ``info``: ``label``, ``correct``,
``shot`` (presentation index of the class), ``is_query``.

Tasks: task id i seeds the whole task (classes, permutation, order, examples). ``source="glyphs"``:
train ids [0, 2^31) draw train glyph classes, test ids [2^31, 2^32) draw the held-out TEST classes.
``source="digits"``: the real scikit-learn digits, for evaluation only (``task_split="test"``).
The supervised learner (``srwm-rl train --algo fewshot``) reads exactly these observations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.meta.base import MetaEnv, check_choice, check_int
from envs.fewshot.sources import make_source
from envs.fewshot.tasks import PIXELS, TaskSpec, check_spec, sample_tasks, task_inputs, task_spaces

_SPLIT_OFFSET = {"train": 0, "test": 2**31}
_SPLIT_SIZE = 2**31
_CLASS_SPLIT = {"train": "train", "test": "test"}     # env task split -> glyph class split


class FewShotClassification(MetaEnv):
    """N-way K-shot classification with delayed labels (see the module docstring)."""

    metadata = {"render_modes": [], "render_fps": 4}

    def __init__(self, num_ways: int = 5, num_shots: int = 1, num_queries: int = 1, source: str = "glyphs",
                 query_labels: bool = False, distortion: float = 1.0, task_split: str = "train",
                 render_mode: str | None = None) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r} is not valid; this task has no rendering (None)")
        super().__init__(task_split)
        self.task_spec = TaskSpec(check_int("num_ways", num_ways, 2), check_int("num_shots", num_shots, 1),
                             check_int("num_queries", num_queries, 0), bool(query_labels))
        self.source = make_source(check_choice("source", source, ["glyphs", "digits"]), distortion)
        if source == "digits" and task_split != "test":
            raise ValueError("source='digits' is the real dataset, held out for evaluation only; "
                             f"task_split={task_split!r} is not valid (allowed: 'test')")
        check_spec(self.task_spec, self.source, _CLASS_SPLIT[task_split])
        self.observation_space, self.action_space = task_spaces(self.task_spec.num_ways)
        self._obs_seq = np.zeros((self.task_spec.seq_len, self.task_spec.input_size), np.float32)
        self._labels = np.zeros(self.task_spec.seq_len, np.int64)
        self._shot = np.zeros(self.task_spec.seq_len, np.int64)
        self._is_query = np.zeros(self.task_spec.seq_len, bool)
        self._t = 0

    def sample_task_id(self) -> int:
        lo = _SPLIT_OFFSET[self.task_split]
        return int(self.np_random.integers(lo, lo + _SPLIT_SIZE))

    def in_split(self, task_id: int, split: str) -> bool:
        return _SPLIT_OFFSET[split] <= task_id < _SPLIT_OFFSET[split] + _SPLIT_SIZE

    def _set_task(self, task_id: int) -> None:
        rng = np.random.default_rng([int(task_id), 31337])
        b = sample_tasks(self.source, self.task_spec, 1, _CLASS_SPLIT[self.task_split], rng)
        self._obs_seq = task_inputs(b.images, b.prev_labels, self.task_spec.num_ways)[:, 0].numpy()
        self._labels, self._shot, self._is_query = b.labels[:, 0].numpy(), b.shot[:, 0].numpy(), b.is_query[:, 0].numpy()
        self.classes = b.classes[0].numpy()

    def _reset_episode(self) -> np.ndarray:
        self._t = 0
        return self._obs_seq[0].copy()

    def step(self, action: Any):
        action = int(action)
        if not 0 <= action < self.task_spec.num_ways:
            raise ValueError(f"action={action} is not valid; allowed: 0..{self.task_spec.num_ways - 1}")
        t = self._t
        correct = action == int(self._labels[t])
        info = {"task_id": self.task_id, "label": int(self._labels[t]), "correct": correct,
                "shot": int(self._shot[t]), "is_query": bool(self._is_query[t])}
        self._t += 1
        done = self._t >= self.task_spec.seq_len
        # After the last prediction the observation is a blank example with the last label (if revealed).
        obs = self._obs_seq[self._t].copy() if not done else self._final_obs(t)
        return obs, float(correct), done, False, info

    def _final_obs(self, t: int) -> np.ndarray:
        obs = np.zeros(self.task_spec.input_size, np.float32)
        if not self._is_query[t] or self.task_spec.query_labels:
            obs[PIXELS + self._labels[t]] = 1.0
        return obs


class FewShot5Way5Shot(FewShotClassification):
    """5-way 5-shot glyphs (25 labelled examples, then 5 queries)."""

    def __init__(self, num_shots: int = 5, **kwargs: Any) -> None:
        super().__init__(num_shots=num_shots, **kwargs)


class FewShotDigits5Way1Shot(FewShotClassification):
    """5-way 1-shot on the real scikit-learn digits (evaluation only: task_split='test')."""

    def __init__(self, source: str = "digits", task_split: str = "test", **kwargs: Any) -> None:
        super().__init__(source=source, task_split=task_split, **kwargs)
