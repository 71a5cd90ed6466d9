"""`srwm-rl demo` (`make demo`): train SRWM-PPO on an in-context task, then show that it adapts.

The agent is trained on the train task set, then evaluated on held-out tasks in trials of several
episodes with memory carried across them. The table shows the mean return per episode index within
a trial for the untrained policy and for the trained one, on held-out tasks and on the training tasks
side by side: a rising column is in-context learning, and the gap between the trained agent's two
columns is what it learned about the training tasks themselves rather than how to search (the
generalisation gap). A last line says where that gap comes from: the share of the trained agent's
first-episode steps, on training tasks, that stand on the held-out goal cells, and how the last
episode splits into finding the goal before it and coming back to it (``srwm_rl.eval.search``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Optional

import torch
import tyro

from agents.registry import TrainConfig, train
from envs.meta.darkroom import DarkRoom
from srwm_rl.app.command import OWN_DEFAULT, parse
from srwm_rl.app.presets import get_preset
from srwm_rl.eval.analysis import plot_adaptation
from srwm_rl.eval.rollout import run_episodes
from srwm_rl.eval.search import cell_visits, find_and_return, goal_cell_shares
from srwm_rl.eval.stats import adaptation_curve
from srwm_rl.run.agent import build_policy
from srwm_rl.run.config import from_dict, merge, to_dict
from srwm_rl.run.environment import load_normalizer_state, make_env
from srwm_rl.run.runlog import prepare_run_dir, write_json

DEMO_PRESET = "darkroom-small"
DEMO_STEPS = 3_000_000
DEMO_TIME_LIMIT = 420.0   # seconds of training, so that `make demo` ends within 10 minutes on 2 cores
EVAL_TRIALS = 64


@dataclass(frozen=True)
class DemoArgs:
    """Train SRWM-PPO on the default in-context task and show its adaptation curve."""

    run_dir: str = "runs/demo"
    """Where the demo run goes (runs/demo-2, -3, ... when it exists)."""
    total_steps: Annotated[Optional[int], OWN_DEFAULT] = None
    """Override the demo's training budget (default: 3,000,000 steps or 7 minutes, whichever comes first)."""
    no_progress: Annotated[bool, tyro.conf.FlagCreatePairsOff] = False
    """No progress bar."""


def demo_config(run_dir: str, total_steps: Optional[int]) -> TrainConfig:
    cfg = from_dict(TrainConfig, merge(to_dict(TrainConfig()), get_preset(DEMO_PRESET)))
    return replace(cfg, run_dir=run_dir, total_steps=total_steps or DEMO_STEPS, checkpoint_every=10,
                   time_limit=DEMO_TIME_LIMIT)


def _fresh_dir(base: str) -> Path:
    path, i = Path(base), 1
    while path.exists() and any(path.iterdir()):
        i += 1
        path = Path(f"{base}-{i}")
    return path


def adaptation(policy, cfg: TrainConfig, seed: int, norm_states: list) -> tuple[list[dict], dict]:
    """Return per episode index within trials on the held-out (test) tasks (sampled actions, frozen
    normalisers), and the last episode split into finding and coming back (:func:`find_and_return`)."""
    env = make_env(cfg.env, cfg.policy, seed, num_envs=32, task_split="test")
    load_normalizer_state(env, norm_states, update=False)
    try:
        records = run_episodes(policy, env, EVAL_TRIALS, deterministic=False, seed=seed)
    finally:
        env.close()
    return adaptation_curve(records), find_and_return(records)


def on_training_tasks(policy, cfg: TrainConfig, seed: int, norm_states: list) -> tuple[list[dict], dict, dict]:
    """One rollout on the training tasks (sampled actions, frozen normalisers): the return per episode
    index within trials, and where the agent searches in the first episode - steps per training-goal
    cell and per held-out-goal cell (:func:`srwm_rl.eval.search.goal_cell_shares`) - and the last episode
    split into finding and coming back (:func:`find_and_return`)."""
    room = DarkRoom(**cfg.env.kwargs)
    env = make_env(cfg.env, cfg.policy, seed, num_envs=32, task_split="train")
    load_normalizer_state(env, norm_states, update=False)
    try:
        visits, records = cell_visits(policy, env, EVAL_TRIALS, room.size, seed=seed)
    finally:
        env.close()
    search = {**goal_cell_shares(visits[0], room.task_ids("train"), room.task_ids("test")),
              "held_out_cells": len(room.task_ids("test"))}
    return adaptation_curve(records), search, find_and_return(records)


