"""Evaluation: run a policy for a fixed number of episodes (or trials) and summarise the returns.

    records = run_episodes(policy, env, 200, deterministic=True, seed=0)      # any wrapped VecEnv
    curve = adaptation_curve(records)            # trials: mean return per episode index within a trial
    records, summary = evaluate("runs/x", split="test", num_episodes=200)      # from a checkpoint alone

Unbiased counting: every environment of the batch gets a fixed quota of episodes (or trials), decided
before the rollout. Collecting "the first N episodes to finish" would favour short episodes (in most
games, the failures).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from srwm_rl.nn.policy import obs_to_torch

# Procgen (R_min, R_max) per game and distribution mode (Cobbe et al., 2020, appendix; design/procgen.md).
PROCGEN_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "easy": {"bigfish": (1, 40), "bossfight": (0.5, 13), "caveflyer": (3.5, 12), "chaser": (0.5, 13),
             "climber": (2, 12.6), "coinrun": (5, 10), "dodgeball": (1.5, 19), "fruitbot": (-1.5, 32.4),
             "heist": (3.5, 10), "jumper": (1, 10), "leaper": (1.5, 10), "maze": (5, 10), "miner": (1.5, 13),
             "ninja": (3.5, 10), "plunder": (4.5, 30), "starpilot": (2.5, 64)},
    "hard": {"bigfish": (0, 40), "bossfight": (0.5, 13), "caveflyer": (2, 13.4), "chaser": (0.5, 14.2),
             "climber": (1, 12.6), "coinrun": (5, 10), "dodgeball": (1.5, 19), "fruitbot": (-0.5, 27.2),
             "heist": (2, 10), "jumper": (1, 10), "leaper": (1.5, 10), "maze": (4, 10), "miner": (1.5, 20),
             "ninja": (2, 10), "plunder": (3, 30), "starpilot": (1.5, 35)},
}
PAPER_TEST_START = 1000     # the paper's unseen levels: blocks of 200 starting at 1000, 1200 and 1400
ALL_LEVELS = 2**31


@dataclass
class EpisodeRecord:
    """One finished episode. ``seed``: Procgen level seed or in-context task id (-1 if unknown);
    ``trial``: 0..num_episodes-1 over the whole evaluation; ``success``: NaN when undefined."""

    env_index: int
    game: str
    seed: int
    trial: int
    episode_in_trial: int
    ret: float
    length: int
    success: float


def _unsqueeze(obs):
    return {k: v.unsqueeze(0) for k, v in obs.items()} if isinstance(obs, dict) else obs.unsqueeze(0)


def _row(info: dict, key: str, i: int, default):
    v = info.get(key)
    return default if v is None else v[i]


def run_episodes(policy, env, num_episodes: int, *, deterministic: bool = True, seed: int = 0,
                 on_step: Optional[Callable[[Any, Any, Any, dict], None]] = None, capture_frames: bool = False,
                 env_name: str = "", max_steps: Optional[int] = None) -> list[EpisodeRecord]:
    """Run ``policy`` on the batched ``env`` until each env has finished its quota; returns the records.

    ``num_episodes`` counts trials when ``env`` has ``trial_episodes`` (every inner episode is
    recorded, with its ``episode_in_trial``), episodes otherwise; env i's quota is
    ``num_episodes // N`` plus one for the first ``num_episodes % N`` envs. ``seed`` seeds the env
    reset and (in a forked RNG, so the caller's stream is untouched) the action sampling.
    ``on_step(obs, dist, state, info)`` is called after every step with the obs acted on, the action
    distribution [1, N], the new core state and the step's info plus ``action``, ``reward``, ``first``
    (of the acted-on obs), ``active`` (bool [N]: the step belongs to a counted episode) and, with
    ``capture_frames``, ``frames`` (``env.get_frames()`` before the step). ``max_steps`` stops early
    (unfinished episodes are not recorded). ``env_name``: the records' ``game`` where the env reports
    none (Procgen reports its game).
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)) or num_episodes < 1:
        raise ValueError(f"num_episodes={num_episodes!r}: must be an integer >= 1")
    N = env.num_envs
    trials = int(getattr(env, "trial_episodes", 0) or 0)
    quota = num_episodes // N + (np.arange(N) < num_episodes % N)
    offset = np.cumsum(quota) - quota               # global trial number of env i's first trial
    finished = np.zeros(N, np.int64)
    device = next(policy.parameters()).device
    records: list[EpisodeRecord] = []
    was_training = policy.training
    policy.eval()
    steps = 0
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            torch.manual_seed(seed)
            obs = env.reset(seed=seed)
            first = env.first
            state = policy.initial_state(N, device)
            while (finished < quota).any() and (max_steps is None or steps < max_steps):
                active = finished < quota
                first_t = torch.as_tensor(first, device=device).view(1, N)
                dist, _, state = policy(_unsqueeze(obs_to_torch(obs, device)), state, first_t)
                action = (dist.mode() if deterministic else dist.sample())[0].cpu().numpy()
                frames = env.get_frames() if capture_frames else None
                next_obs, reward, _, _, info = env.step(action)
                ends = (info["inner_episode_done"] if trials else info["episode_done"]) & active
                for i in np.flatnonzero(ends):
                    if trials:
                        k, ret, length = (int(info["inner_episode_index"][i]), info["inner_episode_return"][i],
                                          info["inner_episode_length"][i])
                    else:
                        k, ret, length = 0, info["episode_return"][i], info["episode_length"][i]
                    level = _row(info, "prev_level_seed", i, _row(info, "task_id", i, -1))
                    success = _row(info, "level_complete", i, _row(info, "success", i, math.nan))
                    records.append(EpisodeRecord(int(i), str(_row(info, "game", i, env_name)), int(level),
                                                 int(offset[i] + finished[i]), k, float(ret), int(length),
                                                 float(success)))
                if on_step is not None:
                    on_step(obs, dist, state, {**info, "action": action, "reward": reward, "first": first,
                                               "active": active, "frames": frames})
                finished += info["episode_done"] & active
                obs, first = next_obs, env.first
                steps += 1
    finally:
        policy.train(was_training)
    records.sort(key=lambda r: (r.trial, r.episode_in_trial))
    return records


