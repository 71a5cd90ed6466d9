"""One cell of a study (a task x a core x a seed): its spec, its config, and running it to the end.

    CELL_DIR/cell.json     the spec (task, core, seed, budget, evaluation), written before it runs
    CELL_DIR/run/          the training run directory (config.json, metrics.csv, checkpoints/latest.pt)
    CELL_DIR/timing.json   wall time of training, summed over the segments (a resumed cell has several)
    CELL_DIR/result.json   the evaluation rows, written last and atomically: the cell is finished when
                           run/checkpoints/latest.pt and result.json exist and result.json's spec is cell.json's

A cell runs in its own process (``python -m srwm_rl.app.study_cells CELL_DIR``, see
``srwm_rl.app.study_exec``): it trains, or resumes from run/checkpoints/latest.pt when an earlier
process was stopped, then evaluates the final checkpoint on held-out tasks and on training tasks with
the same number of trials. Rows are ``(split, metric, index, value)``; the study adds task, core, seed.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from agents.registry import ALGORITHMS, TrainConfig
from srwm_rl.app.presets import get_preset
from srwm_rl.app.study_tasks import STUDY_TASKS
from srwm_rl.run.config import from_dict, merge, to_dict

Row = tuple[str, str, float, float]          # split, metric, index, value
CURVE_POINTS = 60                            # learning-curve points kept per cell in the results


@dataclass(frozen=True)
class CellSpec:
    """What a cell is; two runs of a study agree on a cell only if its spec is the same."""

    task: str
    core: str
    seed: int
    total_steps: int
    eval_trials: int
    greedy: bool
    eval_seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.task}-{self.core}-s{self.seed}"


def build_config(spec: CellSpec, run_dir: str | Path = "") -> TrainConfig:
    """The cell's training config: defaults < the task's preset < its overrides < core, seed, budget,
    one torch thread, the CPU, and the core's learning rate from the task's table. ValueError names a
    bad option."""
    task = STUDY_TASKS[spec.task]
    data = merge(merge(to_dict(TrainConfig()), get_preset(task.preset)), dict(task.overrides))
    data = merge(data, {"core": {"kind": spec.core}, "seed": spec.seed, "total_steps": spec.total_steps,
                        "torch_threads": 1, "device": "cpu", "run_dir": str(run_dir)})
    if spec.core in task.learning_rates:
        section = ALGORITHMS[data["algo"]].section
        data = merge(data, {section: {"learning_rate": float(task.learning_rates[spec.core])}})
    return from_dict(TrainConfig, data)


def learning_rate(cfg: TrainConfig) -> float:
    return float(getattr(getattr(cfg, ALGORITHMS[cfg.algo].section), "learning_rate", math.nan))


# ---- finished or not --------------------------------------------------------------------------------

def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_finished(cell_dir: Path, spec: CellSpec) -> bool:
    """The final checkpoint and the evaluation of this very spec are there."""
    result = read_json(cell_dir / "result.json")
    return ((cell_dir / "run" / "checkpoints" / "latest.pt").exists() and isinstance(result, dict)
            and result.get("spec") == asdict(spec))


def write_json(path: Path, data: Any) -> None:
    from srwm_rl.run.runlog import write_json as atomic
    atomic(path, data)


# ---- evaluation ---------------------------------------------------------------------------------------

def evaluate_rollouts(spec: CellSpec, checkpoint: Path) -> list[Row]:
    """Held-out ("test") and training tasks: mean return per episode of the trial and per trial; for
    bandits the mean cumulative regret per pull and the held-out task ids (for the baselines)."""
    import envs
    from srwm_rl.app.evaluate import load
    from srwm_rl.eval.analysis import RegretCollector
    from srwm_rl.eval.evaluate import evaluate
    from srwm_rl.eval.stats import adaptation_curve
    import numpy as np
    agent = load(str(checkpoint), "cpu", 1)
    bandit = bool(getattr(envs.env_class(agent.config.env.id), "reports_regret", False))
    rows: list[Row] = []
    for split in ("test", "train"):
        collector = RegretCollector() if bandit else None
        records, _ = evaluate(checkpoint, agent=agent, split=split, num_episodes=spec.eval_trials,
                              deterministic=spec.greedy, seed=spec.eval_seed, num_envs=min(spec.eval_trials, 32),
                              on_step=collector)
        for r in adaptation_curve(records):
            rows.append((split, "return", r["episode_in_trial"] + 1, r["mean"]))
        totals: dict[int, float] = {}
        for r in records:
            totals[r.trial] = totals.get(r.trial, 0.0) + r.ret
        rows.append((split, "trial_return", 0, float(np.mean(list(totals.values())))))
        if collector is not None:
            per_pull = np.stack([r for _, r in collector.results])
            rows += [(split, "cumulative_regret", t + 1, float(v))
                     for t, v in enumerate(np.cumsum(per_pull, 1).mean(0))]
            if split == "test":
                rows += [(split, "task_id", j, float(t)) for j, (t, _) in enumerate(collector.results)]
                rows.append((split, "num_arms", 0, float(agent.policy.action_space.n)))
    last = max(i for s, m, i, _ in rows if s == "test" and m == "return")
    rows.append(("test", "score", 0, next(v for s, m, i, v in rows if s == "test" and m == "return" and i == last)))
    return rows


def evaluate_supervised(spec: CellSpec, checkpoint: Path) -> list[Row]:
    """Few-shot learners: accuracy by shot index on held-out glyph classes, training classes and the
    real digits; the score is the held-out query accuracy (accuracy where there are no queries)."""
    from srwm_rl.eval.fewshot import shot_accuracy
    algorithm = ALGORITHMS["fewshot"]
    run_dir = checkpoint.parent.parent
    rows: list[Row] = []
    for split, sources in (("test", ("glyphs", "digits")), ("train", ("glyphs",))):
        res = algorithm.evaluate(run_dir, sources=sources, num_tasks=spec.eval_trials, seed=spec.eval_seed,
                                 checkpoint="latest", split=split)
        for source, s in res["sources"].items():
            where = split if source == "glyphs" else source
            for shot in sorted({r["shot"] for r in s["by_shot"]}):
                rows.append((where, "accuracy", shot, shot_accuracy(s, shot)))
            rows.append((where, "query_accuracy", 0, s.get("query_accuracy", s["accuracy"])))
    rows.append(("test", "score", 0, next(v for s, m, i, v in rows if s == "test" and m == "query_accuracy")))
    return rows


# How an algorithm's final checkpoint is evaluated: rolled out, or its own supervised evaluation.
EVALUATORS: dict[str, Callable[[CellSpec, Path], list[Row]]] = {
    "rollout": evaluate_rollouts, "supervised": evaluate_supervised}


def evaluator_of(cfg: TrainConfig) -> str:
    return "supervised" if ALGORITHMS[cfg.algo].evaluate is not None else "rollout"


def learning_curve(run_dir: Path, metric: str, points: int = CURVE_POINTS) -> list[Row]:
    """At most ``points`` (global_step, value) rows of metrics.csv's ``metric``, evenly spaced."""
    if not (run_dir / "metrics.csv").exists():
        return []
    with open(run_dir / "metrics.csv", newline="") as f:
        pts = [(float(r["global_step"]), float(r[metric])) for r in csv.DictReader(f) if r.get(metric) not in (None, "")]
    if len(pts) > points:
        keep = sorted({round(i * (len(pts) - 1) / (points - 1)) for i in range(points)})
        pts = [pts[i] for i in keep]
    return [("train", "learning_curve", s, v) for s, v in pts if math.isfinite(v)]


