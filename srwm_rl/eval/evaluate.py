"""Evaluating a checkpoint on chosen levels or tasks, and the summary of its episodes.

    records, summary = evaluate("runs/x", split="test", num_episodes=200)      # from a checkpoint alone
    write_episodes_csv("episodes.csv", records)

Which environments "train" and "test" mean is the env family's knowledge (``envs.families``):
Procgen's training levels or unseen ones, an in-context task's train or test task set.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

import envs
from envs.families import ALL_LEVELS
from srwm_rl.eval.procgen_scores import normalized_score
from srwm_rl.eval.rollout import EpisodeRecord, run_episodes
from srwm_rl.eval.stats import adaptation_curve, mean_ci
from srwm_rl.run.agent import load_agent
from srwm_rl.run.environment import load_normalizer_state, make_env


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


def eval_env_overrides(cfg, split: str = "test", games: Optional[Sequence[str]] = None,
                       start_level: Optional[int] = None, num_levels: Optional[int] = None,
                       distribution_mode: Optional[str] = None, trial_episodes: Optional[int] = None,
                       ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """EnvConfig overrides for each evaluated environment (one dict per Procgen game; one in all
    otherwise) and a description of the levels/tasks, from the env family of ``cfg.env.id``.
    ValueError names any bad argument. ``trial_episodes``: None = as trained, 0 = no trials."""
    if trial_episodes is not None and (isinstance(trial_episodes, bool) or not isinstance(trial_episodes, int)
                                       or trial_episodes < 0):
        raise ValueError(f"trial_episodes={trial_episodes!r}: must be an integer >= 0")
    family = envs.family_of(cfg.env.id)
    trained = {name: getattr(cfg.env, name) for name in family.options}
    targets, desc = family.targets(cfg.env.id, trained, split, games=games, start_level=start_level,
                                   num_levels=num_levels, distribution_mode=distribution_mode)
    base = {} if trial_episodes is None else {"trial_episodes": int(trial_episodes)}
    return [{**base, **options, "id": env_id} for env_id, options in targets], desc


def evaluate(checkpoint_or_run_dir: str | Path, *, split: str = "test", games: Optional[Sequence[str]] = None,
             start_level: Optional[int] = None, num_levels: Optional[int] = None,
             distribution_mode: Optional[str] = None, num_episodes: int = 200,
             trial_episodes: Optional[int] = None, deterministic: bool = True, num_envs: Optional[int] = None,
             seed: int = 0, device: str = "cpu", agent=None, on_step: Optional[Callable] = None,
             progress: bool = False) -> tuple[list[EpisodeRecord], dict[str, Any]]:
    """Evaluate a checkpoint: ``num_episodes`` episodes (trials with ``trial_episodes``) per game.

    Levels/tasks as in :func:`eval_env_overrides`; the training normaliser statistics are loaded and
    frozen. Warns (``UserWarning``) with the count when Procgen levels overlap the training levels.
    ``agent``: an already loaded :class:`srwm_rl.run.agent.Agent` (:func:`srwm_rl.run.agent.load_agent`);
    ``on_step``: passed to :func:`run_episodes`; ``progress``: a progress bar (stderr) over all the
    episodes (trials) of all games.
    Returns the records (sorted by game, then trial) and the summary of :func:`summarize` plus the
    settings.
    """
    agent = agent if agent is not None else load_agent(checkpoint_or_run_dir, device)
    cfg, policy, ckpt = agent.config, agent.policy, agent.checkpoint
    per_game, desc = eval_env_overrides(cfg, split, games, start_level, num_levels, distribution_mode,
                                        trial_episodes)
    if desc.get("overlap_levels"):
        n_eval = desc["num_levels"] or ALL_LEVELS
        warnings.warn(f"{desc['overlap_levels']} of the {n_eval} evaluation levels are training levels "
                      f"(train: start_level={cfg.env.start_level}, num_levels={cfg.env.num_levels})", stacklevel=2)
    n_envs = num_envs or min(num_episodes, 64)
    records: list[EpisodeRecord] = []
    bar = progress_bar(num_episodes * len(per_game), "trial" if trial_episodes or (
        trial_episodes is None and cfg.env.trial_episodes) else "episode", progress)
    for overrides in per_game:
        env = make_env(cfg.env, cfg.policy, seed, num_envs=n_envs, **overrides)
        try:
            load_normalizer_state(env, ckpt.get("normalizers", []), update=False)
            trials = int(getattr(env, "trial_episodes", 0) or 0)
            done0 = bar.n
            recs = run_episodes(policy, env, num_episodes, deterministic=deterministic, seed=seed,
                                env_name=overrides.get("id", cfg.env.id), on_step=on_step,
                                on_progress=lambda n: bar.update(done0 + n - bar.n))
        finally:
            env.close()
        records.extend(recs)
    bar.close()
    summary = summarize(records, desc.get("distribution_mode"))
    summary.update(checkpoint=str(checkpoint_or_run_dir), split=split, levels=desc, num_episodes=num_episodes,
                   trial_episodes=trials, deterministic=deterministic, seed=seed, num_envs=n_envs,
                   global_step=int(ckpt.get("global_step", 0)), core=cfg.core.kind)
    return records, summary


def progress_bar(total: int, unit: str, enabled: bool = True):
    """A tqdm bar on stderr counting finished episodes (or trials, or steps)."""
    from tqdm import tqdm
    return tqdm(total=total, unit=f" {unit}s", disable=not enabled, dynamic_ncols=True, leave=False)


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
