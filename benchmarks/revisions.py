"""Training throughput of two revisions of srwm-rl, side by side in one run: did a change cost speed?

    .venv/bin/python benchmarks/revisions.py --base 0ddc179                 # that commit vs the working tree
    .venv/bin/python benchmarks/revisions.py --base HEAD~3 --cases ppo-cartpole --seconds 30 --repeats 3

The base revision is exported with ``git archive`` into a temporary directory (nothing in the checkout
changes); each revision runs through its own ``srwm-rl`` entry point (read from its pyproject.toml)
in a fresh process with that tree first on ``PYTHONPATH``, with the same flags, in the same venv.
Runs alternate base, new, base, new, ... so that load on the machine hits both alike. Each run is
stopped with SIGTERM ``--seconds`` after its first metrics row; the figure is the steady speed from
metrics.csv (env steps between the first and the last row over the time between them), which both
revisions write the same way. Reported per case: the median of each and new / base.

The cases use each algorithm's defaults beyond the flags below (thread counts included), so a change
of default shows up as what a user would see.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

from cli_runs import after_first_row, read_rows, run_until, steady_sps

ROOT = Path(__file__).resolve().parents[1]

PROCGEN_NETWORK = ("--env.id procgen:bigfish --env.num_levels 200 --env.distribution_mode easy --env.clip_reward 1 "
                   "--no-env.normalize_reward --policy.encoder impala --no-policy.prev_action --policy.prev_reward "
                   "--core.kind srwm --core.hidden_size 128 --core.num_heads 8 --core.num_layers 2")
CARTPOLE_IMPALA = ("--env.id srwm_rl/CartPoleNoVel-v0 --env.normalize_obs --no-policy.prev_action "
                   "--no-policy.prev_reward --core.hidden_size 64 --core.num_heads 4 --core.num_layers 1 "
                   "--impala.num_actors 2 --impala.envs_per_actor 8 --impala.batch_size 16 --impala.unroll_length 32")
CASES = {
    "ppo-cartpole": "--preset cartpole-novel",
    "impala-cartpole": "--algo impala " + CARTPOLE_IMPALA,
    "ppo-procgen": f"--algo ppo {PROCGEN_NETWORK} --env.num_envs 32 --ppo.num_steps 64 --ppo.num_minibatches 4 "
                   "--ppo.update_epochs 3",
    "impala-procgen": f"--algo impala {PROCGEN_NETWORK} --impala.num_actors 2 --impala.envs_per_actor 16 "
                      "--impala.batch_size 32 --impala.unroll_length 50",
}

CHILD = """import importlib, sys
tree, entry = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
module, fn = entry.split(":")
m = importlib.import_module(module)
assert m.__file__.startswith(tree), (m.__file__, tree)
sys.argv = ["srwm-rl", *sys.argv[3:]]
sys.exit(getattr(m, fn)())
"""


def export(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` (git archive), unpacked into ``dest``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev], check=True,
                             capture_output=True).stdout
    dest.mkdir(parents=True)
    with tempfile.TemporaryFile() as f:
        f.write(archive)
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            tar.extractall(dest, filter="data")
    return dest


def entry_point(tree: Path) -> str:
    return tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]["srwm-rl"]


def measure(tree: Path, flags: str, seconds: float, min_rows: int = 3) -> float:
    """Steady env steps/s of one training run of ``tree`` (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="bench-rev-"))
    run_dir = work / "run"
    cmd = [sys.executable, "-c", CHILD, str(tree), entry_point(tree), "train", *shlex.split(flags),
           "--total_steps", "1000000000", "--checkpoint_every", "1000000", "--run_dir", str(run_dir), "--no-progress"]
    out = run_until(cmd, run_dir / "metrics.csv", after_first_row(seconds, min_rows), cwd=work,
                    env={**os.environ, "PYTHONPATH": str(tree)})
    rows = read_rows(run_dir / "metrics.csv")
    if len(rows) < 2:
        raise SystemExit(f"{tree}: fewer than 2 metrics rows; output:\n{out[-3000:]}")
    return steady_sps(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="git revision to compare with (e.g. a commit before the change)")
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--seconds", type=float, default=40, help="training time measured per run, after its first log")
    ap.add_argument("--repeats", type=int, default=2, help="runs per revision and case (alternating)")
    ap.add_argument("--extra", default="", help="flags added to every case (both revisions must know them)")
    ap.add_argument("--json", help="append the results as JSON lines to this file")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="srwm-rev-"))
    trees = {"base": export(args.base, tmp / "base"), "new": ROOT}
    results = []
    for case in args.cases:
        sps: dict[str, list[float]] = {"base": [], "new": []}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                sps[name].append(measure(tree, f"{CASES[case]} {args.extra}", args.seconds))
                print(f"{case:16s} {name:4s} {sps[name][-1]:9.0f} steps/s", flush=True)
        base, new = statistics.median(sps["base"]), statistics.median(sps["new"])
        results.append({"case": case, "extra": args.extra, "base": args.base, "base_sps": sps["base"], "new_sps": sps["new"],
                        "ratio": new / base})
    print(f"\nbase = {args.base}, new = the working tree{', flags ' + args.extra if args.extra else ''}; steady env "
          f"steps/s, median of {args.repeats} runs each")
    print("| case | base | new | new / base | runs (base; new) |\n|---|---|---|---|---|")
    for r in results:
        runs = f"{', '.join(f'{v:.0f}' for v in r['base_sps'])}; {', '.join(f'{v:.0f}' for v in r['new_sps'])}"
        print(f"| {r['case']} | {statistics.median(r['base_sps']):.0f} | {statistics.median(r['new_sps']):.0f} | "
              f"{r['ratio']:.2f} | {runs} |")
    if args.json:
        with open(args.json, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
