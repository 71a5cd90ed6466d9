"""``srwm-rl adaptation`` (return per episode within trials, bandit regret against classic algorithms)
and ``srwm-rl compare`` (learning curves of several runs, mean and spread over seeds)."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

import envs
from srwm_rl.app.command import OWN_DEFAULT, UsageError, check_counts, parse, run_dir_of
from srwm_rl.app.evaluate import Levels, Omit, Rollout, fmt, load, run_evaluation


@dataclass(frozen=True)
class AdaptationArgs:
    """Return per episode within trials (and bandit regret vs Thompson sampling and UCB1)."""

    targets: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR_OR_CHECKPOINT")]
    """Run directories or checkpoint files, one curve each."""
    labels: Annotated[tuple[str, ...], OWN_DEFAULT] = ()
    """One label per checkpoint (default: core kind and run name)."""
    num_trials: int = 100
    """Trials (episodes for a bandit without trials) per checkpoint and game."""
    out: str = "adaptation"
    """Output directory for the PNG and CSV files."""
    greedy: Annotated[Annotated[bool, tyro.conf.FlagCreatePairsOff], OWN_DEFAULT] = False
    """Greedy actions (default: sampled, as in training: in-context learners explore by sampling; `evaluate` is greedy by default)."""
    untrained: bool = True
    """Also roll out an untrained policy of each configuration (same seed) and draw it dashed: the level learning started from (its actions are near uniform)."""
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
    mode = "greedy" if args.greedy else "sampled"
    warn_single_seeds({lab: a.config for lab, a in zip(labels, agents)})
    curves, regrets, references = {}, {}, {}
    for label, target, agent in zip(labels, args.targets, agents):
        trials = lv.trial_episodes if lv.trial_episodes is not None else agent.config.env.trial_episodes
        if not bandit and not trials:
            raise UsageError(f"{target} was trained without trials; pass --trial-episodes K (K >= 2)")
        collector = RegretCollector() if bandit else None
        records, summary = run_evaluation(target, agent, lv, ro, args.num_trials, greedy=args.greedy,
                                          on_step=collector)
        curves[label] = adaptation_curve(records)
        if args.untrained:
            ref = untrained_agent(agent)
            key = f"untrained {agent.config.core.kind}"
            if key not in references:
                references[key] = adaptation_curve(run_evaluation(target, ref, lv, ro, args.num_trials,
                                                                  greedy=args.greedy)[0])
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
    png = plot_adaptation(out / "adaptation.png", curves, title=f"{agents[0].config.env.id}, {where}, {mode} actions",
                          references=references, ylabel="mean return per episode (env's own units)")
    csv_path = write_adaptation_csv(out / "adaptation.csv", {**curves, **references})
    print(f"mean return per episode within the trial ({where}, {mode} actions, 95% CI over trials):")
    width = max(30, *(len(k) for k in [*curves, *references]))
    for label, rows in {**curves, **references}.items():
        print(f"  {label:{width}s} " + "  ".join(f"{fmt(r['mean'])} [{fmt(r['ci95'][0])}, {fmt(r['ci95'][1])}]"
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


def untrained_agent(agent):
    """The agent's configuration with freshly initialised weights (seeded with the run's seed)."""
    import dataclasses

    import torch

    from srwm_rl.run.agent import build_policy
    torch.manual_seed(agent.config.seed)
    p = agent.policy
    fresh = build_policy(agent.config, p.obs_space, p.action_space, next(p.parameters()).device)
    return dataclasses.replace(agent, policy=fresh)


def warn_single_seeds(configs: dict) -> None:
    """Warn about checkpoints whose configuration no other checkpoint shares up to the seed: their
    confidence intervals cover trials of one run, not the spread between training seeds."""
    from srwm_rl.eval.analysis import group_runs
    from srwm_rl.run.config import to_dict
    runs = [{"run_dir": label, "config": to_dict(c)} for label, c in configs.items()]
    groups = group_runs(runs)
    single = [m[0]["run_dir"] for m in groups.values() if len(m) == 1]
    if single:
        print(f"warning: one training seed for {', '.join(single)}: the 95% CIs are over trials of that one "
              f"run, not over training seeds (pass runs of >= 3 seeds to compare configurations)")


@dataclass(frozen=True)
class CompareArgs:
    """Learning curves of several runs on one plot (mean and spread over seeds)."""

    run_dirs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """Run directories; runs that differ only in seed form one group."""
    metric: str = "episode_return"
    """Column of metrics.csv to plot."""
    out: str = "compare.png"
    """PNG file (a CSV of the curves is written beside it)."""
    final_window: int = 10
    """The table's final value of a run: the mean of its last this many logged values."""


def compare_main(argv: list[str], prog: str) -> int:
    from srwm_rl.eval.analysis import aggregate, final_values, group_runs, plot_compare, read_run
    args = parse(CompareArgs, argv, prog)
    check_counts(final_window=args.final_window)
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
        width = max(20, *(len(k) for k in groups))
        head = f"final {args.metric} (mean of last {args.final_window} logs)"
        print(f"{'group':{width}s} {'runs':>4} {'steps':>12}  {head}")
        for label, members in groups.items():
            a = aggregate(members)
            for s, m, sd in zip(a["steps"], a["mean"], a["std"]):
                w.writerow([label, a["n"], int(s), m, sd])
            finals = final_values(members, args.final_window)
            spread = f" ± {finals.std(ddof=1):.2f} (std over runs)" if len(finals) > 1 else ""
            print(f"{label:{width}s} {a['n']:>4} {int(min(r['steps'][-1] for r in members)):>12,}  "
                  f"{finals.mean():.2f}{spread}")
    single = [label for label, members in groups.items() if len(members) == 1]
    if single:
        print(f"warning: one run (seed) in {', '.join(single)}: no spread over seeds")
    print(f"plot: {png}\ncsv : {out.with_suffix('.csv')}")
    return 0
