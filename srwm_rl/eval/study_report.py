"""The report of a study, from its results alone: a markdown summary, plots and CSVs.

    rows = read_results("runs/study/report/results.csv")    # task, core, seed, split, metric, index, value
    write_report("runs/study/report", rows, tasks={"bandit": {...}, ...})

Every per-seed number is a cell's mean over its evaluation trials; intervals are over seeds (Student t,
:func:`srwm_rl.eval.stats.mean_ci`). A core is named the better one on a task only when the 95%
interval of its score lies above every other core's interval (:func:`better_core`). Bandit baselines
(Thompson sampling, UCB1, random play) are run here on the held-out bandits the cells were evaluated on.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from srwm_rl.eval.stats import mean_ci

COLUMNS = ("task", "core", "seed", "split", "metric", "index", "value")
SPLITS = {"test": "held-out", "train": "train", "digits": "real digits"}


def read_results(path: str | Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return [{"task": r["task"], "core": r["core"], "seed": int(r["seed"]), "split": r["split"],
                 "metric": r["metric"], "index": float(r["index"]), "value": float(r["value"])}
                for r in csv.DictReader(f)]


def write_results(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r[c] if c != "value" else repr(float(r[c])) for c in COLUMNS])
    return Path(path)


def _select(rows, **eq) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in eq.items())]


def over_seeds(rows, task: str, core: str, split: str, metric: str, index: float) -> dict[str, Any]:
    """mean_ci of one number over the seeds of (task, core)."""
    return mean_ci([r["value"] for r in _select(rows, task=task, core=core, split=split, metric=metric,
                                                 index=float(index))])


def separated(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two 95% intervals do not overlap (and both are defined)."""
    (alo, ahi), (blo, bhi) = a["ci95"], b["ci95"]
    if any(math.isnan(v) for v in (alo, ahi, blo, bhi)):
        return False
    return alo > bhi or blo > ahi


def better_core(scores: dict[str, dict[str, Any]]) -> Optional[str]:
    """The core whose interval lies above every other's, or None (CIs overlap, or fewer than 2 cores)."""
    if len(scores) < 2:
        return None
    best = max(scores, key=lambda c: -math.inf if math.isnan(scores[c]["mean"]) else scores[c]["mean"])
    others = [s for c, s in scores.items() if c != best]
    return best if all(separated(scores[best], s) and scores[best]["mean"] > s["mean"] for s in others) else None


