"""``srwm-rl fewshot-eval`` (accuracy by shot index of few-shot runs, compared), and ``srwm-rl evaluate``
on a run of a supervised learner."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from agents.fewshot import ALGORITHM as FEWSHOT
from envs.fewshot.sources import SOURCES
from srwm_rl.app.command import OWN_DEFAULT, UsageError, parse, run_dir_of
from srwm_rl.eval.fewshot import format_table, write_results
from srwm_rl.run.checkpoint import CheckpointError


@dataclass(frozen=True)
class FewshotEvalArgs:
    """Accuracy by shot index of few-shot runs on held-out classes and real digits, with 95% CIs and a plot
    comparing the runs."""

    run_dirs: Annotated[tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """Few-shot runs (srwm-rl train --algo fewshot)."""
    out: Annotated[Optional[str], OWN_DEFAULT] = None
    """Output directory (default: the single run, or runs/fewshot_eval)."""
    tasks: int = 500
    """Held-out tasks per source."""
    sources: tuple[str, ...] = ("glyphs", "digits")
    """glyphs (held-out TEST classes) and/or digits (the real scikit-learn 8x8 digits)."""
    checkpoint: Literal["best", "latest"] = "best"
    """Which checkpoint of each run."""
    shots: Annotated[Optional[int], OWN_DEFAULT] = None
    """K for evaluation (default: the run's)."""
    queries: Annotated[Optional[int], OWN_DEFAULT] = None
    """Queries per class (default: the run's)."""
    seed: int = 0
    """Seed of the evaluation tasks (same seed = same tasks)."""


def fewshot_eval_main(argv: list[str], prog: str) -> int:
    args = parse(FewshotEvalArgs, argv, prog)
    if not args.run_dirs:
        raise UsageError("give at least one RUN_DIR")
    if args.tasks < 1:
        raise UsageError(f"--tasks={args.tasks}: must be >= 1")
    for name, v, lo in (("--shots", args.shots, 1), ("--queries", args.queries, 0)):
        if v is not None and v < lo:
            raise UsageError(f"{name}={v}: must be >= {lo}")
    bad = [s for s in args.sources if s not in SOURCES]
    if bad:
        raise UsageError(f"--sources {' '.join(bad)}: unknown class source; allowed: {', '.join(SOURCES)}")
    for d in args.run_dirs:
        if not Path(d).exists():
            raise UsageError(f"{d} does not exist (expected a few-shot run directory)")
    out = args.out or (args.run_dirs[0] if len(args.run_dirs) == 1 else "runs/fewshot_eval")
    try:
        results = [FEWSHOT.evaluate(d, sources=args.sources, num_tasks=args.tasks, seed=args.seed,
                                    checkpoint=args.checkpoint, num_shots=args.shots, num_queries=args.queries)
                   for d in args.run_dirs]
    except (CheckpointError, ValueError, ImportError) as e:
        raise UsageError(str(e)) from None
    spec = results[0]
    write_results(results, out, f"{spec['num_ways']}-way {spec['num_shots']}-shot, {args.tasks} tasks per source")
    print(format_table(results))
    print(f"\nwritten: {Path(out) / 'fewshot_eval.json'}, fewshot_eval.csv, fewshot_eval.png")
    return 0


def evaluate_supervised(algorithm, args) -> int:
    """``srwm-rl evaluate`` on a supervised learner's run: --num-episodes tasks per source, --split classes."""
    import torch
    if args.rollout.threads:
        torch.set_num_threads(args.rollout.threads)
    run_dir, split = run_dir_of(args.target), args.levels.split or "test"
    out = Path(args.out) if args.out else run_dir / "eval" / f"fewshot-{split}-s{args.rollout.seed}"
    try:
        result = algorithm.evaluate(args.target, num_tasks=args.num_episodes, seed=args.rollout.seed,
                                    device=args.rollout.device, split=split)
    except (CheckpointError, ValueError, ImportError) as e:
        raise UsageError(str(e)) from None
    result["label"] = result["core"]
    write_results([result], out, f"{run_dir.name}: {split} classes")
    print(f"{run_dir}  (few-shot learner, {result['core']} core, {result['global_step']} examples) on "
          f"{split} classes, {args.num_episodes} tasks per source")
    print(format_table([result]))
    print(f"\nwritten: {out / 'fewshot_eval.json'}, {out / 'fewshot_eval.png'}")
    return 0
