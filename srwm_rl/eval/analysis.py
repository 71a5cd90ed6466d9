"""Analysis: adaptation within trials, bandit regret against Thompson sampling and UCB1, and learning
curves of several runs (mean and spread over seeds). Plots are PNGs drawn headless (matplotlib Agg).
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from srwm_rl.eval.stats import mean_ci


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, ax, path: str | Path, fontsize: Optional[float] = None) -> Path:
    """Legend, grid, tight layout; write the figure to ``path`` and close it."""
    ax.legend(fontsize=fontsize)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return Path(path)


# ---- adaptation ------------------------------------------------------------------------------

def plot_adaptation(path: str | Path, curves: dict[str, list[dict]], *, ylabel: str = "mean return",
                    title: str = "", xlabel: str = "episode within the trial",
                    styles: Optional[dict[str, dict[str, Any]]] = None,
                    references: Optional[dict[str, list[dict]]] = None,
                    levels: Optional[dict[str, float]] = None) -> Path:
    """One line per label: mean return per episode index within a trial, with 95% CI bars.
    ``styles``: label -> extra matplotlib keywords of its line (color, linestyle); ``references``:
    curves of the same kind drawn dashed (e.g. an untrained policy); ``levels``: horizontal reference
    lines (e.g. optimal or random return per episode)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, rows in (references or {}).items():
        xs = [r["episode_in_trial"] + 1 for r in rows]
        ax.plot(xs, [r["mean"] for r in rows], ls="--", color="grey", marker=".", label=label)
    for label, y in (levels or {}).items():
        ax.axhline(y, ls=":", color="black", lw=1, label=label)
    for label, rows in curves.items():
        xs = [r["episode_in_trial"] + 1 for r in rows]
        m = np.array([r["mean"] for r in rows])
        lo = np.array([r["ci95"][0] for r in rows])
        hi = np.array([r["ci95"][1] for r in rows])
        err = np.nan_to_num(np.stack([m - lo, hi - m]))
        ax.errorbar(xs, m, yerr=err, marker="o", capsize=3, label=label, **(styles or {}).get(label, {}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, ax, path)


def write_adaptation_csv(path: str | Path, curves: dict[str, list[dict]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "episode_in_trial", "n", "mean", "std", "ci95_low", "ci95_high"])
        for label, rows in curves.items():
            for r in rows:
                w.writerow([label, r["episode_in_trial"], r["n"], r["mean"], r["std"], *r["ci95"]])
    return Path(path)


# ---- bandits: regret of the agent and of two classic algorithms on the same tasks -------------

class RegretCollector:
    """``run_episodes`` hook: the expected regret of every pull (``info["regret"]``), per finished
    episode (trial, with trials), with its task id. ``results``: list of (task_id, regrets [T])."""

    def __init__(self):
        self.current: list[list[float]] = []
        self.results: list[tuple[int, np.ndarray]] = []

    def __call__(self, obs, dist, state, info: dict[str, Any]) -> None:
        if "regret" not in info:
            raise ValueError("the environment reports no info['regret'] (regret curves are for bandits)")
        if not self.current:
            self.current = [[] for _ in range(len(info["active"]))]
        for i in np.flatnonzero(info["active"]):
            self.current[i].append(float(info["regret"][i]))
            if info["episode_done"][i]:
                self.results.append((int(info["task_id"][i]), np.array(self.current[i])))
                self.current[i] = []


def bandit_arm_probs(task_ids: Sequence[int], num_arms: int) -> np.ndarray:
    """[M, num_arms] arm probabilities of the Bernoulli bandit tasks (as ``envs.meta.bandit`` draws them)."""
    from envs.meta.bandit import BernoulliBandit
    env = BernoulliBandit(num_arms=num_arms)
    return np.array([env.arm_probabilities(t) for t in task_ids])


def thompson_regret(probs: np.ndarray, pulls: int, rng: np.random.Generator) -> np.ndarray:
    """Per-pull expected regret [M, pulls] of Thompson sampling with Beta(1, 1) priors, one run per task."""
    M, k = probs.shape
    a, b = np.ones((M, k)), np.ones((M, k))
    best, rows, out = probs.max(1), np.arange(M), np.zeros((M, pulls))
    for t in range(pulls):
        arm = rng.beta(a, b).argmax(1)
        p = probs[rows, arm]
        r = rng.random(M) < p
        a[rows, arm] += r
        b[rows, arm] += ~r
        out[:, t] = best - p
    return out


def ucb1_regret(probs: np.ndarray, pulls: int, rng: np.random.Generator) -> np.ndarray:
    """Per-pull expected regret [M, pulls] of UCB1 (Auer et al., 2002): each arm once, then the
    largest mean + sqrt(2 ln t / n)."""
    M, k = probs.shape
    n, s = np.zeros((M, k)), np.zeros((M, k))
    best, rows, out = probs.max(1), np.arange(M), np.zeros((M, pulls))
    for t in range(pulls):
        if t < k:
            arm = np.full(M, t)
        else:
            arm = (s / n + np.sqrt(2.0 * math.log(t) / n)).argmax(1)
        p = probs[rows, arm]
        r = rng.random(M) < p
        n[rows, arm] += 1
        s[rows, arm] += r
        out[:, t] = best - p
    return out


def random_regret(probs: np.ndarray, pulls: int, rng: np.random.Generator) -> np.ndarray:
    """Per-pull expected regret [M, pulls] of random play (an arm drawn uniformly at every pull)."""
    M, k = probs.shape
    arms = rng.integers(0, k, size=(M, pulls))
    return probs.max(1, keepdims=True) - np.take_along_axis(probs, arms, axis=1)


# The classic algorithms a bandit agent is compared with: name -> (probs [M, k], pulls, rng) -> regret [M, pulls].
BANDIT_BASELINES = {"Thompson sampling": thompson_regret, "UCB1": ucb1_regret, "random": random_regret}


def cumulative_regret_curve(per_pull: np.ndarray) -> list[dict]:
    """[M, T] per-pull regrets -> per pull t: mean cumulative regret over the M runs with its 95% CI."""
    cum = np.cumsum(per_pull, axis=1)
    return [{"pull": t + 1, **mean_ci(cum[:, t])} for t in range(cum.shape[1])]


def bandit_regret_curves(agent: dict[str, list[tuple[int, np.ndarray]]], num_arms: int, seed: int = 0,
                         repeats: int = 10) -> dict[str, list[dict]]:
    """Cumulative-regret curves of each agent (label -> RegretCollector.results) and of Thompson
    sampling and UCB1 run ``repeats`` times on the same tasks (those of the first agent)."""
    curves: dict[str, list[dict]] = {}
    for label, results in agent.items():
        T = min(len(r) for _, r in results)
        curves[label] = cumulative_regret_curve(np.stack([r[:T] for _, r in results]))
    tasks, T = [t for t, _ in next(iter(agent.values()))], min(len(r) for rs in agent.values() for _, r in rs)
    probs = np.repeat(bandit_arm_probs(tasks, num_arms), repeats, axis=0)
    rng = np.random.default_rng(seed)
    curves["Thompson sampling"] = cumulative_regret_curve(thompson_regret(probs, T, rng))
    curves["UCB1"] = cumulative_regret_curve(ucb1_regret(probs, T, rng))
    return curves


def plot_regret(path: str | Path, curves: dict[str, list[dict]], title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, rows in curves.items():
        x = [r["pull"] for r in rows]
        m = np.array([r["mean"] for r in rows])
        ax.plot(x, m, label=label, ls="--" if label in ("Thompson sampling", "UCB1") else "-")
        lo, hi = np.array([r["ci95"][0] for r in rows]), np.array([r["ci95"][1] for r in rows])
        ax.fill_between(x, np.nan_to_num(lo, nan=m), np.nan_to_num(hi, nan=m), alpha=0.2)
    ax.set_xlabel("pull")
    ax.set_ylabel("cumulative expected regret")
    ax.set_title(title)
    return _save(fig, ax, path)


def write_regret_csv(path: str | Path, curves: dict[str, list[dict]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "pull", "n", "mean_cumulative_regret", "ci95_low", "ci95_high"])
        for label, rows in curves.items():
            for r in rows:
                w.writerow([label, r["pull"], r["n"], r["mean"], *r["ci95"]])
    return Path(path)


# ---- learning curves of several runs -----------------------------------------------------------

IGNORED_FOR_GROUPING = {"seed", "run_dir", "device", "torch_threads", "log_every", "checkpoint_every"}


def read_run(run_dir: str | Path, metric: str = "episode_return") -> dict[str, Any]:
    """{"run_dir", "config" (dict), "steps" [n], "values" [n]} from RUN_DIR/config.json and metrics.csv;
    ValueError when either is missing or the metric is absent."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    cfg_path, csv_path = run_dir / "config.json", run_dir / "metrics.csv"
    if not csv_path.exists():
        raise ValueError(f"{run_dir} has no metrics.csv (is it a run directory?)")
    config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    steps, values = [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            v = row.get(metric)
            if v not in (None, ""):
                steps.append(float(row["global_step"]))
                values.append(float(v))
    if not steps:
        raise ValueError(f"{csv_path} has no values of {metric!r}")
    return {"run_dir": str(run_dir), "config": config, "steps": np.array(steps), "values": np.array(values)}


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = json.dumps(v)
    return out


def group_runs(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs sharing a config except for the seed (and run directory, device, logging) form one group,
    labelled by the options that differ between groups (or the run directory)."""
    keys = [tuple(sorted((k, v) for k, v in _flat(r["config"]).items() if k not in IGNORED_FOR_GROUPING))
            for r in runs]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for key, r in zip(keys, runs):
        groups.setdefault(key, []).append(r)
    if len(groups) == 1:
        key = next(iter(groups))
        return {Path(groups[key][0]["run_dir"]).name if len(groups[key]) == 1 else
                f"{len(groups[key])} seeds": groups[key]}
    dicts = [dict(k) for k in groups]
    differing = sorted({k for d in dicts for k in d if any(d.get(k) != o.get(k) for o in dicts)})
    out = {}
    for key, members in groups.items():
        d = dict(key)
        label = ", ".join(f"{k}={json.loads(d[k]) if k in d else '-'}" for k in differing[:3]) \
            or Path(members[0]["run_dir"]).name
        out[label if label not in out else f"{label} ({Path(members[0]['run_dir']).name})"] = members
    return out


def aggregate(members: list[dict[str, Any]], points: int = 200) -> dict[str, np.ndarray]:
    """Mean, std and min/max over the runs of a group, interpolated on a common step grid (the range
    every run covers)."""
    if len(members) == 1:
        r = members[0]
        return {"steps": r["steps"], "mean": r["values"], "std": np.zeros_like(r["values"]), "n": 1}
    lo = max(r["steps"][0] for r in members)
    hi = min(r["steps"][-1] for r in members)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([hi])
    ys = np.stack([np.interp(grid, r["steps"], r["values"]) for r in members])
    return {"steps": grid, "mean": ys.mean(0), "std": ys.std(0, ddof=1), "n": len(members)}


def final_values(members: list[dict[str, Any]], window: int = 10) -> np.ndarray:
    """Each run's final value: the mean of its last ``window`` logged values (one noisy log point is
    not a run's result). float [runs]."""
    if window < 1:
        raise ValueError(f"window={window}: must be >= 1")
    return np.array([float(np.mean(r["values"][-window:])) for r in members])


def plot_compare(path: str | Path, groups: dict[str, list[dict[str, Any]]], metric: str = "episode_return") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, members in groups.items():
        a = aggregate(members)
        line, = ax.plot(a["steps"], a["mean"], lw=1.5, label=f"{label} (n={a['n']})")
        if a["n"] > 1:
            ax.fill_between(a["steps"], a["mean"] - a["std"], a["mean"] + a["std"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(metric + " (mean ± std over seeds)")
    return _save(fig, ax, path, fontsize=8)