def _styles(curves: dict[str, list], cores: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One colour per core; held-out solid, training tasks dashed, real digits dotted."""
    dash = {SPLITS["test"]: "-", SPLITS["train"]: "--", SPLITS["digits"]: ":"}
    out = {}
    for label in curves:
        core, _, split = label.partition(" (")
        out[label] = {"color": f"C{list(cores).index(core) % 10}", "linestyle": dash.get(split.rstrip(")"), "-")}
    return out


def _why_none(scores: dict[str, dict[str, Any]]) -> str:
    if len(scores) < 2:
        return "- (one core)"
    return "- (fewer than 2 seeds)" if any(s["n"] < 2 for s in scores.values()) else "no core (CIs overlap)"


def _fmt(ci: dict[str, Any], nd: int = 2) -> str:
    if ci["n"] == 0 or math.isnan(ci["mean"]):
        return "-"
    lo, hi = ci["ci95"]
    return f"{ci['mean']:.{nd}f}" + ("" if math.isnan(lo) else f" [{lo:.{nd}f}, {hi:.{nd}f}]")


def _indices(rows, **eq) -> list[float]:
    return sorted({r["index"] for r in _select(rows, **eq)})


# ---- bandit baselines ------------------------------------------------------------------------------

def bandit_baselines(rows, task: str, repeats: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Cumulative regret [runs, T] of each classic algorithm on the held-out bandits of the task's first
    cell (every cell is evaluated with the same seed, so on the same bandits), ``repeats`` runs each."""
    from srwm_rl.eval.analysis import BANDIT_BASELINES, bandit_arm_probs
    ids_rows = _select(rows, task=task, split="test", metric="task_id")
    if not ids_rows:
        return {}
    first = (ids_rows[0]["core"], ids_rows[0]["seed"])
    ids = [int(r["value"]) for r in sorted(ids_rows, key=lambda r: r["index"]) if (r["core"], r["seed"]) == first]
    arms = int(_select(rows, task=task, metric="num_arms")[0]["value"])
    pulls = int(max(_indices(rows, task=task, split="test", metric="cumulative_regret")))
    probs = np.repeat(bandit_arm_probs(ids, arms), repeats, axis=0)
    rng = np.random.default_rng(seed)
    return {name: np.cumsum(fn(probs, pulls, rng), axis=1) for name, fn in BANDIT_BASELINES.items()}


# ---- the report ----------------------------------------------------------------------------------------

def summarize(rows, cores: Sequence[str], tasks: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (task, core, split, metric, index): n, mean, std, 95% CI over seeds."""
    out = []
    for task in tasks:
        for core in cores:
            keys = sorted({(r["split"], r["metric"], r["index"]) for r in _select(rows, task=task, core=core)
                           if r["metric"] not in ("task_id",)})
            for split, metric, index in keys:
                s = over_seeds(rows, task, core, split, metric, index)
                out.append({"task": task, "core": core, "split": split, "metric": metric, "index": index,
                            "n": s["n"], "mean": s["mean"], "std": s["std"], "ci95_low": s["ci95"][0],
                            "ci95_high": s["ci95"][1]})
    return out


def write_report(out_dir: str | Path, rows: Sequence[dict[str, Any]], tasks: dict[str, dict[str, Any]],
                 header: Sequence[str] = ()) -> Path:
    """summary.md, summary.csv and the plots of ``rows`` into ``out_dir``; ``tasks``: task name ->
    {"preset", "algo", "steps", "trials", "note", ...} for the section headers. Returns summary.md."""
    from srwm_rl.eval.analysis import cumulative_regret_curve, plot_adaptation, plot_compare, plot_regret
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cores = list(dict.fromkeys(r["core"] for r in rows))
    names = [t for t in tasks if _select(rows, task=t)]
    summary = summarize(rows, cores, names)
    md = ["# srwm-rl study", "", *header, ""]
    md += ["## Score per task (held-out, mean over seeds [95% CI])", "",
           "| task | score | " + " | ".join(cores) + " | better core (CIs separate) |",
           "|---|---|" + "---|" * len(cores) + "---|"]
    for task in names:
        scores = {c: over_seeds(rows, task, c, "test", "score", 0) for c in cores}
        best = better_core(scores)
        summary.append({"task": task, "core": best or "", "split": "test", "metric": "better_core", "index": 0,
                        "n": 0, "mean": math.nan, "std": math.nan, "ci95_low": math.nan, "ci95_high": math.nan})
        md.append(f"| {task} | {tasks[task].get('score', 'last-episode return')} | "
                  + " | ".join(_fmt(scores[c]) for c in cores) + f" | {best or _why_none(scores)} |")
    for task in names:
        md += _task_section(out, rows, task, tasks[task], cores, summary,
                            (cumulative_regret_curve, plot_adaptation, plot_compare, plot_regret))
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]) if summary else ["task"])
        w.writeheader()
        w.writerows(summary)
    (out / "summary.md").write_text("\n".join(md) + "\n")
    return out / "summary.md"


def _task_section(out: Path, rows, task: str, meta: dict[str, Any], cores, summary, plots) -> list[str]:
    cumulative_regret_curve, plot_adaptation, plot_compare, plot_regret = plots
    md = ["", f"## {task}", "",
          f"Preset `{meta.get('preset', task)}`, algorithm {meta.get('algo', '?')}, {meta.get('steps', 0):,} "
          f"{meta.get('unit', 'env steps')} per cell, {meta.get('trials', '?')} trials per split and cell; "
          f"held-out: {meta.get('note', '')}.", ""]
    lrs = {c: over_seeds(rows, task, c, "", "learning_rate", 0)["mean"] for c in cores}
    secs = {c: [r["value"] for r in _select(rows, task=task, core=c, metric="train_seconds")] for c in cores}
    md.append("Learning rate: " + ", ".join(f"{c} {lrs[c]:g}" for c in cores)
              + (" (the preset's for every core)" if not meta.get("learning_rates") else "")
              + ". Training wall time per cell (mean, min-max): "
              + ", ".join(f"{c} {np.mean(secs[c]):.0f} s ({min(secs[c]):.0f}-{max(secs[c]):.0f})" for c in cores if secs[c])
              + " (cells run in parallel on a shared machine).")
    episodes = _indices(rows, task=task, split="test", metric="return")
    if episodes:
        md += ["", "Return per episode of the trial (mean over seeds [95% CI]):", "",
               "| core | tasks | " + " | ".join(f"episode {int(k)}" for k in episodes) + " |",
               "|---|---|" + "---|" * len(episodes)]
        curves = {}
        for c in cores:
            for split in ("test", "train"):
                cis = [over_seeds(rows, task, c, split, "return", k) for k in episodes]
                if not any(ci["n"] for ci in cis):
                    continue
                md.append(f"| {c} | {SPLITS[split]} | " + " | ".join(_fmt(ci) for ci in cis) + " |")
                curves[f"{c} ({SPLITS[split]})"] = [{"episode_in_trial": int(k) - 1, **ci} for k, ci in zip(episodes, cis)]
        plot_adaptation(out / f"adaptation-{task}.png", curves, title=f"{task}: return per episode (95% CI over seeds)",
                        styles=_styles(curves, cores))
        md += ["", f"![adaptation](adaptation-{task}.png)"]
    if "bandit" in meta.get("baselines", ()) and _select(rows, task=task, metric="task_id"):
        md += _bandit_section(out, rows, task, cores, summary, cumulative_regret_curve, plot_regret)
    shots = _indices(rows, task=task, split="test", metric="accuracy")
    if shots:
        md += ["", "Accuracy by shot (presentation of the class; mean over seeds [95% CI]):", "",
               "| core | classes | " + " | ".join(f"shot {int(s)}" for s in shots) + " | queries |",
               "|---|---|" + "---|" * (len(shots) + 1)]
        curves = {}
        for c in cores:
            for split in ("test", "train", "digits"):
                cis = [over_seeds(rows, task, c, split, "accuracy", s) for s in shots]
                if any(ci["n"] for ci in cis):
                    q = over_seeds(rows, task, c, split, "query_accuracy", 0)
                    md.append(f"| {c} | {SPLITS[split]} | " + " | ".join(_fmt(ci, 3) for ci in cis) + f" | {_fmt(q, 3)} |")
                    curves[f"{c} ({SPLITS[split]})"] = [{"episode_in_trial": int(s) - 1, **ci} for s, ci in zip(shots, cis)]
        plot_adaptation(out / f"fewshot-{task}.png", curves, ylabel="accuracy", xlabel="presentation of the class (shot)",
                        title=f"{task}: accuracy by shot (95% CI over seeds)", styles=_styles(curves, cores))
        md += ["", f"![accuracy by shot](fewshot-{task}.png)"]
    groups = {}
    for c in cores:
        members = []
        for seed in sorted({r["seed"] for r in _select(rows, task=task, core=c)}):
            pts = sorted((r["index"], r["value"]) for r in _select(rows, task=task, core=c, seed=seed,
                                                                   metric="learning_curve"))
            if pts:
                members.append({"run_dir": f"{c}-s{seed}", "steps": np.array([p[0] for p in pts]),
                                "values": np.array([p[1] for p in pts])})
        if members:
            groups[c] = members
    if groups:
        metric = meta.get("curve_metric", "episode_return")
        plot_compare(out / f"learning-{task}.png", groups, metric)
        md += ["", f"Learning curves (training {metric}, mean ± std over seeds):", "", f"![learning](learning-{task}.png)"]
    return md


def _bandit_section(out: Path, rows, task, cores, summary, cumulative_regret_curve, plot_regret) -> list[str]:
    pulls = _indices(rows, task=task, split="test", metric="cumulative_regret")
    base = bandit_baselines(rows, task)
    md = ["", f"Cumulative expected regret on the held-out bandits after {int(pulls[-1])} pulls (cores: mean over "
          f"seeds [95% CI]; baselines: run here on the same bandits, 10 runs each, [95% CI] over runs):", "",
          "| method | regret | |", "|---|---|---|"]
    curves = {}
    for c in cores:
        ci = over_seeds(rows, task, c, "test", "cumulative_regret", pulls[-1])
        if ci["n"]:
            md.append(f"| {c} | {_fmt(ci)} | {ci['n']} seeds |")
            curves[c] = [{"pull": int(p), **over_seeds(rows, task, c, "test", "cumulative_regret", p)} for p in pulls]
    for name, cum in base.items():
        ci = mean_ci(cum[:, -1])
        md.append(f"| {name} | {_fmt(ci)} | {len(cum)} runs |")
        curves[name] = cumulative_regret_curve(np.diff(cum, axis=1, prepend=0.0))
        summary.append({"task": task, "core": name, "split": "test", "metric": "cumulative_regret",
                        "index": float(cum.shape[1]), "n": ci["n"], "mean": ci["mean"], "std": ci["std"],
                        "ci95_low": ci["ci95"][0], "ci95_high": ci["ci95"][1]})
    plot_regret(out / f"regret-{task}.png", curves, title=f"{task}: held-out bandits")
    return md + ["", f"![regret](regret-{task}.png)"]
