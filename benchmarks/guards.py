"""What the finiteness guards cost PPO: training speed with the guards on and off, in one process.

    .venv/bin/python benchmarks/guards.py                       # preset cartpole-novel, 5 pairs
    .venv/bin/python benchmarks/guards.py --preset darkroom --pairs 3 --updates 6

"Off" replaces the guards of agents/ppo.py (observation clean-up, value check, rollout data, loss,
gradient and parameter checks) with no-ops. Runs alternate on, off, on, off, ... so that load on the
machine hits both alike; the figure is the median of the per-pair ratios of wall time (off / on, so
below 1 means the guards cost time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agents.ppo as ppo  # noqa: E402
from agents.registry import TrainConfig, train  # noqa: E402
from srwm_rl.app.presets import get_preset  # noqa: E402
from srwm_rl.run.config import from_dict, merge, to_dict  # noqa: E402

GUARDS = {name: getattr(ppo, name) for name in ("_finite", "_check_output", "nonfinite_data", "nonfinite_loss",
                                                 "nonfinite_grads", "nonfinite_params")}
OFF = {"_finite": lambda obs: obs, "_check_output": lambda value, t: None}


def set_guards(on: bool) -> None:
    for name, fn in GUARDS.items():
        setattr(ppo, name, fn if on else OFF.get(name, lambda *a, **k: None))


def timed_run(cfg, on: bool) -> float:
    set_guards(on)
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(cfg, Path(d) / "run", progress=False)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cartpole-novel")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--updates", type=int, default=10, help="PPO updates per run")
    args = ap.parse_args()
    cfg = from_dict(TrainConfig, merge(to_dict(TrainConfig()), get_preset(args.preset)))
    cfg = replace(cfg, algo="ppo", device="cpu", torch_threads=1, checkpoint_every=10**6,   # PPO, whatever the preset runs
                  total_steps=args.updates * cfg.ppo.num_steps * cfg.env.num_envs)
    timed_run(replace(cfg, total_steps=cfg.ppo.num_steps * cfg.env.num_envs), True)     # warm-up
    ratios, on_s, off_s = [], [], []
    for _ in range(args.pairs):
        on_s.append(timed_run(cfg, True))
        off_s.append(timed_run(cfg, False))
        ratios.append(off_s[-1] / on_s[-1])
    print(f"preset {args.preset}, {args.updates} updates x {cfg.ppo.num_steps * cfg.env.num_envs} steps per run, "
          f"{args.pairs} pairs")
    print(f"guards on : {', '.join(f'{x:.2f}' for x in on_s)} s")
    print(f"guards off: {', '.join(f'{x:.2f}' for x in off_s)} s")
    print(f"off / on wall time, median of pairs: {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
