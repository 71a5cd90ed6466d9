"""Where recurrent PPO spends its time: rollout against update, and the update's top operators.

    .venv/bin/python benchmarks/ppo_profile.py [--cores srwm lstm] [--updates 60] [--compare-loop-adam]

For each core: train the preset with PPO for --updates updates in a fresh run directory, timing the
two phases of every update (``agents.ppo.collect``, the rollout, and ``agents.ppo.optimise``, the
epochs of minibatches) by wrapping them; the first 5 updates are warm-up and not counted. Then
torch.profiler records the next update's ``optimise`` and prints its operators with the most self CPU
time, so waste in the update (not in the maths of the core) shows.
The ratio printed is update time / rollout time per update, within one run; with --compare-loop-adam
each core also runs with PyTorch's per-tensor-loop Adam (the default on CPU before
``srwm_rl.run.optim``), and the table gives the update's speed-up over it in the same invocation.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agents.ppo as ppo  # noqa: E402
from agents.registry import TrainConfig, train  # noqa: E402
from srwm_rl.app.presets import get_preset  # noqa: E402
from srwm_rl.run.config import from_dict, merge, to_dict  # noqa: E402

WARMUP = 5


def timed(fn, sink: list[float]):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        sink.append(time.perf_counter() - t0)
        return out
    return wrapper


def loop_adam(params, **kwargs) -> torch.optim.Adam:
    """PyTorch's default Adam on CPU parameters (a Python loop over the tensors): the baseline."""
    return torch.optim.Adam(params, foreach=False, **kwargs)


def profile_core(core: str, preset: str, updates: int, top: int, optimizer: str = "shipped") -> dict:
    base = from_dict(TrainConfig, merge(to_dict(TrainConfig()), get_preset(preset)))
    per_update = base.ppo.num_steps * base.env.num_envs
    cfg = replace(base, algo="ppo", core=replace(base.core, kind=core), checkpoint_every=10**9,
                  total_steps=(updates + 2) * per_update)
    rollout, update, tables = [], [], []
    collect, optimise = ppo.collect, ppo.optimise

    def profiled_optimise(*a, **k):
        if len(update) < updates:
            return timed(optimise, update)(*a, **k)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            out = optimise(*a, **k)
        tables.append(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
        return out

    shipped_adam = ppo.adam
    ppo.collect, ppo.optimise = timed(collect, rollout), profiled_optimise
    ppo.adam = loop_adam if optimizer == "loop" else shipped_adam
    try:
        with tempfile.TemporaryDirectory(prefix=f"ppo-profile-{core}-") as d:
            train(cfg, d, progress=False, callback=lambda run: bool(tables))
    finally:
        ppo.collect, ppo.optimise, ppo.adam = collect, optimise, shipped_adam
    r, u = rollout[WARMUP:updates], update[WARMUP:updates]
    row = {"core": core, "optimizer": optimizer, "updates": len(u), "rollout_ms": 1e3 * sum(r) / len(r),
           "update_ms": 1e3 * sum(u) / len(u)}
    print(f"\n{core}, {optimizer} Adam: rollout {row['rollout_ms']:.1f} ms, update {row['update_ms']:.1f} ms "
          f"per update "
          f"({per_update} env steps, {base.ppo.update_epochs} epochs x {base.ppo.num_minibatches} minibatches); "
          f"update / rollout = {row['update_ms'] / row['rollout_ms']:.2f}")
    print(f"torch.profiler, one update ({base.ppo.update_epochs} epochs), operators by self CPU time:")
    print(tables[0])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", nargs="+", default=["srwm", "lstm"])
    ap.add_argument("--preset", default="cartpole-novel")
    ap.add_argument("--updates", type=int, default=60, help="timed updates (the first 5 are warm-up)")
    ap.add_argument("--top", type=int, default=20, help="operators listed")
    ap.add_argument("--compare-loop-adam", action="store_true",
                    help="also run each core with PyTorch's per-tensor-loop Adam (the baseline of the fused one)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    kinds = ["loop", "shipped"] if args.compare_loop_adam else ["shipped"]
    rows = [profile_core(c, args.preset, args.updates, args.top, k) for c in args.cores for k in kinds]
    print("\n| core | Adam | rollout ms / update | PPO update ms / update | update / rollout | update vs loop Adam |"
          "\n|---|---|---|---|---|---|")
    for row in rows:
        base = next((r for r in rows if r["core"] == row["core"] and r["optimizer"] == "loop"), None)
        vs = f"{base['update_ms'] / row['update_ms']:.2f}x faster" if base else "-"
        print(f"| {row['core']} | {row['optimizer']} | {row['rollout_ms']:.1f} | {row['update_ms']:.1f} | "
              f"{row['update_ms'] / row['rollout_ms']:.2f} | {vs} |")


if __name__ == "__main__":
    main()