# ---- statistics ------------------------------------------------------------------------------

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t with ``df`` degrees of freedom (table, then a
    Cornish-Fisher expansion accurate to 1e-4 for df > 30)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def mean_ci(values: Sequence[float]) -> dict[str, Any]:
    """n, mean, std (ddof=1) and the t-based 95% confidence interval of the mean (NaN for n < 2)."""
    x = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = t_critical(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "std": std, "ci95": (mean - half, mean + half)}


def adaptation_curve(records: Sequence[EpisodeRecord]) -> list[dict]:
    """Per episode index within a trial: {"episode_in_trial", "n", "mean", "std", "ci95": (low, high)}."""
    by_k: dict[int, list[float]] = {}
    for r in records:
        by_k.setdefault(r.episode_in_trial, []).append(r.ret)
    return [{"episode_in_trial": k, **mean_ci(v)} for k, v in sorted(by_k.items())]


def normalized_score(game: str, ret: float, distribution_mode: str = "easy") -> Optional[float]:
    """(R - R_min) / (R_max - R_min) with the Procgen constants; None where none are defined."""
    lo_hi = PROCGEN_RANGES.get(distribution_mode, {}).get(game)
    if lo_hi is None or math.isnan(ret):
        return None
    lo, hi = lo_hi
    return (ret - lo) / (hi - lo)


