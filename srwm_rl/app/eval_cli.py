"""The ``evaluate``, ``record``, ``adaptation`` and ``compare`` sub-commands of ``srwm-rl``.

Every bad input (missing run directory, corrupt or foreign checkpoint, unknown game, negative level
range, unwritable video path) is a UsageError (exit status 2) raised before any rollout starts.
"""
from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Any, Optional

from srwm_rl.app.cli import UsageError, command


# ---- shared options ---------------------------------------------------------------------------

def _add_target_options(p: argparse.ArgumentParser, *, greedy_default: bool) -> None:
    g = p.add_argument_group("levels and tasks")
    g.add_argument("--split", choices=("train", "test"), default="test",
                   help="in-context tasks: the task set; Procgen: train = the training levels, test = the 200 "
                        "levels starting at 1000 (the paper's first unseen block)")
    g.add_argument("--games", nargs="+", metavar="GAME", help="Procgen games (default: those trained on)")
    g.add_argument("--start-level", "--start_level", dest="start_level", type=int, help="Procgen: first level seed")
    g.add_argument("--num-levels", "--num_levels", dest="num_levels", type=int,
                   help="Procgen: number of levels (0 = the full distribution)")
    g.add_argument("--distribution-mode", "--distribution_mode", dest="distribution_mode",
                   help="Procgen: easy, hard, memory, ... (default: as trained)")
    g.add_argument("--trial-episodes", "--trial_episodes", dest="trial_episodes", type=int,
                   help="episodes per trial with memory kept across them (default: as trained; 0 = no trials)")
    r = p.add_argument_group("rollout")
    if greedy_default:
        r.add_argument("--sample", action="store_true", help="sample actions (default: greedy, as in the paper)")
    else:
        r.add_argument("--greedy", action="store_true", help="greedy actions (default: sampled)")
    r.add_argument("--num-envs", "--num_envs", dest="num_envs", type=int, help="environments stepped together")
    r.add_argument("--seed", type=int, default=0, help="seed of the environments and of action sampling")
    r.add_argument("--device", default="cpu", help="cpu or cuda")
    r.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0 = PyTorch's default; 1 is fastest for small models on a busy CPU)")


def _deterministic(args: argparse.Namespace) -> bool:
    return not args.sample if hasattr(args, "sample") else bool(args.greedy)


def run_dir_of(target: str | Path) -> Path:
    """The run directory of a run directory or of a checkpoint file inside RUN_DIR/checkpoints/."""
    target = Path(target)
    if target.is_dir():
        return target
    return target.parent.parent if target.parent.name == "checkpoints" else target.parent


def load(target: str, device: str, threads: int = 0):
    """(cfg, policy, ckpt) or UsageError naming the problem."""
    import torch
    from srwm_rl.run.common import load_agent
    from srwm_rl.run.checkpoint import CheckpointError
    if threads < 0:
        raise UsageError(f"--threads={threads}: must be >= 0")
    if threads:
        torch.set_num_threads(threads)
    if not Path(target).exists():
        raise UsageError(f"{target} does not exist (expected a run directory or a checkpoint file)")
    try:
        return load_agent(target, device)
    except (CheckpointError, ValueError) as e:
        raise UsageError(str(e)) from None


def _check_counts(**counts: Optional[int]) -> None:
    for name, v in counts.items():
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')}={v}: must be >= 1")


def _evaluate(target: str, agent, args: argparse.Namespace, num_episodes: int, **kw):
    from srwm_rl.eval.evaluate import evaluate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            result = evaluate(target, agent=agent, split=args.split, games=args.games, start_level=args.start_level,
                              num_levels=args.num_levels, distribution_mode=args.distribution_mode,
                              num_episodes=num_episodes, trial_episodes=kw.pop("trial_episodes", args.trial_episodes),
                              deterministic=_deterministic(args), num_envs=args.num_envs, seed=args.seed,
                              device=args.device, **kw)
        except (ValueError, ImportError) as e:
            raise UsageError(str(e)) from None
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}")
    return result


