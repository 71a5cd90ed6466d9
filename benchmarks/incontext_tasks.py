"""In-context tasks with IMPALA, SRWM vs LSTM: train x seeds at one env-step budget, then evaluate every
final checkpoint on held-out tasks (test split) and on training tasks (train split).

    .venv/bin/python benchmarks/incontext_tasks.py --tasks bandit --seeds 1 2 3 --budget 1000000 --json ic.jsonl
    .venv/bin/python benchmarks/incontext_tasks.py --tasks darkroom --seeds 1 2 3 --budget 1000000 --json ic.jsonl
    .venv/bin/python benchmarks/incontext_tasks.py --tasks bandit --cores srwm --extra "--core.norm pre" --tag norm-pre
    .venv/bin/python benchmarks/incontext_tasks.py --summary ic.jsonl          # the tables of earlier runs

Each run is the real command line, ``srwm-rl train --preset TASK --algo impala --core.kind CORE --seed S
--total_steps BUDGET`` (the preset's ``impala`` section: every core at the same budget and at its rate in
``LEARNING_RATES``, which is the preset's rate for both measured cores), in a fresh process, one at a time.
A run directory that already holds a finished run (``done``) is not trained again, so the script resumes.
Evaluation: ``--trials`` trials per split, seed 12345, greedy actions and (``--sample``) sampled ones.
Reported, as means over seeds with t-based 95% CIs (srwm_rl.eval.stats.mean_ci): the training mean return
at the end, the return per bandit (100 pulls) or per episode of the trial (first -> last) on held-out and
on training tasks, and for trials the ratios last/first (held-out) and held-out last / training last (ratios
of the means over seeds).

Run it alone (``nice``): time-based numbers depend on the machine's load, learning numbers on env steps.
"""
from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srwm_rl.app.presets import learning_rate_for  # noqa: E402
from srwm_rl.eval.stats import mean_ci  # noqa: E402

CLI = str(Path(sys.executable).parent / "srwm-rl")