def demo_main(argv: list[str], prog: str) -> int:
    args = parse(DemoArgs, argv, prog)
    t0 = time.time()
    run_dir = prepare_run_dir(_fresh_dir(args.run_dir))
    cfg = demo_config(str(run_dir), args.total_steps)
    write_json(run_dir / "config.json", to_dict(cfg))
    print(f"srwm-rl demo: SRWM-PPO on {cfg.env.id}, {cfg.env.trial_episodes} episodes per trial, "
          f"{cfg.total_steps:,} env steps -> {run_dir}")
    torch.manual_seed(cfg.seed)
    probe = make_env(cfg.env, cfg.policy, cfg.seed, num_envs=1)
    untrained = build_policy(cfg, probe.observation_space, probe.action_space, "cpu")
    probe.close()
    result = train(cfg, run_dir, progress=not args.no_progress)
    norms = result["normalizers"]
    before, _ = adaptation(untrained, cfg, 10_000, norms)
    after, found_held = adaptation(result["policy"], cfg, 10_000, norms)
    seen, search, found_seen = on_training_tasks(result["policy"], cfg, 10_000, norms)
    found = {"held_out": found_held, "training": found_seen}
    print(report(before, after, seen, search, found))
    png = plot_adaptation(run_dir / "adaptation.png", {"untrained, held-out tasks": before,
                                                       "trained, held-out tasks": after,
                                                       "trained, training tasks": seen},
                          ylabel="mean return per episode", title=cfg.env.id)
    write_json(run_dir / "adaptation.json", {"untrained": before, "trained": after, "trained_training_tasks": seen,
                                             "first_episode_search": search, "find_and_return": found})
    print(f"\ncheckpoint     : {run_dir / 'checkpoints' / 'latest.pt'}")
    print(f"metrics        : {run_dir / 'metrics.csv'}  (tensorboard --logdir {run_dir / 'tb'})")
    print(f"learning curve : {run_dir / 'learning_curve.png'}")
    print(f"adaptation plot: {png}")
    print(f"total time     : {time.time() - t0:.0f} s")
    return 0


def report(before: list[dict], after: list[dict], seen: list[dict], search: Optional[dict] = None,
           found: Optional[dict] = None) -> str:
    """The demo's table: return per episode of a trial (mean [95% CI]) of the untrained policy on held-out
    tasks and of the trained one on held-out and on training tasks, then the two ratios that say whether
    it adapts (held-out last / first) and how much of that carries to unseen tasks (held-out last /
    training last), with ``search`` (:func:`on_training_tasks`) where its first episode searches, and with
    ``found`` (``{"held_out": ..., "training": ...}``, :func:`find_and_return` of either rollout) whether it
    finds held-out goals and comes back to them as it does to training goals."""
    def fmt(r: dict) -> str:
        return f"{r['mean']:6.2f} [{r['ci95'][0]:5.2f}, {r['ci95'][1]:5.2f}]"

    def pct(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.0%}"

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b > 0 else "n/a"
    lines = [f"\n{EVAL_TRIALS} trials per column, sampled actions: mean return per episode of a trial (95% CI)",
             f"{'episode':>8} | {'untrained, held-out':>22} | {'trained, held-out':>22} | {'trained, training tasks':>23}"]
    for b, a, s in zip(before, after, seen):
        lines.append(f"{a['episode_in_trial'] + 1:>8} | {fmt(b):>22} | {fmt(a):>22} | {fmt(s):>23}")
    first, last, train_last = after[0]["mean"], after[-1]["mean"], seen[-1]["mean"]
    verdict = "adapts within the trial" if last > first else "no in-context improvement yet"
    lines += [f"trained, held-out tasks: last / first episode = {ratio(last, first)} ({verdict})",
              f"held-out last episode / training-task last episode = {ratio(last, train_last)} "
              "(1.0: what it learned carries fully to unseen tasks)"]
    if search is not None:
        lines.append(f"where it searches (training tasks, episode 1): {search['per_held_out_cell']:.1%} of its steps "
                     f"per held-out goal cell ({search['held_out_cells']} cells) against "
                     f"{search['per_training_cell']:.1%} per training goal cell (uniform: "
                     f"{search['uniform_per_cell']:.1%}); a held-out goal it does not pass is found only "
                     "after the training goals' cells are exhausted")
    if found is not None:
        held, seen_f = found["held_out"], found["training"]
        lines.append(f"finding and coming back: the goal is found before the last episode in "
                     f"{pct(held['found_before_last'])} of held-out trials ({pct(seen_f['found_before_last'])} on "
                     f"training goals); of those, {pct(held['returned'])} are back on it in the last episode "
                     f"({pct(seen_f['returned'])})")
    return "\n".join(lines)
