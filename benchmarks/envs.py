"""Environment throughput: our adapters against the raw libraries they wrap (env steps per second).

    .venv/bin/python benchmarks/envs.py            # ~1-2 minutes on 2 cores
    .venv/bin/python benchmarks/envs.py --seconds 0.3 --repeats 1   # a quick look

Prints a markdown table. Rows: raw ``ProcgenGym3Env`` vs ``envs.make("procgen:...")`` (64 envs, one game and several games,
target ratio >= 0.90); Procgen trials (one level per trial, per-env gym3 envs); CartPole and every
in-context task through our in-process ``GymnasiumVecEnv`` vs ``gymnasium.vector.SyncVectorEnv``
(same-step autoreset). Random actions are drawn beforehand so both sides pay the same. Each cell is
the median of ``--repeats`` blocks of ``--seconds`` each; within a block raw and adapter alternate
step by step (each timed on its own), so that a shared machine's load falls on both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.filterwarnings("ignore", category=DeprecationWarning)

import gymnasium  # noqa: E402

import envs  # noqa: E402
from envs.api import spawn_seeds  # noqa: E402
from envs.meta import META_ENVS  # noqa: E402

StepFn = Callable[[np.ndarray], object]


def compare(raw: StepFn | None, ours: StepFn, actions: np.ndarray, seconds: float, repeats: int):
    """Median env steps/s of ``raw`` and ``ours`` over ``repeats`` blocks of about ``seconds`` each.

    Within a block the two alternate step by step (same actions), each timed on its own, so that the
    load of a shared machine falls on both alike. Returns (raw wall rate, our wall rate, CPU-time
    ratio ours/raw): the process CPU time (all threads) is the steadier measure when other jobs
    compete for the cores. 5 warm-up steps each first.
    """
    for a in actions[:5]:
        ours(a)
        if raw is not None:
            raw(a)
    raw_rates, our_rates, cpu_ratios = [], [], []
    wall, cpu = time.perf_counter, time.process_time
    for _ in range(repeats):
        t_raw = t_ours = c_raw = c_ours = 0.0
        n, t_block = 0, wall()
        while wall() - t_block < seconds:
            a = actions[n % len(actions)]
            if raw is not None:
                t0, c0 = wall(), cpu()
                raw(a)
                t_raw, c_raw = t_raw + wall() - t0, c_raw + cpu() - c0
            t0, c0 = wall(), cpu()
            ours(a)
            t_ours, c_ours = t_ours + wall() - t0, c_ours + cpu() - c0
            n += 1
        our_rates.append(n * actions.shape[1] / t_ours)
        if raw is not None:
            raw_rates.append(n * actions.shape[1] / t_raw)
            cpu_ratios.append(c_raw / c_ours)
    if raw is None:
        return None, statistics.median(our_rates), None
    return statistics.median(raw_rates), statistics.median(our_rates), statistics.median(cpu_ratios)


def procgen_rows(num_envs: int, seconds: float, repeats: int):
    from procgen import ProcgenGym3Env

    actions = np.random.default_rng(0).integers(0, 15, (200, num_envs)).astype(np.int64)
    for games in (["coinrun"], ["coinrun", "bigfish", "starpilot", "maze"]):
        ours = envs.make("procgen:" + "+".join(games), num_envs, seed=0, distribution_mode="easy")
        ours.reset()
        raws = [ProcgenGym3Env(num=n, env_name=g, rand_seed=s, distribution_mode="easy")  # the same levels
                for g, n, s in zip(games, ours.counts, spawn_seeds(0, len(games)))]
        bounds = np.cumsum([0] + ours.counts)

        def raw_step(a: np.ndarray) -> None:  # what one would write by hand: act all, then observe all
            a32 = a.astype(np.int32)
            for env, lo, hi in zip(raws, bounds[:-1], bounds[1:]):
                env.act(a32[lo:hi])
            for env in raws:
                env.observe()

        yield (f"procgen {'+'.join(games)} ({num_envs} envs)", "raw ProcgenGym3Env",
               *compare(raw_step, ours.step, actions, seconds, repeats))
        ours.close()
        for env in raws:
            env.close()
    trials = envs.make("procgen:coinrun", num_envs, seed=0, distribution_mode="easy", trial_episodes=2)
    trials.reset()
    yield (f"procgen coinrun trials, 1 level/trial ({num_envs} envs)", "-",
           *compare(None, trials.step, actions, seconds, repeats))
    trials.close()


def gymnasium_rows(num_envs: int, seconds: float, repeats: int):
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    for env_id in ["CartPole-v1", *META_ENVS]:
        ours = envs.make(env_id, num_envs, seed=0)
        ours.reset()
        ref = SyncVectorEnv([lambda: gymnasium.make(env_id, disable_env_checker=True)] * num_envs,
                            autoreset_mode=AutoresetMode.SAME_STEP)
        ref.reset(seed=0)
        actions = np.random.default_rng(0).integers(0, ours.action_space.n, (200, num_envs))
        yield (f"{env_id} ({num_envs} envs, in-process)", "gymnasium SyncVectorEnv",
               *compare(ref.step, ours.step, actions, seconds, repeats))
        ours.close()
        ref.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one block (both sides)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per cell (median)")
    parser.add_argument("--procgen-envs", type=int, default=64)
    parser.add_argument("--gym-envs", type=int, default=8)
    args = parser.parse_args()
    print("| env | baseline | baseline steps/s | ours steps/s | ours/baseline (wall) | ours/baseline (CPU) |\n"
          "|---|---|---|---|---|---|")
    rows = [*procgen_rows(args.procgen_envs, args.seconds, args.repeats),
            *gymnasium_rows(args.gym_envs, args.seconds, args.repeats)]
    for name, base, r, o, c in rows:
        ratio, cpu = (f"{o / r:.2f}", f"{c:.2f}") if r else ("-", "-")
        print(f"| {name} | {base} | {f'{r:,.0f}' if r else '-'} | {o:,.0f} | {ratio} | {cpu} |", flush=True)


if __name__ == "__main__":
    main()
