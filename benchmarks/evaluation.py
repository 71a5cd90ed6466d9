"""Evaluation and video speed: env steps/s of ``run_episodes`` against PPO's training rollout for the
same policy and env, and the cost of recording a video against the same evaluation without one.

    .venv/bin/python benchmarks/evaluation.py                      # both setups, 1 and 4 tiles, ~5 min
    .venv/bin/python benchmarks/evaluation.py --setups darkroom --blocks 3

Within a block the three loops run one after the other on freshly built envs with the same seed
(training rollout: the loop of ``agents/ppo.py`` step 1, sampled actions written into its ``Rollout``
buffer; evaluation: ``run_episodes`` with greedy actions; recording: the same plus ``RolloutRecorder``
into an mp4 with overlays, the time to drain the encoder queue and finish the file included). Each
loop makes the same number of steps; the median over blocks is reported, wall clock and process CPU
time (all threads, so the encoder thread counts).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.ppo import Rollout, collect  # noqa: E402
from agents.registry import TrainConfig  # noqa: E402
from srwm_rl.eval.rollout import run_episodes  # noqa: E402
from srwm_rl.eval.video import RolloutRecorder, VideoWriter, enable_frames  # noqa: E402
from srwm_rl.nn.policy import PolicyConfig, obs_to_torch  # noqa: E402
from srwm_rl.run.agent import build_policy  # noqa: E402
from srwm_rl.run.config import EnvConfig  # noqa: E402
from srwm_rl.run.environment import make_env  # noqa: E402

SETUPS = {
    # the paper's Procgen network (IMPALA CNN, 2 x SRWM 128 wide, 8 heads), 16 envs
    "procgen": TrainConfig(env=EnvConfig(id="procgen:bigfish", num_envs=16, distribution_mode="easy"),
                           policy=PolicyConfig(encoder="impala", prev_action=False)),
    # an in-context task with trials: MLP encoder, 2 x SRWM 128 wide, 16 envs
    "darkroom": TrainConfig(env=EnvConfig(id="srwm_rl/DarkRoom-v0", num_envs=16, trial_episodes=4)),
}


def training_rollout(policy, env, steps: int, seed: int) -> None:
    """Step 1 of agents/ppo.py, the very function PPO's rollout runs (``collect``)."""
    device = torch.device("cpu")
    obs = obs_to_torch(env.reset(seed=seed), device)
    first = torch.as_tensor(env.first)
    buf = Rollout(steps, env.num_envs, obs, env.action_space.shape, device)
    collect(policy, env, buf, obs, first, policy.initial_state(env.num_envs, device), 0.99,
            on_info=lambda info: info["episode_return"][info["episode_done"]].tolist())


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def bench(name: str, steps: int, blocks: int, record_envs: int, height: int) -> dict:
    cfg = SETUPS[name]
    torch.manual_seed(0)
    probe = make_env(cfg.env, cfg.policy, 0, num_envs=1)
    policy = build_policy(cfg, probe.observation_space, probe.action_space, "cpu").eval()
    probe.close()
    N = cfg.env.num_envs
    out: dict[str, list[float]] = {k: [] for k in ("train_w", "train_c", "eval_w", "eval_c", "evr_w", "evr_c",
                                                   "rec_w", "rec_c")}
    tmp = Path(tempfile.mkdtemp())

    def env(n):
        e = make_env(cfg.env, cfg.policy, 0, num_envs=n)
        enable_frames(e)
        return e

    def evaluation(e):
        run_episodes(policy, e, 10**9, seed=0, max_steps=steps)   # a quota no env reaches: every step counts

    def recording(e):
        rec = RolloutRecorder(VideoWriter(tmp / f"{name}.mp4"), e.num_envs, introspect=policy.core.introspect,
                              height=height,
                              trial_episodes=int(getattr(e, "trial_episodes", 0) or 0))
        run_episodes(policy, e, 10**9, seed=0, max_steps=steps, on_step=rec, capture_frames=True)
        rec.close()

    loops = (("train", lambda e: training_rollout(policy, e, steps, 0), N), ("eval", evaluation, N),
             ("evr", evaluation, record_envs), ("rec", recording, record_envs))
    for _ in range(blocks):
        for key, fn, n in loops:
            e = env(n)                                   # built outside the timed region
            w, c = timed(lambda: fn(e))
            e.close()
            out[key + "_w"].append(w)
            out[key + "_c"].append(c)
    med = {k: statistics.median(v) for k, v in out.items()}
    return {"setup": name, "env": cfg.env.id, "N": N, "steps": steps, "record_envs": record_envs, "height": height,
            "train_sps": N * steps / med["train_w"], "eval_sps": N * steps / med["eval_w"],
            "eval_ratio_wall": med["train_w"] / med["eval_w"], "eval_ratio_cpu": med["train_c"] / med["eval_c"],
            "rec_cost_wall": med["rec_w"] / med["evr_w"], "rec_cost_cpu": med["rec_c"] / med["evr_c"],
            "evr_sps": record_envs * steps / med["evr_w"], "rec_sps": record_envs * steps / med["rec_w"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--steps", type=int, default=0, help="steps per loop (default: 64 procgen, 200 darkroom)")
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the fastest on 2 shared cores)")
    ap.add_argument("--record", nargs="+", default=["1x256", "4x256"], metavar="ENVSxHEIGHT",
                    help="recording settings: tiles x tile height (1x256 is `srwm-rl record`'s default)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.blocks} blocks, median")
    print("| setup | envs | train rollout steps/s | evaluation steps/s | eval/train (wall) | eval/train (CPU) "
          "| video: tiles x height | eval steps/s | with video steps/s | video cost (wall) | video cost (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.setups:
        steps = args.steps or {"procgen": 64, "darkroom": 200}[name]
        for spec in args.record:
            n, h = (int(x) for x in spec.split("x"))
            r = bench(name, steps, args.blocks, n, h)
            print(f"| {name} ({r['env']}) | {r['N']} | {r['train_sps']:,.0f} | {r['eval_sps']:,.0f} | "
                  f"{r['eval_ratio_wall']:.2f} | {r['eval_ratio_cpu']:.2f} | {n} x {h} | {r['evr_sps']:,.0f} | "
                  f"{r['rec_sps']:,.0f} | {r['rec_cost_wall']:.2f}x | {r['rec_cost_cpu']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