def _fmt(x: Any, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


# ---- evaluate -----------------------------------------------------------------------------------

def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--num-episodes", "--num_episodes", dest="num_episodes", type=int, default=200,
                   help="episodes per game (trials, with --trial-episodes)")
    p.add_argument("--out", help="output directory (default: RUN_DIR/eval/<split>)")
    _add_target_options(p, greedy_default=True)


@command("evaluate", "evaluate a checkpoint on chosen levels or tasks: per-episode CSV, JSON summary, table",
         _configure_evaluate)
def cmd_evaluate(args: argparse.Namespace) -> int:
    from srwm_rl.eval.evaluate import json_safe, write_episodes_csv
    from srwm_rl.run.runlog import write_json
    _check_counts(num_episodes=args.num_episodes, num_envs=args.num_envs)
    from srwm_rl.eval.fewshot import evaluate_command, is_fewshot_run
    if is_fewshot_run(args.target):          # supervised few-shot learner: accuracy by shot index
        return evaluate_command(args)
    agent = load(args.target, args.device, args.threads)
    out = Path(args.out) if args.out else run_dir_of(args.target) / "eval" / _tag(args)
    records, summary = _evaluate(args.target, agent, args, args.num_episodes)
    out.mkdir(parents=True, exist_ok=True)
    write_episodes_csv(out / "episodes.csv", records)
    write_json(out / "summary.json", json_safe(summary))
    print_summary(summary)
    print(f"episodes: {out / 'episodes.csv'}\nsummary : {out / 'summary.json'}")
    return 0


def _tag(args: argparse.Namespace) -> str:
    if args.start_level is not None or args.num_levels is not None:
        return f"levels{args.start_level or 0}+{args.num_levels if args.num_levels is not None else 'x'}-s{args.seed}"
    return f"{args.split}-s{args.seed}"


def print_summary(summary: dict[str, Any]) -> None:
    lv = summary["levels"]
    where = (f"levels [{lv['start_level']}, {lv['start_level'] + lv['num_levels']})" if lv.get("num_levels")
             else "all levels" if "num_levels" in lv else f"task split {lv.get('task_split') or '-'}")
    print(f"{summary['checkpoint']}  ({summary['core']}, {summary['global_step']:,} steps)  on {where}, "
          f"{'greedy' if summary['deterministic'] else 'sampled'} actions"
          + (f", trials of {summary['trial_episodes']} episodes" if summary["trial_episodes"] else ""))
    print(f"{'game':28s} {'episodes':>8} {'mean':>9} {'std':>8} {'95% CI':>19} {'success':>8} {'normalised':>10}")
    rows = list(summary["per_game"].items())
    if len(rows) > 1:
        rows.append(("all", {**summary["return"], "success": summary["success"],
                             "normalized": summary["normalized_score"]}))
    for game, g in rows:
        ci = f"[{_fmt(g['ci95'][0])}, {_fmt(g['ci95'][1])}]"
        print(f"{game:28s} {g['n']:>8} {_fmt(g['mean']):>9} {_fmt(g['std']):>8} {ci:>19} "
              f"{_fmt(g['success']):>8} {_fmt(g['normalized'], 3):>10}")
    if summary.get("adaptation"):
        print("per episode within the trial: " + "  ".join(
            f"{r['episode_in_trial'] + 1}: {_fmt(r['mean'])}" for r in summary["adaptation"]))


# ---- record -----------------------------------------------------------------------------------------