def train(task: str, core: str, seed: int, budget: int, run_dir: Path, extra: str = "") -> dict:
    """Train one run through the CLI unless ``run_dir`` holds a finished one; its wall time and last metrics."""
    t0 = time.time()
    if not (run_dir / "done").exists():
        cmd = [CLI, "train", "--preset", task, "--algo", "impala", "--core.kind", core, "--seed", str(seed),
               "--total_steps", str(budget), "--run_dir", str(run_dir), "--no-progress", "--overwrite"]
        lr = learning_rate_for("impala", core)
        if lr is not None:
            cmd += ["--impala.learning_rate", str(lr)]
        cmd += shlex.split(extra)
        print("$", shlex.join(cmd), flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{task} {core} seed {seed}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        (run_dir / "done").write_text(f"{time.time() - t0:.1f}\n")
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    ret = [r for r in rows if r.get("episode_return")]
    return {"final_steps": int(rows[-1]["global_step"]), "train_return": float(ret[-1]["episode_return"]),
            "train_wall_s": round(float(rows[-1]["time"]) - float(rows[0]["time"]), 1),  # first to last update
            "sps": float(rows[-1]["sps"])}


def evaluate_split(run_dir: Path, split: str, trials: int, sample: bool) -> dict:
    """Mean return per episode (bandit: per 100 pulls) and, for trials, per episode of the trial."""
    import torch

    from srwm_rl.eval.evaluate import evaluate
    torch.set_num_threads(1)  # small models on a shared CPU: one thread is fastest and leaves the other core alone
    t0 = time.time()
    _, summary = evaluate(str(run_dir), split=split, num_episodes=trials, deterministic=not sample, seed=12345)
    out = {"return": summary["return"]["mean"], "eval_s": round(time.time() - t0, 1)}
    if summary.get("adaptation"):
        out["per_episode"] = [a["mean"] for a in summary["adaptation"]]
        out["trial_return"] = summary["trial_return"]["mean"]
    return out


def fmt(values: list[float], digits: int = 1) -> str:
    ci = mean_ci(values)
    if ci["n"] < 2:
        return f"{ci['mean']:.{digits}f}"
    lo, hi = ci["ci95"]
    return f"{ci['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def summarize(results: list[dict]) -> str:
    """Markdown tables, one per task and action mode: a row per core, means over seeds with 95% CIs."""
    out = []
    for task, mode in dict.fromkeys((r["task"], r["mode"]) for r in results):
        rs = [r for r in results if r["task"] == task and r["mode"] == mode]
        trials = "per_episode" in rs[0]["test"]
        out.append(f"\n{task}, {mode} actions, budget {rs[0]['budget']:,} env steps, {rs[0]['trials']} trials per split")
        if trials:
            out += ["| core | seeds | training mean (end) | held-out per episode, first -> last | training goals, "
                    "first -> last | held-out last / first (of means) | held-out last / training last (of means) |",
                    "|---|---|---|---|---|---|---|"]
        else:
            out += ["| core | seeds | training mean (end) | held-out return | training-task return | wall s / run |",
                    "|---|---|---|---|---|---|"]
        for core in dict.fromkeys(r["core"] for r in rs):
            cr = [r for r in rs if r["core"] == core]
            seeds = ",".join(str(r["seed"]) for r in cr)
            if trials:
                k = len(cr[0]["test"]["per_episode"])
                curve = {s: " -> ".join(fmt([r[s]["per_episode"][i] for r in cr], 2) for i in (0, k - 1))
                         for s in ("test", "train")}
                # Ratios of the means over seeds (a per-seed ratio explodes where a first episode scores ~0).
                mean = {(s, i): mean_ci([r[s]["per_episode"][i] for r in cr])["mean"] for s in ("test", "train")
                        for i in (0, -1)}
                ratio = f"{mean['test', -1] / mean['test', 0]:.2f}" if mean["test", 0] > 0 else "n/a (first 0)"
                gap = f"{mean['test', -1] / mean['train', -1]:.2f}" if mean["train", -1] > 0 else "n/a (training 0)"
                out.append(f"| {core} | {seeds} | {fmt([r['train_return'] for r in cr])} | {curve['test']} | "
                           f"{curve['train']} | {ratio} | {gap} |")
            else:
                out.append(f"| {core} | {seeds} | {fmt([r['train_return'] for r in cr])} | "
                           f"{fmt([r['test']['return'] for r in cr])} | {fmt([r['train']['return'] for r in cr])} | "
                           f"{fmt([r['train_wall_s'] for r in cr], 0)} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["bandit", "darkroom"])
    ap.add_argument("--cores", nargs="+", default=["srwm", "lstm"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--budget", type=int, default=1_000_000, help="env steps per run, equal for every core")
    ap.add_argument("--trials", type=int, default=200, help="evaluation trials per split")
    ap.add_argument("--sample", action="store_true", help="also evaluate with sampled actions")
    ap.add_argument("--runs", default="runs/incontext", help="root of the run directories")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    ap.add_argument("--summary", help="print the tables of a JSON-lines file and exit")
    ap.add_argument("--extra", default="", help="more `srwm-rl train` flags for every run (a variant)")
    ap.add_argument("--tag", default="", help="names the variant of --extra: core label CORE+TAG, run dirs too")
    args = ap.parse_args()
    if args.summary:
        print(summarize([json.loads(line) for line in open(args.summary) if line.strip()]))
        return
    results = []
    for task in args.tasks:
        for seed in args.seeds:
            for core in args.cores:
                label = f"{core}+{args.tag}" if args.tag else core
                run_dir = Path(args.runs) / f"{task}-{label}-s{seed}"
                info = train(task, core, seed, args.budget, run_dir, args.extra)
                for mode in ["greedy"] + (["sampled"] if args.sample else []):
                    rec = {"task": task, "core": label, "extra": args.extra, "seed": seed, "budget": args.budget,
                           "trials": args.trials,
                           "mode": mode, "run_dir": str(run_dir), **info,
                           **{s: evaluate_split(run_dir, s, args.trials, mode == "sampled") for s in ("test", "train")}}
                    print(json.dumps(rec), flush=True)
                    results.append(rec)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(rec) + "\n")
    print(summarize(results))


if __name__ == "__main__":
    main()