def summarize(records: Sequence[EpisodeRecord], distribution_mode: Optional[str] = None) -> dict[str, Any]:
    """Return / length / success statistics, overall and per game; for Procgen games (when
    ``distribution_mode`` is given) the normalised score per game and its mean over games; for trials
    the trial returns and the adaptation curve."""
    if not records:
        raise ValueError("summarize: no episodes were recorded")
    out: dict[str, Any] = {"episodes": len(records), "return": mean_ci([r.ret for r in records]),
                           "length": mean_ci([r.length for r in records])}
    succ = [r.success for r in records if not math.isnan(r.success)]
    out["success"] = float(np.mean(succ)) if succ else None
    per_game: dict[str, Any] = {}
    for game in sorted({r.game for r in records}):
        rs = [r for r in records if r.game == game]
        g = mean_ci([r.ret for r in rs])
        s = [r.success for r in rs if not math.isnan(r.success)]
        g["success"] = float(np.mean(s)) if s else None
        g["normalized"] = normalized_score(game, g["mean"], distribution_mode) if distribution_mode else None
        per_game[game] = g
    out["per_game"] = per_game
    norms = [g["normalized"] for g in per_game.values()]
    out["normalized_score"] = float(np.mean(norms)) if norms and all(v is not None for v in norms) else None
    if any(r.episode_in_trial > 0 for r in records):
        totals: dict[int, float] = {}
        for r in records:
            totals[r.trial] = totals.get(r.trial, 0.0) + r.ret
        out["trial_return"] = mean_ci(list(totals.values()))
        out["adaptation"] = adaptation_curve(records)
    return out


# ---- evaluating a checkpoint -----------------------------------------------------------------

def _level_range(start: int, num: int) -> tuple[int, int]:
    return (0, ALL_LEVELS) if num == 0 else (start, start + num)


def level_overlap(train: tuple[int, int], evaluated: tuple[int, int]) -> int:
    """How many levels of Procgen range (start, num_levels) ``evaluated`` are in ``train`` (num 0 = all)."""
    (a0, a1), (b0, b1) = _level_range(*train), _level_range(*evaluated)
    return max(0, min(a1, b1) - max(a0, b0))


