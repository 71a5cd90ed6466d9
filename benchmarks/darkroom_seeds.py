"""Dark Room over seeds: mean [95% CI] of what ``darkroom_search.py`` measured in each run.

    .venv/bin/python benchmarks/darkroom_seeds.py runs/darkroom-s1 runs/darkroom-s2 runs/darkroom-s3

Reads each run's ``darkroom_search.json`` (written by ``benchmarks/darkroom_search.py RUN``) and prints,
as mean over the runs with a Student-t 95% interval (``srwm_rl.eval.stats.mean_ci``): the return per
episode of the trial on held-out and on training goals, the held-out last episode against its first
episode and against the training goals' last episode (the ratios are taken per run, then averaged), the
share of trials that found the goal before the last episode, and of those the share back on it in the
last. The runs must have been scored on the same goal partition with the same number of episodes.
Writes nothing; exit 2 names a run without the file or with another partition.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srwm_rl.eval.stats import mean_ci  # noqa: E402


def _load(run: str) -> dict:
    path = Path(run) / "darkroom_search.json"
    if not path.is_file():
        raise ValueError(f"{run}: no darkroom_search.json; run benchmarks/darkroom_search.py {run} first")
    return json.loads(path.read_text())


def per_run(d: dict) -> dict[str, float]:
    """The numbers of one run, by name (episode k: ``held_out_k`` / ``training_k``, k = 1..K)."""
    eps, found = d["episodes"], d["find_and_return"]
    out = {}
    for e in eps:
        out[f"held_out_{e['episode']}"] = e["return_held_out"]
        out[f"training_{e['episode']}"] = e["return_train"]
    first, last, train_last = eps[0]["return_held_out"], eps[-1]["return_held_out"], eps[-1]["return_train"]
    out["held_out_last_over_first"] = last / first if first > 0 else float("nan")
    out["held_out_last_over_training_last"] = last / train_last if train_last > 0 else float("nan")
    for name in ("held_out", "training"):
        out[f"{name}_found_before_last"] = found[name]["found_before_last"]
        out[f"{name}_returned"] = found[name]["returned"]
    return out


def summarize(runs: list[dict]) -> dict[str, dict]:
    """name -> mean_ci over the runs, plus the per-run values under ``values``."""
    rows = [per_run(d) for d in runs]
    return {k: {**mean_ci([r[k] for r in rows]), "values": [r[k] for r in rows]} for k in rows[0]}


def _fmt(s: dict) -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:.2f} [{lo:.2f}, {hi:.2f}] ({', '.join(f'{v:.2f}' for v in s['values'])})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories scored by darkroom_search.py")
    args = p.parse_args()
    try:
        runs = [_load(r) for r in args.runs]
        ref = (runs[0]["env_kwargs"], len(runs[0]["episodes"]), runs[0]["held_out_cells"])
        for r, d in zip(args.runs, runs):
            if (d["env_kwargs"], len(d["episodes"]), d["held_out_cells"]) != ref:
                raise ValueError(f"{r}: scored on another goal partition or trial length than {args.runs[0]} "
                                 f"(env_kwargs {d['env_kwargs']} against {ref[0]})")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    s = summarize(runs)
    k = len(runs[0]["episodes"])
    print(f"{len(runs)} runs; mean [95% CI] (per run)")
    for name in ("held_out", "training"):
        print(f"{name} goals, episodes 1 -> {k}: " + " -> ".join(f"{s[f'{name}_{e}']['mean']:.2f}" for e in range(1, k + 1)))
        print(f"  last episode: {_fmt(s[f'{name}_{k}'])}")
    for key in ("held_out_last_over_first", "held_out_last_over_training_last", "held_out_found_before_last",
                "training_found_before_last", "held_out_returned", "training_returned"):
        print(f"{key}: {_fmt(s[key])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
