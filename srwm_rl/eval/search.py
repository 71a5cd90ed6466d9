"""Where a Dark Room agent searches: the cells it stands on, per episode of the trial.

    visits, records = cell_visits(policy, env, trials=256, size=5)   # [K, 5, 5] step counts, the episodes
    share = goal_cell_shares(visits[0], train_ids, test_ids)        # episode 1: training vs held-out cells
    split = find_and_return(records)                                # last episode = finding x returning

A searcher trained on a set of goal cells learns where goals were: if its first episode never stands
on a held-out goal cell, held-out goals are found only after the cells it was rewarded in are
exhausted, and the held-out adaptation curve measures that training prior rather than in-context
learning. ``env`` must be a Dark Room batch in trials whose observation is the raw cell [row, col]
(no observation normalisation).
"""
from __future__ import annotations

import math
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


def find_and_return(records: Sequence[EpisodeRecord]) -> dict:
    """Split the last episode's return of Dark Room trials into finding the goal and coming back to it.

    A trial has *found* its goal by episode k when an episode up to k has a positive return (reward 1 on
    each step on the goal). Over the complete trials of ``records`` (K episodes each; others ignored):

    * ``found_by``: [K] share of trials that found the goal by episode k = 1..K;
    * ``found_before_last``: share found in episodes 1..K-1 (``found_by[K-2]``);
    * ``returned``: of those, the share whose last episode reaches the goal again;
    * ``last_if_found`` / ``last_if_not_found``: mean last-episode return of the trials found before the
      last episode / of the others (NaN where there are none).

    The mean last-episode return is ``found_before_last * last_if_found + (1 - found_before_last) *
    last_if_not_found``: a low held-out last episode is either a search that did not reach the goal in
    time or an agent that does not come back to a goal it found.
    """
    by_trial: dict[int, dict[int, float]] = {}
    for r in records:
        by_trial.setdefault(r.trial, {})[r.episode_in_trial] = r.ret
    K = max((k for t in by_trial.values() for k in t), default=-1) + 1
    if K < 2:
        raise ValueError(f"find_and_return needs trials of >= 2 episodes (got {K})")
    rets = np.array([[t[k] for k in range(K)] for t in by_trial.values() if len(t) == K], np.float64)
    if len(rets) == 0:
        raise ValueError("find_and_return: no complete trial in the records")
    reached = rets > 0
    found = np.logical_or.accumulate(reached, axis=1)          # [trials, K]: found by episode k
    before = found[:, -2]                                      # found in episodes 1..K-1
    last = rets[:, -1]

    def mean(x: np.ndarray) -> float:
        return float(x.mean()) if len(x) else math.nan
    return {"trials": int(len(rets)), "found_by": found.mean(axis=0).tolist(),
            "found_before_last": float(before.mean()),
            "returned": mean(reached[before, -1].astype(np.float64)),
            "last_if_found": mean(last[before]), "last_if_not_found": mean(last[~before])}
