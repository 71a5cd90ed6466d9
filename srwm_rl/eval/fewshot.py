"""Held-out evaluation of few-shot learners: accuracy by shot index with confidence intervals, and the
table, files and plot that compare runs.

Shot index = presentation index: the n-th time the step's class appears in the sequence (1 = first
sight, a guess; 2 = after one labelled example; ...). With hidden query labels (the default) a
query of a K-shot task has index > K but has seen exactly K labels. Confidence intervals are over
tasks (per-task means are independent; steps within a task are not), from :mod:`srwm_rl.eval.stats`.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.fewshot.sources import make_source
from envs.fewshot.tasks import TaskSpec, sample_tasks, task_inputs
from srwm_rl.eval.stats import mean_ci


@torch.no_grad()
def evaluate_model(model, source_name: str, spec: TaskSpec, split: str, num_tasks: int, seed: int,
                   batch_size: int = 128, distortion: float = 1.0) -> dict[str, np.ndarray]:
    """Run ``num_tasks`` fresh tasks (the same ones for the same seed) -> per-step records, each [T, n]:
    correct (bool), shot (int, 1-based presentation index), is_query (bool)."""
    if spec.num_ways != model.num_ways:
        raise ValueError(f"num_ways={spec.num_ways}: the model was trained for {model.num_ways} ways")
    source = make_source(source_name, distortion)
    rng = np.random.default_rng([seed, 7])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, list] = {"correct": [], "shot": [], "is_query": []}
    for start in range(0, num_tasks, batch_size):
        b = sample_tasks(source, spec, min(batch_size, num_tasks - start), split, rng)
        logits, _ = model(task_inputs(b.images, b.prev_labels, spec.num_ways).to(device))
        out["correct"].append((logits.argmax(-1).cpu() == b.labels).numpy())
        out["shot"].append(b.shot.numpy())
        out["is_query"].append(b.is_query.numpy())
    model.train(was_training)
    return {k: np.concatenate(v, 1) for k, v in out.items()}


def _mean_half_width(per_task: np.ndarray) -> tuple[float, float]:
    """Mean and 95% half-width over tasks."""
    m = mean_ci(per_task)
    return m["mean"], (m["ci95"][1] - m["ci95"][0]) / 2


def summarize(rec: dict[str, np.ndarray]) -> dict[str, Any]:
    """accuracy / query_accuracy (mean, ci95) and by_shot rows {shot, query, accuracy, ci95, tasks}."""
    c, shot, q = rec["correct"].astype(np.float64), rec["shot"], rec["is_query"]

    def over(mask: np.ndarray) -> tuple[float, float]:
        keep = mask.any(0)
        return _mean_half_width((c * mask).sum(0)[keep] / mask.sum(0)[keep])

    acc, ci = over(np.ones_like(q))
    out: dict[str, Any] = {"tasks": int(c.shape[1]), "seq_len": int(c.shape[0]), "accuracy": acc, "accuracy_ci95": ci}
    if q.any():
        out["query_accuracy"], out["query_accuracy_ci95"] = over(q)
    out["by_shot"] = []
    for s in np.unique(shot):
        for is_q in (False, True):
            m = (shot == s) & (q == is_q)
            if m.any():
                a, h = over(m)
                out["by_shot"].append({"shot": int(s), "query": is_q, "accuracy": a, "ci95": h,
                                       "tasks": int(m.any(0).sum())})
    return out


def shot_accuracy(summary: dict[str, Any], shot: int) -> float:
    """Accuracy at presentation ``shot`` (support and query steps together, weighted by tasks)."""
    rows = [r for r in summary["by_shot"] if r["shot"] == shot]
    return float(sum(r["accuracy"] * r["tasks"] for r in rows) / max(sum(r["tasks"] for r in rows), 1)) \
        if rows else float("nan")


# ---- comparing runs ------------------------------------------------------------------------------

def plot_comparison(results: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy against shot index, one panel per source, one line per run (95% CI bars), chance dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    sources = sorted({s for r in results for s in r["sources"]}, key=["glyphs", "digits"].index)
    fig, axes = plt.subplots(1, len(sources), figsize=(5 * len(sources), 3.8), dpi=100, squeeze=False)
    for ax, src in zip(axes[0], sources):
        for r in results:
            if src not in r["sources"]:
                continue
            rows = r["sources"][src]["by_shot"]
            xs = [x["shot"] + (0.15 if x["query"] else 0) for x in rows]
            ax.errorbar(xs, [x["accuracy"] for x in rows], yerr=[x["ci95"] for x in rows], marker="o",
                        ms=3, capsize=2, lw=1.2, label=r.get("label", r["core"]))
        n = results[0]["num_ways"]
        ax.axhline(1.0 / n, ls="--", c="grey", lw=1, label="chance")
        ax.set_xlabel("presentation of the class (shot index; queries offset right)")
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{src} ({'held-out test classes' if src == 'glyphs' else 'real data'})")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_results(results: list[dict[str, Any]], out_dir: str | Path, title: str) -> Path:
    """Label the runs (core kind, or run name where kinds repeat) and write fewshot_eval.{json,csv,png}."""
    kinds = [r["core"] for r in results]
    for r in results:
        r.setdefault("label", r["core"] if kinds.count(r["core"]) == 1 else Path(r["run_dir"]).name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fewshot_eval.json").write_text(json.dumps(results, indent=2) + "\n")
    with open(out / "fewshot_eval.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "source", "shot", "query", "accuracy", "ci95", "tasks"])
        for r in results:
            for src, s in r["sources"].items():
                for x in s["by_shot"]:
                    w.writerow([r["label"], src, x["shot"], int(x["query"]), f"{x['accuracy']:.4f}",
                                f"{x['ci95']:.4f}", x["tasks"]])
    plot_comparison(results, out / "fewshot_eval.png", title)
    return out


def format_table(results: list[dict[str, Any]]) -> str:
    """A plain-text table: per run and source, shot-1, shot-2 and query accuracy with 95% CIs."""
    lines = [f"{'run':24s} {'source':7s} {'shot 1':>15s} {'shot 2':>15s} {'queries':>15s}"]
    for r in results:
        for src, s in r["sources"].items():
            cells = []
            for shot in (1, 2):
                rows = [x for x in s["by_shot"] if x["shot"] == shot]
                ci = max((x["ci95"] for x in rows), default=float("nan"))
                cells.append(f"{shot_accuracy(s, shot):6.3f} ±{ci:5.3f}")
            q = f"{s['query_accuracy']:6.3f} ±{s['query_accuracy_ci95']:5.3f}" if "query_accuracy" in s else "-"
            lines.append(f"{r.get('label', r['core']):24s} {src:7s} {cells[0]:>15s} {cells[1]:>15s} {q:>15s}")
    return "\n".join(lines)
