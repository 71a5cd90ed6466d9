"""Sequential N-way K-shot tasks in the delayed-label protocol.

One task: draw N classes from a source's split, give them a random label permutation, then present
    support: N * K examples (each class exactly K times, shuffled), then
    queries: N * Q examples (each class Q times, shuffled, distinct from the support examples).
At step t the input is the example x_t and the label of step t - 1 (none at t = 0); the prediction at
step t is for x_t's label, so a label is only ever visible AFTER its own prediction. Query labels
are never shown unless ``query_labels`` (then queries continue the fully sequential protocol).

The input vector at each step, shared by the supervised model and the RL environment, is
    [x_t as 64 pixels in [0, 1], one-hot(previous label) of width N (all zero = no label)].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from envs.fewshot.sources import IMAGE_SIZE, ClassSource

NO_LABEL = -1
PIXELS = IMAGE_SIZE * IMAGE_SIZE


@dataclass(frozen=True)
class TaskSpec:
    """Shape of one task: N ways, K shots, Q queries per class, whether query labels are revealed."""

    num_ways: int = 5
    num_shots: int = 1
    num_queries: int = 1
    query_labels: bool = False

    @property
    def seq_len(self) -> int:
        return self.num_ways * (self.num_shots + self.num_queries)

    @property
    def input_size(self) -> int:
        return PIXELS + self.num_ways


def check_spec(spec: TaskSpec, source: ClassSource, split: str) -> None:
    """ValueError naming the option, its value and the allowed range, if ``spec`` cannot be drawn."""
    for name, lo in (("num_ways", 2), ("num_shots", 1), ("num_queries", 0)):
        v = getattr(spec, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name}={v!r} is not valid; expected an integer >= {lo}")
    n = source.num_classes(split)          # also checks the split
    if n is not None and spec.num_ways > n:
        raise ValueError(f"num_ways={spec.num_ways} is larger than the {n} classes of source {source.name!r}; "
                         f"allowed: 2..{n}")
    per_class = getattr(source, "min_examples", lambda: None)()
    if per_class is not None and spec.num_shots + spec.num_queries > per_class:
        raise ValueError(f"num_shots + num_queries = {spec.num_shots + spec.num_queries} examples per class; "
                         f"source {source.name!r} has only {per_class} for some class")


class TaskBatch(NamedTuple):
    """B tasks, time-major. images float32 [T, B, 8, 8]; labels, prev_labels, shot int64 [T, B];
    is_query bool [T, B]; classes int64 [B, N] (class ids by label: classes[b, y] has label y)."""

    images: Tensor
    labels: Tensor
    prev_labels: Tensor
    shot: Tensor
    is_query: Tensor
    classes: Tensor


def delayed_labels(labels: np.ndarray, revealed: np.ndarray) -> np.ndarray:
    """The label input of each step: ``labels[t - 1]`` where step t - 1's label is revealed, else NO_LABEL.

    labels int [T, ...], revealed bool [T, ...] -> int64 [T, ...]; step 0 always gets NO_LABEL.
    """
    prev = np.full(labels.shape, NO_LABEL, np.int64)
    prev[1:] = np.where(revealed[:-1], labels[:-1], NO_LABEL)
    return prev


def plan_task(spec: TaskSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label of each step int64 [T], is_query bool [T], shot index int64 [T], 1-based)."""
    N, K, Q = spec.num_ways, spec.num_shots, spec.num_queries
    support = rng.permutation(np.repeat(np.arange(N), K))
    queries = rng.permutation(np.repeat(np.arange(N), Q))
    labels = np.concatenate([support, queries]).astype(np.int64)
    is_query = np.arange(len(labels)) >= N * K
    seen = np.zeros(N, np.int64)
    shot = np.empty(len(labels), np.int64)
    for t, y in enumerate(labels):
        seen[y] += 1
        shot[t] = seen[y]
    return labels, is_query, shot


def sample_tasks(source: ClassSource, spec: TaskSpec, batch_size: int, split: str,
                 rng: np.random.Generator) -> TaskBatch:
    """``batch_size`` tasks of ``spec`` from ``source``'s ``split``, all random draws from ``rng``."""
    check_spec(spec, source, split)
    plans = [plan_task(spec, rng) for _ in range(batch_size)]
    # A fresh random label permutation per task, whatever order the source returns its classes in.
    classes = np.stack([rng.permutation(source.sample_classes(spec.num_ways, split, rng))
                        for _ in range(batch_size)])
    labels = np.stack([p[0] for p in plans], 1)                                  # [T, B]
    is_query = np.stack([p[1] for p in plans], 1)
    images = source.examples(np.take_along_axis(classes, labels.T, 1), rng)       # [B, T, 8, 8]
    prev = delayed_labels(labels, ~is_query | spec.query_labels)
    return TaskBatch(torch.from_numpy(np.ascontiguousarray(images.transpose(1, 0, 2, 3))),
                     torch.from_numpy(labels), torch.from_numpy(prev),
                     torch.from_numpy(np.stack([p[2] for p in plans], 1)), torch.from_numpy(is_query),
                     torch.from_numpy(classes))


def task_inputs(images: Tensor, prev_labels: Tensor, num_ways: int) -> Tensor:
    """images [T, B, 8, 8], prev_labels int [T, B] (NO_LABEL = none) -> inputs float32 [T, B, 64 + N]."""
    onehot = torch.nn.functional.one_hot(prev_labels.long() + 1, num_ways + 1)[..., 1:]
    return torch.cat([images.flatten(2).float(), onehot.float()], -1)


def task_spaces(num_ways: int):
    """(observation space, action space) of the task: Box [64 + N] in [0, 1] and Discrete(N) labels.

    The RL environment uses them, and supervised checkpoints store them (the model's input vector is
    exactly the RL observation), so both kinds of run describe their interface the same way.
    """
    import gymnasium
    return (gymnasium.spaces.Box(0.0, 1.0, (PIXELS + num_ways,), np.float32), gymnasium.spaces.Discrete(num_ways))
