"""IMPALA's Ray backend against the mp backend, and a throughput model of a cluster from measured parts.

    flock /tmp/srwm_heavy.lock .venv/bin/python benchmarks/impala_ray.py --seconds 40
    .venv/bin/python benchmarks/impala_ray.py --tasks cartpole --seconds 20 --reps 1     # quicker

1. Side by side, per task (CartPole without velocity, the IMPALA-SRWM setting of impala_learning.py;
   Procgen bigfish, the 2-core setting of impala_throughput.py), the same ``srwm-rl train`` command
   with ``--impala.backend mp`` and ``--impala.backend ray`` (a local Ray instance started by the run),
   alternating, ``--reps`` times each: steady env steps/s between the first and the last metrics row
   (start-up excluded), policy lag and the learner's waiting fraction. Target: ray >= 0.8x mp.
2. Start-up: wall time of a whole run of one update (process start, Ray's start for ray, actors,
   one update, checkpoint, exit), per backend.
3. Parts of a cluster, measured here in-process: one actor's env steps/s on one CPU thread (policy on
   the CPU, as on a Ray node), the learner's updates/s on this machine's CPU, the bytes of one unroll
   and of the weights through Ray's object store (and a put + get through the local store). From
   them, projected: how many actor CPUs one learner consumes, and the bandwidth it then needs.

The machine may be shared with other jobs: compare numbers inside one invocation only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli_runs import after_first_row, read_rows, run_until, steady_sps  # noqa: E402

CLI = str(Path(sys.executable).parent / "srwm-rl")

TASKS = {
    "cartpole": "--env.id srwm_rl/CartPoleNoVel-v0 --env.normalize_obs --no-policy.prev_action --no-policy.prev_reward "
                "--core.kind srwm --core.hidden_size 64 --core.num_heads 4 --core.num_layers 1 --no-core.input_softmax "
                "--impala.num_actors 2 --impala.envs_per_actor 8 --impala.batch_size 16 --impala.unroll_length 32 "
                "--impala.learning_rate 3e-4 --impala.entropy_cost 0.001 --torch_threads 1 --log_every 20",
    "bigfish": "--env.id procgen:bigfish --env.num_levels 200 --env.distribution_mode easy --env.clip_reward 1 "
               "--no-env.normalize_reward --policy.encoder impala --no-policy.prev_action --policy.prev_reward "
               "--core.kind srwm --core.hidden_size 128 --core.num_heads 8 --core.num_layers 2 "
               "--impala.num_actors 2 --impala.envs_per_actor 16 --impala.batch_size 32 --impala.unroll_length 50 "
               "--torch_threads 2",
}


def train_cmd(task: str, backend: str, run_dir: Path, total: int) -> list[str]:
    return [CLI, "train", "--algo", "impala", *shlex.split(TASKS[task]), "--impala.backend", backend,
            "--total_steps", str(total), "--checkpoint_every", "100000", "--run_dir", str(run_dir), "--no-progress"]


def speed(task: str, backend: str, seconds: float) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-ray-{task}-{backend}-")) / "run"
    run_until(train_cmd(task, backend, run_dir, 10**9), run_dir / "metrics.csv", after_first_row(seconds, 3))
    rows = read_rows(run_dir / "metrics.csv")
    if len(rows) < 2:
        raise SystemExit(f"{task}/{backend}: fewer than 2 metrics rows in {run_dir}")
    mean = lambda key: statistics.fmean(float(r[key]) for r in rows[1:])  # noqa: E731
    return {"task": task, "backend": backend, "steady_sps": steady_sps(rows), "policy_lag": mean("policy_lag"),
            "learner_wait_frac": mean("learner_wait_frac"), "measured_s": float(rows[-1]["time"]) - float(rows[0]["time"])}


def startup(task: str, backend: str) -> dict:
    """Wall time of a run of one update, from process start to exit."""
    import subprocess
    from srwm_rl.app.train import parse_train
    cfg = parse_train(shlex.split(TASKS[task]) + ["--algo", "impala"], "bench")[0]
    one_update = cfg.impala.batch_size * cfg.impala.unroll_length
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-ray-start-{task}-{backend}-")) / "run"
    t0 = time.time()
    out = subprocess.run(train_cmd(task, backend, run_dir, one_update), capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{task}/{backend} start-up run failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return {"task": task, "backend": backend, "startup_s": time.time() - t0}


def parts(task: str, reps: int) -> dict:
    """The measured parts of the cluster model (module docstring, 3)."""
    import ray
    import torch

    from agents.impala import impala_loss
    from agents.impala_ray import build_actor, slot_arrays, to_batch, weights_of
    from srwm_rl.app.train import parse_train

    cfg = parse_train(shlex.split(TASKS[task]) + ["--algo", "impala"], "bench")[0]
    ic = cfg.impala
    T, E = ic.unroll_length, ic.envs_per_actor
    torch.set_num_threads(1)                                     # one actor = one CPU
    actor = build_actor(cfg, 0, [], 0, False)
    actor.fill(0)
    t = time.perf_counter()
    for _ in range(reps):
        actor.fill(0)
    actor_sps = reps * T * E / (time.perf_counter() - t)
    unroll = slot_arrays(actor.buf, 0)
    unroll_bytes = len(ray.cloudpickle.dumps(unroll))
    policy = actor.policy.train()
    for p in policy.parameters():
        p.requires_grad_(True)
    weight_bytes = int(sum(v.nbytes for v in weights_of(policy).values()))
    torch.set_num_threads(cfg.torch_threads or torch.get_num_threads())
    batch = to_batch([unroll] * (ic.batch_size // E), "cpu")
    opt = torch.optim.RMSprop(policy.parameters(), lr=1e-5)
    times = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        loss, _, _ = impala_loss(policy, batch, ic)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    update_s = statistics.median(times[1:])
    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        puts = []
        for _ in range(reps):
            t = time.perf_counter()
            ray.get(ray.put(unroll))
            puts.append(time.perf_counter() - t)
    finally:
        ray.shutdown()
    out = {"task": task, "actor_sps_per_cpu": actor_sps, "learner_update_s": update_s,
           "learner_updates_per_s": 1 / update_s, "learner_sps": ic.batch_size * T / update_s,
           "learner_threads": torch.get_num_threads(), "unroll_bytes": unroll_bytes,
           "bytes_per_step": unroll_bytes / (T * E), "weight_bytes": weight_bytes,
           "store_put_get_s": statistics.median(puts), "T": T, "E": E, "batch": ic.batch_size}
    out["actors_per_learner"] = out["learner_sps"] / actor_sps
    out["ingress_MB_s"] = out["learner_sps"] * out["bytes_per_step"] / 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--seconds", type=float, default=40, help="training time measured per run")
    ap.add_argument("--reps", type=int, default=2, help="runs per backend and task (alternating mp, ray)")
    ap.add_argument("--parts-reps", type=int, default=10, help="repetitions of each in-process measurement")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    args = ap.parse_args()
    results = []
    for task in args.tasks:
        for _ in range(args.reps):
            for backend in ("mp", "ray"):
                results.append(speed(task, backend, args.seconds))
                print(json.dumps(results[-1]), flush=True)
        for backend in ("mp", "ray"):
            results.append(startup(task, backend))
            print(json.dumps(results[-1]), flush=True)
        results.append(parts(task, args.parts_reps))
        print(json.dumps(results[-1]), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| task | mp steps/s | ray steps/s | ray / mp | policy lag mp / ray | learner wait mp / ray | "
          "start-up mp / ray (s) |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks:
        sel = lambda b, key: [r[key] for r in results if r["task"] == task and r.get("backend") == b and key in r]  # noqa: E731
        mp_sps, ray_sps = statistics.fmean(sel("mp", "steady_sps")), statistics.fmean(sel("ray", "steady_sps"))
        print(f"| {task} | {mp_sps:.0f} | {ray_sps:.0f} | {ray_sps / mp_sps:.2f}x | "
              f"{statistics.fmean(sel('mp', 'policy_lag')):.2f} / {statistics.fmean(sel('ray', 'policy_lag')):.2f} | "
              f"{statistics.fmean(sel('mp', 'learner_wait_frac')):.2f} / "
              f"{statistics.fmean(sel('ray', 'learner_wait_frac')):.2f} | "
              f"{sel('mp', 'startup_s')[0]:.1f} / {sel('ray', 'startup_s')[0]:.1f} |")
    print("\n| task | actor steps/s per CPU | learner updates/s (threads) | learner steps/s | unroll bytes | "
          "bytes / step | weights bytes | put+get one unroll (ms) | actor CPUs one learner consumes | "
          "learner ingress (MB/s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for p in (r for r in results if "actor_sps_per_cpu" in r):
        print(f"| {p['task']} | {p['actor_sps_per_cpu']:.0f} | {p['learner_updates_per_s']:.2f} "
              f"({p['learner_threads']}) | {p['learner_sps']:.0f} | {p['unroll_bytes']:,} | "
              f"{p['bytes_per_step']:.0f} | {p['weight_bytes']:,} | {1e3 * p['store_put_get_s']:.1f} | "
              f"{p['actors_per_learner']:.1f} | {p['ingress_MB_s']:.1f} |")
    if args.json:
        with open(args.json, "a") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
