"""IMPALA-SRWM learning benchmarks: CartPole without velocity, and the Bernoulli bandit vs random.

    .venv/bin/python benchmarks/impala_learning.py --task cartpole --seeds 1 2 3
    .venv/bin/python benchmarks/impala_learning.py --task bandit --seeds 1 --max-seconds 300
    .venv/bin/python benchmarks/impala_learning.py --task cartpole --seeds 1 2 3 --extra="--core.kind lstm"

Every run goes through the real command line (``srwm-rl train --algo impala``) in a fresh process.

* cartpole: ``srwm_rl/CartPoleNoVel-v0`` (position and angle only: the velocities must be inferred from
  memory), SRWM core without the softmax on its inputs (with it, the SRWM's memory writes start near
  zero and IMPALA did not learn to use them in 11M steps; see BENCHMARKS.md). A run stops when the
  training mean return (the last 100 episodes, sampled actions) reaches ``--target`` (475), or at
  ``--max-steps`` / ``--max-seconds``. Reported: env steps and wall time to the target, then a greedy
  evaluation of the checkpoint at the stop (32 episodes).
* bandit: ``srwm_rl/Bandit-v0`` (5 arms, 100 pulls, a fresh bandit every episode; the agent sees its
  previous action and reward), SRWM core, fixed budget. Reported: the training mean return and a
  greedy evaluation on held-out test bandits (200 episodes) against the uniformly random policy on the
  same kind of bandits (expected return 100 * mean(p) = 50) and the best-arm oracle (100 * E[max p] = 83.3).

Run it alone (``flock /tmp/srwm_heavy.lock ...`` on the shared machine).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cli_runs import read_rows, run_until  # noqa: E402

CLI = str(Path(sys.executable).parent / "srwm-rl")

TASKS = {
    "cartpole": {
        "target": 475.0, "max_steps": 3_000_000,
        "flags": "--env.id srwm_rl/CartPoleNoVel-v0 --env.normalize_obs "
                 "--no-policy.prev_action --no-policy.prev_reward "
                 "--core.kind srwm --core.hidden_size 64 --core.num_heads 4 --core.num_layers 1 "
                 "--no-core.input_softmax "
                 "--impala.num_actors 2 --impala.envs_per_actor 8 --impala.batch_size 16 --impala.unroll_length 32 "
                 "--impala.learning_rate 3e-4 --impala.entropy_cost 0.001 --torch_threads 1",
    },
    "bandit": {
        "target": None, "max_steps": 12_000_000,
        "flags": "--env.id srwm_rl/Bandit-v0 --policy.prev_action --policy.prev_reward "
                 "--core.kind srwm --core.hidden_size 64 --core.num_heads 4 --core.num_layers 1 "
                 "--impala.num_actors 2 --impala.envs_per_actor 16 --impala.batch_size 32 --impala.unroll_length 50 "
                 "--impala.learning_rate 1e-3 --impala.gamma 0.99 --torch_threads 1",
    },
}


def train_until(task: str, seed: int, extra: str, max_steps: int, max_seconds: float, target) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"impala-{task}-s{seed}-")) / "run"
    cmd = [CLI, "train", "--algo", "impala", *shlex.split(TASKS[task]["flags"]), *shlex.split(extra),
           "--seed", str(seed), "--total_steps", str(max_steps), "--checkpoint_every", "20",
           "--run_dir", str(run_dir), "--no-progress"]
    t0, reached = time.time(), None

    def stop(rows: list[dict]) -> bool:
        nonlocal reached
        ret = [float(r["episode_return"]) for r in rows if r.get("episode_return")]
        if target is not None and ret and ret[-1] >= target:
            reached = {"steps": int(rows[-1]["global_step"]), "wall_s": round(time.time() - t0, 1)}
            return True
        return time.time() - t0 > max_seconds

    out = run_until(cmd, run_dir / "metrics.csv", stop)
    rows = read_rows(run_dir / "metrics.csv")
    if not rows:
        raise SystemExit(f"{task} seed {seed}: no metrics; output:\n{out[-3000:]}")
    last = rows[-1]
    return {"task": task, "seed": seed, "run_dir": str(run_dir), "reached": reached,
            "final_steps": int(last["global_step"]), "final_train_return": float(last.get("episode_return") or "nan"),
            "best_train_return": max(float(r["episode_return"]) for r in rows if r.get("episode_return")),
            "wall_s": round(time.time() - t0, 1), "sps": float(last["sps"])}


def evaluate_run(run_dir: str, split: str, episodes: int) -> dict:
    from srwm_rl.eval.evaluate import evaluate
    _, summary = evaluate(run_dir, split=split, num_episodes=episodes, deterministic=True, seed=12345)
    return {"eval_split": split, "eval_episodes": episodes, "eval_return": summary["return"]["mean"],
            "eval_ci": summary["return"].get("ci95") or summary["return"].get("ci")}


def random_bandit_return(episodes: int = 2000, seed: int = 0) -> float:
    import envs
    env = envs.make("srwm_rl/Bandit-v0", 100, seed, task_split="test")
    rng, total, done_eps = np.random.default_rng(seed), [], 0
    env.reset(seed=seed)
    while done_eps < episodes:
        _, _, _, _, info = env.step(rng.integers(0, env.action_space.n, env.num_envs))
        if info["episode_done"].any():
            total += info["episode_return"][info["episode_done"]].tolist()
            done_eps += int(info["episode_done"].sum())
    env.close()
    return float(np.mean(total))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=[*TASKS, "both"], default="both")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--max-steps", type=int, help="env steps per run (default: per task)")
    ap.add_argument("--max-seconds", type=float, default=900, help="wall-time cap per run")
    ap.add_argument("--target", type=float, help="CartPole: stop at this training mean return (default 475)")
    ap.add_argument("--extra", default="", help="extra flags for srwm-rl train")
    ap.add_argument("--json", help="append results as JSON lines to this file")
    args = ap.parse_args()
    tasks = list(TASKS) if args.task == "both" else [args.task]
    results = []
    for task in tasks:
        spec = TASKS[task]
        target = args.target if args.target is not None and task == "cartpole" else spec["target"]
        for seed in args.seeds:
            r = train_until(task, seed, args.extra, args.max_steps or spec["max_steps"], args.max_seconds, target)
            if task == "cartpole":
                r.update(evaluate_run(r["run_dir"], "test", 32))
            else:
                r.update(evaluate_run(r["run_dir"], "test", 200))
                r["random_return"] = random_bandit_return()
            r["flags"] = spec["flags"] + (" " + args.extra if args.extra else "")
            results.append(r)
            print(json.dumps(r), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print("\n| task | seed | steps to target | wall to target (s) | final train return | greedy eval return "
          "| steps/s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        reach = r["reached"] or {}
        print(f"| {r['task']} | {r['seed']} | {reach.get('steps', '-')} | {reach.get('wall_s', '-')} | "
              f"{r['final_train_return']:.1f} | {r['eval_return']:.1f} | {r['sps']:.0f} |")


if __name__ == "__main__":
    main()