CURVE_METRIC = {"rollout": "episode_return", "supervised": "accuracy"}
UNIT = {"rollout": "env steps", "supervised": "examples"}


# ---- running one cell ---------------------------------------------------------------------------------

BUSY = 75        # exit status of a cell whose directory another process holds (EX_TEMPFAIL)


def run_cell(cell_dir: str | Path) -> dict[str, Any]:
    """Train (or resume) and evaluate the cell in ``cell_dir`` (its cell.json); returns result.json's
    content, ``{"interrupted": signal}`` when training was stopped (its checkpoint is kept), or
    ``{"busy": True}`` when another process is running this cell (CELL_DIR/.lock)."""
    import fcntl
    cell_dir = Path(cell_dir)
    with open(cell_dir / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return {"busy": True}
        return _run_cell(cell_dir)


def _run_cell(cell_dir: Path) -> dict[str, Any]:
    from agents.registry import train
    from srwm_rl.run.checkpoint import load_checkpoint
    from srwm_rl.run.rundir import prepare_run_dir
    import torch
    torch.set_num_threads(1)
    spec = CellSpec(**json.loads((cell_dir / "cell.json").read_text()))
    run_dir = cell_dir / "run"
    cfg = build_config(spec, run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    resume = load_checkpoint(latest) if latest.exists() else None
    timing = read_json(cell_dir / "timing.json") or {"train_seconds": 0.0, "segments": 0}
    if resume is None or resume["global_step"] < spec.total_steps:
        if resume is None:
            prepare_run_dir(run_dir, overwrite=True)         # only the study's own unfinished run
            write_json(run_dir / "config.json", to_dict(cfg))
        t0 = time.time()
        result = train(cfg, run_dir, resume=resume, progress=False)
        timing = {"train_seconds": timing["train_seconds"] + time.time() - t0, "segments": timing["segments"] + 1}
        write_json(cell_dir / "timing.json", timing)
        if result.get("interrupted"):
            return {"interrupted": int(result["interrupted"])}
    steps = int(load_checkpoint(latest)["global_step"])
    kind = evaluator_of(cfg)
    t0 = time.time()
    rows = EVALUATORS[kind](spec, latest)
    rows += [("", "env_steps", 0, float(steps)), ("", "train_seconds", 0, float(timing["train_seconds"])),
             ("", "eval_seconds", 0, time.time() - t0), ("", "learning_rate", 0, learning_rate(cfg))]
    rows += learning_curve(run_dir, CURVE_METRIC[kind])
    out = {"spec": asdict(spec), "algo": cfg.algo, "rows": [list(r) for r in rows]}
    write_json(cell_dir / "result.json", out)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m srwm_rl.app.study_cells CELL_DIR", file=sys.stderr)
        return 2
    out = run_cell(argv[0])
    if out.get("busy"):
        print(f"{argv[0]} is being run by another process", file=sys.stderr)
        return BUSY
    return 128 + out["interrupted"] if "interrupted" in out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
