"""Where a Dark Room agent searches: the cells it stands on, per episode of the trial.

    visits, records = cell_visits(policy, env, trials=256, size=5)   # [K, 5, 5] step counts, the episodes
    share = goal_cell_shares(visits[0], train_ids, test_ids)        # episode 1: training vs held-out cells

A searcher trained on a set of goal cells learns where goals were: if its first episode never stands
on a held-out goal cell, held-out goals are found only after the cells it was rewarded in are
exhausted, and the held-out adaptation curve measures that training prior rather than in-context
learning. ``env`` must be a Dark Room batch in trials whose observation is the raw cell [row, col]
(no observation normalisation).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from srwm_rl.eval.rollout import EpisodeRecord, run_episodes


def cell_visits(policy, env, trials: int, size: int, *, seed: int = 0,
                greedy: bool = False) -> tuple[np.ndarray, list[EpisodeRecord]]:
    """Steps spent on each cell, per episode index of the trial: float64 [K, size, size], and the
    rollout's episode records (:func:`run_episodes`'; returns per episode: ``adaptation_curve``).

    A step counts the cell the agent acts from (episode_length steps per episode, the start cell
    included); ``trials`` trials are run with :func:`run_episodes`' fixed per-env quotas."""
    K = int(getattr(env, "trial_episodes", 0) or 0)
    if K < 1:
        raise ValueError("cell_visits needs an env in trials (envs.make(..., trial_episodes=K))")
    visits = np.zeros((K, size, size))
    episode = np.zeros(env.num_envs, np.int64)      # episode index of the observation being acted on

    def on_step(obs, dist, state, info):
        pos = np.rint(np.asarray(obs["obs"] if isinstance(obs, dict) else obs)).astype(np.int64)
        if pos.ndim != 2 or pos.shape[1] != 2 or pos.min() < 0 or pos.max() >= size:
            raise ValueError(f"observations are not raw cells of a {size}x{size} room (got {pos[:2].tolist()}...)")
        active = np.flatnonzero(info["active"])
        np.add.at(visits, (episode[active], pos[active, 0], pos[active, 1]), 1.0)
        episode[:] = info["trial_episode"]

    records = run_episodes(policy, env, trials, deterministic=greedy, seed=seed, on_step=on_step)
    return visits, records


def goal_cell_shares(visits: np.ndarray, train_ids: Sequence[int], test_ids: Sequence[int]) -> dict[str, float]:
    """Share of the steps of ``visits`` [size, size] spent per training-goal cell and per held-out-goal
    cell (cell id = row * size + col), beside the uniform share 1 / size^2, and the held-out cells'
    total share."""
    flat = visits.reshape(-1) / max(float(visits.sum()), 1.0)
    train, test = np.asarray(train_ids, np.int64), np.asarray(test_ids, np.int64)
    return {"per_training_cell": float(flat[train].mean()) if len(train) else float("nan"),
            "per_held_out_cell": float(flat[test].mean()) if len(test) else float("nan"),
            "held_out_total": float(flat[test].sum()), "uniform_per_cell": 1.0 / flat.size}