def eval_env_overrides(cfg, split: str = "test", games: Optional[Sequence[str]] = None,
                       start_level: Optional[int] = None, num_levels: Optional[int] = None,
                       distribution_mode: Optional[str] = None, trial_episodes: Optional[int] = None,
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """EnvConfig overrides for each evaluated game (one dict per game; one in all for non-Procgen
    envs) and a description of the levels/tasks. ValueError names any bad argument.

    Procgen: ``split="train"`` is the training range; ``"test"`` the 200 levels starting at 1000 (the
    paper's first unseen block); ``start_level``/``num_levels`` override either. In-context tasks:
    the split is the task set. ``trial_episodes``: None = as trained, 0 = no trials.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}: must be 'train' or 'test'")
    for name, v in (("start_level", start_level), ("num_levels", num_levels), ("trial_episodes", trial_episodes)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
            raise ValueError(f"{name}={v!r}: must be an integer >= 0")
    env = cfg.env
    base: dict[str, Any] = {}
    if trial_episodes is not None:
        base["trial_episodes"] = int(trial_episodes)
    if not env.id.startswith("procgen:"):
        if games or start_level is not None or num_levels is not None or distribution_mode:
            raise ValueError(f"games/levels/distribution mode apply to Procgen only; the checkpoint was trained "
                             f"on {env.id!r}")
        if env.id.startswith("srwm_rl/"):
            base["task_split"] = split
        return [base], {"env_id": env.id, "task_split": split if env.id.startswith("srwm_rl/") else None}
    from envs.procgen_env import check_game, valid_modes
    names = list(games) if games else env.id.split(":", 1)[1].split("+")
    for g in names:
        check_game(g)
    mode = distribution_mode or env.distribution_mode
    for g in names:
        if mode not in valid_modes(g):
            raise ValueError(f"distribution_mode={mode!r} is not valid for procgen game {g!r}; "
                             f"allowed: {', '.join(valid_modes(g))}")
    if split == "train":
        start, num = env.start_level, env.num_levels
    else:
        start, num = PAPER_TEST_START, 200
    start = start if start_level is None else int(start_level)
    num = num if num_levels is None else int(num_levels)
    if start + (num or 1) > ALL_LEVELS:
        raise ValueError(f"start_level={start}, num_levels={num}: levels must lie in [0, 2^31)")
    base.update(start_level=start, num_levels=num, distribution_mode=mode)
    overlap = level_overlap((env.start_level, env.num_levels), (start, num)) \
        if mode == env.distribution_mode else 0
    desc = {"env_id": env.id, "games": names, "start_level": start, "num_levels": num, "distribution_mode": mode,
            "train_levels": [env.start_level, env.num_levels], "overlap_levels": overlap}
    return [{**base, "id": f"procgen:{g}"} for g in names], desc


def evaluate(checkpoint_or_run_dir: str | Path, *, split: str = "test", games: Optional[Sequence[str]] = None,
             start_level: Optional[int] = None, num_levels: Optional[int] = None,
             distribution_mode: Optional[str] = None, num_episodes: int = 200,
             trial_episodes: Optional[int] = None, deterministic: bool = True, num_envs: Optional[int] = None,
             seed: int = 0, device: str = "cpu", agent=None, on_step: Optional[Callable] = None,
             ) -> tuple[list[EpisodeRecord], dict[str, Any]]:
    """Evaluate a checkpoint: ``num_episodes`` episodes (trials with ``trial_episodes``) per game.

    Levels/tasks as in :func:`eval_env_overrides`; the training normaliser statistics are loaded and
    frozen. Warns (``UserWarning``) with the count when Procgen levels overlap the training levels.
    ``agent``: an already loaded ``(cfg, policy, ckpt)`` (from ``agents.common.load_agent``);
    ``on_step``: passed to :func:`run_episodes`.
    Returns the records (sorted by game, then trial) and the summary of :func:`summarize` plus the
    settings.
    """
    from srwm_rl.run.common import load_agent, load_normalizer_state, make_env
    cfg, policy, ckpt = agent if agent is not None else load_agent(checkpoint_or_run_dir, device)
    per_game, desc = eval_env_overrides(cfg, split, games, start_level, num_levels, distribution_mode,
                                        trial_episodes)
    if desc.get("overlap_levels"):
        n_eval = desc["num_levels"] or ALL_LEVELS
        warnings.warn(f"{desc['overlap_levels']} of the {n_eval} evaluation levels are training levels "
                      f"(train: start_level={cfg.env.start_level}, num_levels={cfg.env.num_levels})", stacklevel=2)
    n_envs = num_envs or min(num_episodes, 64)
    records: list[EpisodeRecord] = []
    for overrides in per_game:
        env = make_env(cfg.env, cfg.policy, seed, num_envs=n_envs, **overrides)
        try:
            load_normalizer_state(env, ckpt.get("normalizers", []), update=False)
            trials = int(getattr(env, "trial_episodes", 0) or 0)
            recs = run_episodes(policy, env, num_episodes, deterministic=deterministic, seed=seed,
                                env_name=overrides.get("id", cfg.env.id), on_step=on_step)
        finally:
            env.close()
        records.extend(recs)
    summary = summarize(records, desc.get("distribution_mode"))
    summary.update(checkpoint=str(checkpoint_or_run_dir), split=split, levels=desc, num_episodes=num_episodes,
                   trial_episodes=trials, deterministic=deterministic, seed=seed, num_envs=n_envs,
                   global_step=int(ckpt.get("global_step", 0)), core=cfg.core.kind)
    return records, summary


CSV_COLUMNS = ("game", "seed", "trial", "episode_in_trial", "return", "length", "success", "env_index")


def write_episodes_csv(path: str | Path, records: Sequence[EpisodeRecord]) -> Path:
    """One row per episode: game, level/task seed, trial, episode in trial, return, length, success."""
    import csv
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in records:
            w.writerow([r.game, r.seed, r.trial, r.episode_in_trial, repr(r.ret), r.length,
                        "" if math.isnan(r.success) else r.success, r.env_index])
    return path


def json_safe(obj: Any) -> Any:
    """NaN -> None and tuples -> lists, recursively (strict JSON)."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj
