"""Statistics of evaluations: means with t-based 95% confidence intervals (scipy), per-episode curves.

Every evaluation reports through :func:`mean_ci`, so an interval means the same thing everywhere.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from srwm_rl.eval.rollout import EpisodeRecord


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> dict[str, Any]:
    """n, mean, std (ddof=1) and the Student-t confidence interval of the mean, ignoring NaNs:
    {"n", "mean", "std", "ci95": (low, high)} (NaN where n is too small)."""
    x = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and std > 0:
        from scipy import stats                      # imported here: it costs a third of a second
        low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n))
    elif n > 1:
        low = high = mean
    else:
        low = high = math.nan
    return {"n": n, "mean": mean, "std": std, "ci95": (float(low), float(high))}


def adaptation_curve(records: Sequence[EpisodeRecord]) -> list[dict]:
    """Per episode index within a trial: {"episode_in_trial", "n", "mean", "std", "ci95": (low, high)}."""
    by_k: dict[int, list[float]] = {}
    for r in records:
        by_k.setdefault(r.episode_in_trial, []).append(r.ret)
    return [{"episode_in_trial": k, **mean_ci(v)} for k, v in sorted(by_k.items())]