def _configure_record(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--out", help="video file, .mp4 or .gif (default: RUN_DIR/videos/<split>-s<seed>.mp4)")
    p.add_argument("--gif", action="store_true", help="write a gif (when --out is not given)")
    p.add_argument("--grid", type=int, default=1, help="episodes shown side by side (one environment each)")
    p.add_argument("--episodes", type=int, default=1, help="episodes (trials) played one after another per tile")
    p.add_argument("--no-overlays", action="store_true", help="the game frames only")
    p.add_argument("--fps", type=float, default=15.0, help="frames per second")
    p.add_argument("--height", type=int, default=256, help="height of one tile in pixels")
    p.add_argument("--max-steps", "--max_steps", dest="max_steps", type=int, default=None,
                   help="stop after this many steps")
    _add_target_options(p, greedy_default=True)


@command("record", "record a rollout video (mp4 or gif, headless) with optional overlays", _configure_record)
def cmd_record(args: argparse.Namespace) -> int:
    from srwm_rl.run.common import load_normalizer_state, make_env
    from srwm_rl.eval.evaluate import eval_env_overrides, run_episodes
    from srwm_rl.eval.video import RolloutRecorder, VideoWriter, enable_frames
    _check_counts(grid=args.grid, episodes=args.episodes, height=args.height, max_steps=args.max_steps)
    if not args.no_overlays and args.height < 128:
        raise UsageError(f"--height={args.height}: tiles with overlays need >= 128 pixels")
    cfg, policy, ckpt = load(args.target, args.device, args.threads)
    if args.out:
        path = Path(args.out)
    else:
        path = run_dir_of(args.target) / "videos" / f"{_tag(args)}.{'gif' if args.gif else 'mp4'}"
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = VideoWriter(path, fps=args.fps)        # the path is checked here, before any rollout
    except ValueError as e:
        raise UsageError(str(e)) from None
    try:
        per_game, _ = eval_env_overrides(cfg, args.split, args.games, args.start_level, args.num_levels,
                                         args.distribution_mode, args.trial_episodes)
    except (ValueError, ImportError) as e:
        raise UsageError(str(e)) from None
    if len(per_game) > 1:
        raise UsageError(f"record one game at a time; pass --games with one of {[o['id'] for o in per_game]}")
    env = make_env(cfg.env, cfg.policy, args.seed, num_envs=args.grid, **per_game[0])
    try:
        load_normalizer_state(env, ckpt.get("normalizers", []), update=False)
        enable_frames(env)
        trials = int(getattr(env, "trial_episodes", 0) or 0)
        rec = RolloutRecorder(writer, args.grid, overlays=not args.no_overlays, height=args.height,
                              introspect=policy.core.introspect, trial_episodes=trials)
        records = run_episodes(policy, env, args.grid * args.episodes, deterministic=_deterministic(args),
                               seed=args.seed, on_step=rec, capture_frames=True, max_steps=args.max_steps,
                               env_name=per_game[0].get("id", cfg.env.id))
        out = rec.close()
    finally:
        env.close()
    h, w = writer.shape
    print(f"video: {out}  ({writer.frames} frames, {w}x{h}, {args.fps:g} fps)")
    for r in records:
        print(f"  tile {r.env_index}: {r.game} seed {r.seed} trial {r.trial} episode {r.episode_in_trial + 1}: "
              f"return {r.ret:.2f}, length {r.length}")
    return 0


# ---- adaptation ------------------------------------------------------------------------------------

def _configure_adaptation(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="+", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--labels", nargs="+", help="one label per checkpoint (default: core kind and run name)")
    p.add_argument("--num-trials", "--num_trials", dest="num_trials", type=int, default=100,
                   help="trials (episodes for a bandit without trials) per checkpoint and game")
    p.add_argument("--out", default="adaptation", help="output directory for the PNG and CSV files")
    _add_target_options(p, greedy_default=False)


@command("adaptation", "return per episode within trials (and bandit regret vs Thompson sampling and UCB1)",
         _configure_adaptation)
def cmd_adaptation(args: argparse.Namespace) -> int:
    from srwm_rl.eval.analysis import (RegretCollector, bandit_regret_curves, plot_adaptation, plot_regret,
                           write_adaptation_csv, write_regret_csv)
    from srwm_rl.eval.evaluate import adaptation_curve
    _check_counts(num_trials=args.num_trials, num_envs=args.num_envs)
    if args.labels and len(args.labels) != len(args.targets):
        raise UsageError(f"--labels: {len(args.labels)} labels for {len(args.targets)} checkpoints")
    agents = [load(t, args.device, args.threads) for t in args.targets]       # every checkpoint checked before any rollout
    labels = args.labels or [f"{a[0].core.kind} ({run_dir_of(t).name})" for t, a in zip(args.targets, agents)]
    ids = {a[0].env.id for a in agents}
    if len(ids) > 1 and not args.games:
        print(f"warning: the checkpoints were trained on different environments {sorted(ids)}")
    is_bandit = all("Bandit" in a[0].env.id for a in agents)
    curves, regrets = {}, {}
    for label, target, agent in zip(labels, args.targets, agents):
        if not is_bandit and not (args.trial_episodes if args.trial_episodes is not None else agent[0].env.trial_episodes):
            raise UsageError(f"{target} was trained without trials; pass --trial-episodes K (K >= 2)")
        collector = RegretCollector() if is_bandit else None
        records, summary = _evaluate(target, agent, args, args.num_trials, on_step=collector)
        curves[label] = adaptation_curve(records)
        if collector is not None:
            regrets[label] = collector.results
        lv = summary["levels"]
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: {e}") from None
    where = f"task split {lv.get('task_split')}" if "task_split" in lv else \
        f"levels {lv['start_level']}+{lv['num_levels']}"
    png = plot_adaptation(out / "adaptation.png", curves, title=f"{agents[0][0].env.id}, {where}")
    csv_path = write_adaptation_csv(out / "adaptation.csv", curves)
    print(f"mean return per episode within the trial ({where}, 95% CI):")
    for label, rows in curves.items():
        print(f"  {label:30s} " + "  ".join(f"{_fmt(r['mean'])} [{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}]"
                                             for r in rows))
    print(f"plot: {png}\ncsv : {csv_path}")
    if is_bandit:
        arms = int(agents[0][1].action_space.n)
        rc = bandit_regret_curves(regrets, arms, seed=args.seed)
        png, csv_path = plot_regret(out / "regret.png", rc, title=agents[0][0].env.id), write_regret_csv(out / "regret.csv", rc)
        print("cumulative regret at the last pull (95% CI):")
        for label, rows in rc.items():
            r = rows[-1]
            print(f"  {label:30s} {_fmt(r['mean'])} [{_fmt(r['ci95'][0])}, {_fmt(r['ci95'][1])}]  ({r['n']} runs)")
        print(f"plot: {png}\ncsv : {csv_path}")
    return 0


# ---- compare -----------------------------------------------------------------------------------------

def _configure_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--metric", default="episode_return", help="column of metrics.csv to plot")
    p.add_argument("--out", default="compare.png", help="PNG file (a CSV of the curves is written beside it)")


@command("compare", "learning curves of several runs on one plot (mean and spread over seeds)", _configure_compare)
def cmd_compare(args: argparse.Namespace) -> int:
    import csv
    from srwm_rl.eval.analysis import aggregate, group_runs, plot_compare, read_run
    try:
        runs = [read_run(d, args.metric) for d in args.run_dirs]
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from None
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    groups = group_runs(runs)
    png = plot_compare(out, groups, args.metric)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "runs", "global_step", "mean", "std"])
        print(f"{'group':40s} {'runs':>4} {'steps':>12} {'final ' + args.metric:>22}")
        for label, members in groups.items():
            a = aggregate(members)
            for s, m, sd in zip(a["steps"], a["mean"], a["std"]):
                w.writerow([label, a["n"], int(s), m, sd])
            spread = f" ± {a['std'][-1]:.2f}" if a["n"] > 1 else ""
            print(f"{label:40s} {a['n']:>4} {int(a['steps'][-1]):>12,} {a['mean'][-1]:>14.2f}{spread}")
    print(f"plot: {png}\ncsv : {out.with_suffix('.csv')}")
    return 0
