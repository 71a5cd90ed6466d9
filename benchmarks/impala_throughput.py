"""IMPALA vs PPO throughput: environment steps per second on Procgen, same network, same script.

    .venv/bin/python benchmarks/impala_throughput.py                      # IMPALA (2-core defaults) then PPO
    .venv/bin/python benchmarks/impala_throughput.py --only impala --seconds 60 \\
        --impala "--impala.num_actors 2 --impala.envs_per_actor 16 --torch_threads 2"

Both algorithms run through the real command line (``srwm-rl train``) in a fresh process, on
``procgen:bigfish`` (easy, 200 levels) with the paper's network: IMPALA CNN -> SRWM core (2 layers,
8 heads of 16, width 128), previous reward as input, rewards clipped to [-1, 1]. Each run is stopped
with SIGTERM after ``--seconds`` of training (PPO after its last whole update). Reported:

* ``steady``: env steps/s between the first and the last metrics row (start-up and the first update
  excluded), the figure the target (IMPALA >= 2x PPO on 2 cores) is about;
* ``overall``: env steps / wall time from process start, start-up included.

Run it alone (``flock /tmp/srwm_heavy.lock ...`` on the shared machine): the numbers are only
comparable inside one invocation, and timings on a busy machine vary.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from cli_runs import after_first_row, read_rows, run_until, steady_sps

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "srwm-rl")

NETWORK = ["--env.id", "procgen:bigfish", "--env.num_levels", "200", "--env.distribution_mode", "easy",
           "--env.clip_reward", "1", "--no-env.normalize_reward", "--policy.encoder", "impala",
           "--no-policy.prev_action", "--policy.prev_reward",
           "--core.kind", "srwm", "--core.hidden_size", "128", "--core.num_heads", "8", "--core.num_layers", "2"]
# The 2-core IMPALA setting chosen by measurement (see BENCHMARKS.md); everything else is the paper's.
IMPALA_2CORE = "--impala.num_actors 2 --impala.envs_per_actor 16 --impala.batch_size 32 --impala.unroll_length 50"
# PPO as the procgen preset (3 epochs, 8 minibatches, 64 envs) with 128-step rollouts, so that a
# measurement holds two or more updates.
PPO_DEFAULT = "--env.num_envs 64 --ppo.num_steps 128 --ppo.num_minibatches 8 --ppo.update_epochs 3"


def measure(algo: str, extra: str, seconds: float, min_rows: int, chunk: int | None = None) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{algo}-")) / "run"
    chunk_flags = [] if chunk is None else ["--policy.encoder_chunk", str(chunk)]
    cmd = [CLI, "train", "--algo", algo, *NETWORK, *shlex.split(extra), *chunk_flags, "--total_steps", "1000000000",
           "--checkpoint_every", "100000", "--run_dir", str(run_dir), "--no-progress"]
    t0, due, seen = time.time(), after_first_row(seconds, min_rows), [0]

    def stop(rows: list[dict]) -> bool:
        # stop PPO just after an update was logged, so that the last row closes the measured time
        fresh, seen[0] = len(rows) > seen[0] or algo != "ppo", len(rows)
        return due(rows) and fresh

    out = run_until(cmd, run_dir / "metrics.csv", stop)
    wall = time.time() - t0
    rows = read_rows(run_dir / "metrics.csv")
    if len(rows) < 2:
        raise SystemExit(f"{algo}: fewer than 2 metrics rows; output:\n{out[-3000:]}")
    dt = float(rows[-1]["time"]) - float(rows[0]["time"])
    res = {"algo": algo, "args": extra + ("" if chunk is None else f" --policy.encoder_chunk {chunk}"),
           "steady_sps": steady_sps(rows), "overall_sps": int(rows[-1]["global_step"]) / wall,
           "steps": int(rows[-1]["global_step"]), "measured_s": round(dt, 1), "wall_s": round(wall, 1),
           "rows": len(rows)}
    if algo == "impala":
        lags = [float(r["policy_lag"]) for r in rows[1:] if r.get("policy_lag")]
        waits = [float(r["learner_wait_frac"]) for r in rows[1:] if r.get("learner_wait_frac")]
        res["policy_lag_mean"] = sum(lags) / max(len(lags), 1)
        res["learner_wait_frac"] = sum(waits) / max(len(waits), 1)
    return res


def learner_grid(grid: list[str], threads: int, reps: int = 3) -> list[dict]:
    """The learner's update alone (no actors): seconds per env step for each ``T,B,chunk`` in ``grid``,
    on random bigfish-shaped data (median of ``reps`` after one warm-up)."""
    sys.path.insert(0, str(ROOT))
    import statistics

    import torch

    from dataclasses import replace

    from agents.impala import ImpalaConfig, impala_loss, observation_spaces
    from agents.registry import TrainConfig
    from srwm_rl.nn.cores import CoreConfig
    from srwm_rl.nn.policy import PolicyConfig
    from srwm_rl.run.agent import build_policy
    from srwm_rl.run.config import EnvConfig
    torch.set_num_threads(threads)
    cfg = TrainConfig(algo="impala", env=EnvConfig(id="procgen:bigfish", clip_reward=1.0, normalize_reward=False),
                      policy=PolicyConfig(encoder="impala", prev_action=False, prev_reward=True),
                      core=CoreConfig(kind="srwm"), impala=ImpalaConfig(num_actors=1, envs_per_actor=1, batch_size=1))
    obs_space, act_space = observation_spaces(cfg)
    out = []
    for spec in grid:
        T, B, chunk = (int(v) for v in spec.split(","))
        torch.manual_seed(0)
        policy = build_policy(replace(cfg, policy=replace(cfg.policy, encoder_chunk=chunk)), obs_space, act_space,
                              "cpu")
        obs = {"obs": torch.randint(0, 256, (T + 1, B, 64, 64, 3), dtype=torch.uint8),
               "prev_action": torch.zeros(T + 1, B, dtype=torch.long), "prev_reward": torch.zeros(T + 1, B, 1)}
        batch = {"obs": {k: v for k, v in obs.items() if k in obs_space.spaces},
                 "first": torch.zeros(T + 1, B, dtype=torch.bool), "action": torch.randint(0, 15, (T, B)),
                 "logp": torch.full((T, B), -2.7), "reward": torch.zeros(T, B),
                 "done": torch.zeros(T, B, dtype=torch.bool), "state": policy.initial_state(B)}
        times = []
        for _ in range(reps + 1):
            t = time.perf_counter()
            loss, _, _ = impala_loss(policy, batch, cfg.impala)
            loss.backward()
            times.append(time.perf_counter() - t)
        sec = statistics.median(times[1:])
        out.append({"T": T, "B": B, "chunk": chunk, "threads": threads, "update_s": round(sec, 3),
                    "learner_steps_per_s": round(T * B / sec)})
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=90, help="training time measured per run (after the first update)")
    ap.add_argument("--only", choices=["impala", "ppo"], help="measure one algorithm only")
    ap.add_argument("--impala", action="append", help="extra IMPALA flags (repeat to compare settings)")
    ap.add_argument("--ppo", default=PPO_DEFAULT, help="extra PPO flags")
    ap.add_argument("--ppo-chunk", type=int, nargs="+", default=[None],
                    help="PPO with --policy.encoder_chunk N (0 = the whole batch at once; default: as shipped)")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    ap.add_argument("--learner-grid", nargs="+", metavar="T,B,CHUNK",
                    help="instead: time the learner's update alone for these unroll lengths, batch sizes and "
                         "encoder chunks (e.g. 50,32,128 20,32,128 50,32,0)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for --learner-grid")
    args = ap.parse_args()
    if args.learner_grid:
        learner_grid(args.learner_grid, args.threads)
        return
    results = []
    if args.only != "ppo":
        for extra in args.impala or [IMPALA_2CORE]:
            results.append(measure("impala", extra, args.seconds, min_rows=3))
            print(json.dumps(results[-1]), flush=True)
    if args.only != "impala":
        for chunk in args.ppo_chunk:
            results.append(measure("ppo", args.ppo, args.seconds, min_rows=2, chunk=chunk))
            print(json.dumps(results[-1]), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print("| algo | flags | steady steps/s | overall steps/s | policy lag | learner wait |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['algo']} | `{r['args']}` | {r['steady_sps']:.0f} | {r['overall_sps']:.0f} | "
              f"{r.get('policy_lag_mean', float('nan')):.2f} | {r.get('learner_wait_frac', float('nan')):.2f} |")
    for p in (r for r in results if r["algo"] == "ppo"):
        for r in (r for r in results if r["algo"] == "impala"):
            print(f"IMPALA ({r['args']}) / PPO ({p['args']}): {r['steady_sps'] / p['steady_sps']:.2f}x")
    if args.json:
        with open(args.json, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
