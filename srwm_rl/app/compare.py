"""``srwm-rl adaptation`` (return per episode within trials, bandit regret against classic algorithms)
and ``srwm-rl compare`` (learning curves of several runs, mean and spread over seeds)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

import envs
from srwm_rl.app.command import UsageError, check_counts, parse, run_dir_of
from srwm_rl.app.evaluate import Levels, Omit, Rollout, fmt, load, run_evaluation


@dataclass(frozen=True)
class AdaptationArgs:
    """Return per episode within trials (and bandit regret vs Thompson sampling and UCB1)."""

    targets: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR_OR_CHECKPOINT")]
    """Run directories or checkpoint files, one curve each."""
    labels: tuple[str, ...] = ()
    """One label per checkpoint (default: core kind and run name)."""
    num_trials: int = 100
    """Trials (episodes for a bandit without trials) per checkpoint and game."""
    out: str = "adaptation"
    """Output directory for the PNG and CSV files."""
    greedy: Annotated[bool, tyro.conf.FlagCreatePairsOff] = False
    """Greedy actions (default: sampled)."""
    levels: Annotated[Levels, Omit] = field(default_factory=Levels)
    rollout: Annotated[Rollout, Omit] = field(default_factory=Rollout)


def adaptation_main(argv: list[str], prog: str) -> int:
    from srwm_rl.eval.analysis import (RegretCollector, bandit_regret_curves, plot_adaptation, plot_regret,
                                       write_adaptation_csv, write_regret_csv)
    from srwm_rl.eval.stats import adaptation_curve
    args = parse(AdaptationArgs, argv, prog)
    lv, ro = args.levels, args.rollout
    if not args.targets:
        raise UsageError("give at least one RUN_DIR_OR_CHECKPOINT")
    check_counts(num_trials=args.num_trials, num_envs=ro.num_envs)
    if args.labels and len(args.labels) != len(args.targets):
        raise UsageError(f"--labels: {len(args.labels)} labels for {len(args.targets)} checkpoints")
    agents = [load(t, ro.device, ro.threads) for t in args.targets]       # every checkpoint checked before any rollout
    labels = args.labels or [f"{a.config.core.kind} ({run_dir_of(t).name})" for t, a in zip(args.targets, agents)]
    ids = {a.config.env.id for a in agents}
    if len(ids) > 1 and not lv.games:
        print(f"warning: the checkpoints were trained on different environments {sorted(ids)}")
    bandit = all(getattr(envs.env_class(a.config.env.id), "reports_regret", False) for a in agents)
    curves, regrets = {}, {}
    for label, target, agent in zip(labels, args.targets, agents):
        trials = lv.trial_episodes if lv.trial_episodes is not None else agent.config.env.trial_episodes
        if not bandit and not trials:
            raise UsageError(f"{target} was trained without trials; pass --trial-episodes K (K >= 2)")
        collector = RegretCollector() if bandit else None
        records, summary = run_evaluation(target, agent, lv, ro, args.num_trials, greedy=args.greedy,
                                          on_step=collector)
        curves[label] = adaptation_curve(records)
        if collector is not None:
            regrets[label] = collector.results
        desc = summary["levels"]
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {out}: {e}") from None
    where = f"task split {desc.get('task_split')}" if "task_split" in desc else \
        f"levels {desc['start_level']}+{desc['num_levels']}"
    png = plot_adaptation(out / "adaptation.png", curves, title=f"{agents[0].config.env.id}, {where}")
    csv_path = write_adaptation_csv(out / "adaptation.csv", curves)
    print(f"mean return per episode within the trial ({where}, 95% CI):")
    for label, rows in curves.items():
        print(f"  {label:30s} " + "  ".join(f"{fmt(r['mean'])} [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]"
                                             for r in rows))
    print(f"plot: {png}\ncsv : {csv_path}")
    if bandit:
        arms = int(agents[0].policy.action_space.n)
        rc = bandit_regret_curves(regrets, arms, seed=ro.seed)
        png = plot_regret(out / "regret.png", rc, title=agents[0].config.env.id)
        csv_path = write_regret_csv(out / "regret.csv", rc)
        print("cumulative regret at the last pull (95% CI):")
        for label, rows in rc.items():
            r = rows[-1]
            print(f"  {label:30s} {fmt(r['mean'])} [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]  ({r['n']} runs)")
        print(f"plot: {png}\ncsv : {csv_path}")
    return 0


@dataclass(frozen=True)
class CompareArgs:
    """Learning curves of several runs on one plot (mean and spread over seeds)."""

    run_dirs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """Run directories; runs that differ only in seed form one group."""
    metric: str = "episode_return"
    """Column of metrics.csv to plot."""
    out: str = "compare.png"
    """PNG file (a CSV of the curves is written beside it)."""


def compare_main(argv: list[str], prog: str) -> int:
    from srwm_rl.eval.analysis import aggregate, group_runs, plot_compare, read_run
    args = parse(CompareArgs, argv, prog)
    if not args.run_dirs:
        raise UsageError("give at least one RUN_DIR")
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
