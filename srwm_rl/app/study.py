"""``srwm-rl study``: a grid of cores x tasks x seeds at an equal budget in environment steps, every final
checkpoint evaluated on held-out tasks, and a report.

    srwm-rl study --quick                        # the default grid at small budgets (~15 min on 2 cores)
    srwm-rl study --cores srwm lstm --tasks bandit darkroom --seeds 5 --jobs 2

    OUT/cells/<task>-<core>-s<seed>/   one cell each (srwm_rl/app/study_cells.py): a run directory and its results
    OUT/report/summary.md              the tables; results.csv (every number of every cell), summary.csv
                                       (means and 95% CIs over seeds, baselines), adaptation-, learning-,
                                       regret-<task>.png

Rerunning the same command skips finished cells and resumes unfinished ones from their checkpoint;
a study stopped with Ctrl-C (or SIGTERM) checkpoints its running cells first. Tasks are
``srwm_rl.app.study_tasks.STUDY_TASKS``; executors ``srwm_rl.app.study_exec.EXECUTORS``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Optional

import tyro

from srwm_rl.app.command import OWN_DEFAULT, UsageError, check_counts, parse
from srwm_rl.app.study_cells import (BUSY, CURVE_METRIC, UNIT, CellSpec, build_config, evaluator_of, is_finished,
                                    read_json,
                                    write_json)
from srwm_rl.app import study_ray  # noqa: F401 - registers --executor ray
from srwm_rl.app.study_exec import EXECUTORS
from srwm_rl.app.study_tasks import DEFAULT_CORES, DEFAULT_TASKS, STUDY_TASKS, budget, trials

Flag = Annotated[bool, tyro.conf.FlagCreatePairsOff]


@dataclass(frozen=True)
class StudyArgs:
    """Train every core on every task with several seeds at an equal budget in env steps, evaluate every
    final checkpoint on held-out tasks with the same number of trials, and write a report."""

    cores: tuple[str, ...] = DEFAULT_CORES
    """Core kinds (none = feed-forward)."""
    tasks: Annotated[tuple[str, ...], tyro.conf.arg(help="Study tasks (srwm_rl/app/study_tasks.py): "
                                                         + ", ".join(STUDY_TASKS) + ".")] = DEFAULT_TASKS
    seeds: int = 3
    """Seeds per core and task (seeds first_seed, first_seed + 1, ...)."""
    first_seed: int = 1
    """The first seed."""
    quick: Flag = False
    """Small budgets (each task's quick_steps and quick_eval_trials)."""
    steps: Annotated[Optional[int], OWN_DEFAULT] = None
    """Env steps per cell for every task (default: each task's budget)."""
    eval_trials: Annotated[Optional[int], OWN_DEFAULT] = None
    """Evaluation trials per cell and split for every task (default: each task's)."""
    jobs: int = 0
    """Cells run at once (0 = one per CPU core)."""
    executor: Annotated[str, tyro.conf.arg(help="How cells are run: " + ", ".join(EXECUTORS) + ".")] = "local"
    out: Annotated[Optional[str], OWN_DEFAULT] = None
    """Study directory (default: runs/study, or runs/study-quick with --quick)."""
    report_only: Flag = False
    """Write the report from the finished cells without running any."""


def expand_grid(args: StudyArgs) -> list[CellSpec]:
    """Every cell, seed-major (all cores and tasks of the first seed first, so an early stop leaves
    comparable cells)."""
    return [CellSpec(task=t, core=c, seed=s, total_steps=budget(STUDY_TASKS[t], args.quick, args.steps),
                     eval_trials=trials(STUDY_TASKS[t], args.quick, args.eval_trials), greedy=STUDY_TASKS[t].greedy)
            for s in range(args.first_seed, args.first_seed + args.seeds) for t in args.tasks for c in args.cores]


def validate(args: StudyArgs) -> None:
    """UsageError naming the first bad option; nothing has run yet."""
    from agents.registry import ALGORITHMS
    from srwm_rl.app.presets import PRESETS
    from srwm_rl.nn.cores import CORES
    check_counts(seeds=args.seeds, steps=args.steps, eval_trials=args.eval_trials)
    for name, values, known in (("--cores", args.cores, CORES), ("--tasks", args.tasks, STUDY_TASKS)):
        if not values:
            raise UsageError(f"{name}: give at least one; allowed: {', '.join(sorted(known))}")
        bad = [v for v in values if v not in known]
        if bad:
            raise UsageError(f"{name} {' '.join(bad)}: unknown; allowed: {', '.join(sorted(known))}")
        if len(set(values)) != len(values):
            raise UsageError(f"{name} {' '.join(values)}: a value is repeated")
    for t in args.tasks:
        if STUDY_TASKS[t].preset not in PRESETS:
            raise UsageError(f"--tasks {t}: its preset {STUDY_TASKS[t].preset!r} is unknown; "
                             f"presets: {', '.join(PRESETS)}")
    if args.first_seed < 0:
        raise UsageError(f"--first-seed={args.first_seed}: must be >= 0")
    if args.jobs < 0:
        raise UsageError(f"--jobs={args.jobs}: must be >= 0 (0 = one per CPU core)")
    if args.executor not in EXECUTORS:
        raise UsageError(f"--executor {args.executor!r}: unknown; allowed: {', '.join(EXECUTORS)}")
    for t in args.tasks:                     # every (task, core) config is built and probed once
        for c in args.cores:
            spec = CellSpec(t, c, args.first_seed, budget(STUDY_TASKS[t], args.quick, args.steps), 1, False)
            try:
                cfg = build_config(spec)
                errs = cfg.validate()
                if errs:
                    raise ValueError("; ".join(errs))
                ALGORITHMS[cfg.algo].probe(cfg)
            except (ValueError, KeyError, ImportError) as e:
                raise UsageError(f"--tasks {t} with --cores {c}: {e}") from None


def prepare_cells(out: Path, cells: list[CellSpec], write: bool) -> dict[CellSpec, Path]:
    """The directory of each cell; a cell started earlier with another spec is a UsageError."""
    dirs = {}
    for spec in cells:
        d = out / "cells" / spec.name
        old = read_json(d / "cell.json")
        if old is not None and old != asdict(spec):
            diff = ", ".join(f"{k}={old.get(k)!r} (now {v!r})" for k, v in asdict(spec).items() if old.get(k) != v)
            raise UsageError(f"--out {out}: cell {spec.name} was started with {diff}; rerun with the same options "
                             f"or choose another --out")
        if write and old is None:
            d.mkdir(parents=True, exist_ok=True)
            write_json(d / "cell.json", asdict(spec))
        dirs[spec] = d
    return dirs


def collect(dirs: dict[CellSpec, Path]) -> list[dict]:
    """The rows of every finished cell, with task, core and seed."""
    rows = []
    for spec, d in dirs.items():
        if is_finished(d, spec):
            for split, metric, index, value in read_json(d / "result.json")["rows"]:
                rows.append({"task": spec.task, "core": spec.core, "seed": spec.seed, "split": split,
                             "metric": metric, "index": float(index), "value": float(value)})
    return rows


def task_meta(args: StudyArgs) -> dict[str, dict]:
    """What the report says of each task: preset, algorithm, budget and its unit, trials, protocol."""
    meta = {}
    for t in args.tasks:
        task = STUDY_TASKS[t]
        cfg = build_config(CellSpec(t, args.cores[0], args.first_seed, 1, 1, False))
        kind = evaluator_of(cfg)
        meta[t] = {"preset": task.preset, "algo": cfg.algo, "unit": UNIT[kind], "curve_metric": CURVE_METRIC[kind],
                   "note": task.note,
                   "steps": budget(task, args.quick, args.steps), "trials": trials(task, args.quick, args.eval_trials),
                   "learning_rates": dict(task.learning_rates), "score": task.score,
                   "baselines": list(task.baselines)}
    return meta


def study_main(argv: list[str], prog: str) -> int:
    args = parse(StudyArgs, argv, prog)
    validate(args)
    out = Path(args.out or ("runs/study-quick" if args.quick else "runs/study"))
    cells = expand_grid(args)
    dirs = prepare_cells(out, cells, write=not args.report_only)
    pending = [s for s in cells if not is_finished(dirs[s], s)]
    print(f"study {out}: {len(cells)} cells ({len(args.cores)} cores x {len(args.tasks)} tasks x {args.seeds} seeds), "
          f"{len(cells) - len(pending)} finished, {len(pending)} to run")
    t0, statuses = time.time(), {}
    if pending and not args.report_only:
        jobs = args.jobs or os.cpu_count() or 1
        executor = EXECUTORS[args.executor](jobs)
        names = {dirs[s]: s.name for s in pending}

        def on_done(cell_dir: Path, status: int, seconds: float) -> None:
            what = {0: "done", BUSY: "running in another process"}.get(
                status, "stopped" if status > 128 else f"FAILED (see {cell_dir / 'log.txt'})")
            print(f"  {names[cell_dir]:32s} {what:10s} {seconds:7.0f} s", flush=True)

        statuses = executor.run([dirs[s] for s in pending], on_done)
    wall = time.time() - t0
    rows = collect(dirs)
    finished = sum(is_finished(d, s) for s, d in dirs.items())
    if not rows:
        print("no finished cell yet: no report")
        return max(statuses.values(), default=1) or 1
    from srwm_rl.eval.study_report import write_report, write_results
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    write_results(report / "results.csv", rows)
    ran = len(statuses)
    history = (read_json(out / "study.json") or {}).get("invocations", [])
    if ran:
        history.append({"command": f"{prog} {' '.join(argv)}", "cells_run": ran,
                        "cells_finished": sum(v == 0 for v in statuses.values()), "wall_seconds": round(wall, 1),
                        "jobs": args.jobs or os.cpu_count()})
    write_json(out / "study.json", {"args": asdict(args), "tasks": task_meta(args), "invocations": history})
    header = [f"Grid: cores {', '.join(args.cores)}; tasks {', '.join(args.tasks)}; seeds {args.first_seed}.."
              f"{args.first_seed + args.seeds - 1}. Cells finished: {finished} of {len(cells)}.", "",
              "Wall time of the invocations that ran cells (every cell's own time is below and in results.csv):", ""]
    header += [f"- `{h['command']}`: {h['cells_run']} cells ({h['cells_finished']} finished), {h['jobs']} at once, "
               f"{h['wall_seconds']:.0f} s" for h in history] or ["- none recorded"]
    md = write_report(report, rows, task_meta(args), header)
    print(md.read_text())
    print(f"report: {md}\nnumbers: {report / 'results.csv'}, {report / 'summary.csv'}")
    bad = [s for s in statuses.values() if s]
    return 0 if not bad else (max(bad) if any(s > 128 for s in bad) else 1)

