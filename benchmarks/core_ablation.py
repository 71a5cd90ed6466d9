"""Ablation of the SRWM core's free choices, and per-core learning-rate sweeps, on CartPole without
velocity with IMPALA (the defaults of CoreConfig and the table LEARNING_RATES were chosen from this).

    .venv/bin/python benchmarks/core_ablation.py --variants base softmax norm-pre --seeds 1 2 3
    .venv/bin/python benchmarks/core_ablation.py --variants lstm-lr1e-4 lstm-lr3e-4 lstm-lr1e-3 --seeds 1 2 3
    .venv/bin/python benchmarks/core_ablation.py --variants norm-pre+lr1e-3 beta-2+lr1e-3   # combined
    .venv/bin/python benchmarks/core_ablation.py --summary results.jsonl      # the table of earlier runs

Every run goes through the real command line (``srwm-rl train --algo impala``) in a fresh process with
the same task flags (2 actors x 8 envs, batch 16, T = 32, entropy 0.001, observations normalised, width
64, one layer) and the same budget in env steps; a run stops early when the training mean return (last
100 episodes, sampled actions) reaches ``--target`` (475). Each variant spells out every core choice
(``BASE``), so the results do not depend on CoreConfig's defaults at the time of the run; ``a+b`` applies
variant ``a`` then ``b`` (``norm-pre+lr1e-3``). Reported per
variant: runs that reached the target, mean env steps to it (a run that did not counts as the budget,
shown with '>'), the training mean return at the stop and a greedy evaluation of the final checkpoint
(32 episodes), as means over seeds with t-based 95% CIs (srwm_rl.eval.stats.mean_ci).

Run it alone (``nice``; one training at a time).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from impala_learning import evaluate_run, train_until, TASKS  # noqa: E402

from srwm_rl.eval.stats import mean_ci  # noqa: E402

TASK_FLAGS = ("--env.normalize_obs --no-policy.prev_action --no-policy.prev_reward "
              "--core.hidden_size 64 --core.num_layers 1 "
              "--impala.num_actors 2 --impala.envs_per_actor 8 --impala.batch_size 16 --impala.unroll_length 32 "
              "--impala.entropy_cost 0.001 --torch_threads 1")

# Every SRWM choice spelled out; a variant replaces some of them.
BASE = {"core.kind": "srwm", "core.num_heads": "4", "core.input_softmax": "false", "core.norm": "none",
        "core.beta_init": "0.0", "core.w0_scale": "1.0", "core.short_conv": "0", "impala.learning_rate": "3e-4"}

VARIANTS: dict[str, dict[str, str]] = {
    "base": {},
    "softmax": {"core.input_softmax": "true"},
    "norm-pre": {"core.norm": "pre"},
    "norm-post": {"core.norm": "post"},
    "beta-2": {"core.beta_init": "-2.0"},
    "heads2x32": {"core.num_heads": "2"},
    "heads8x8": {"core.num_heads": "8"},
    "w0x0.5": {"core.w0_scale": "0.5"},
    "w0x2": {"core.w0_scale": "2.0"},
    "lr1e-4": {"impala.learning_rate": "1e-4"},
    "lr1e-3": {"impala.learning_rate": "1e-3"},
    "lr3e-3": {"impala.learning_rate": "3e-3"},
    "conv2": {"core.short_conv": "2"},
    "conv4": {"core.short_conv": "4"},
    "paper": {"core.input_softmax": "true", "core.norm": "none", "core.beta_init": "0.0"},
}
for _kind in ("lstm", "none", "delta", "fake_sr"):  # core.short_conv stays 0 (lstm and none have none)
    for _lr in ("1e-4", "3e-4", "1e-3", "3e-3"):
        VARIANTS[f"{_kind}-lr{_lr}"] = {"core.kind": _kind, "impala.learning_rate": _lr}


def changes(variant: str) -> dict[str, str]:
    """The options a variant changes; ``a+b`` is variant ``a`` then ``b`` (KeyError names an unknown part)."""
    out: dict[str, str] = {}
    for part in variant.split("+"):
        out.update(VARIANTS[part])
    return out


def variant_name(text: str) -> str:
    """argparse type: a variant name or several joined by '+', each one of VARIANTS."""
    unknown = [p for p in text.split("+") if p not in VARIANTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown variant {unknown[0]!r}; variants: {', '.join(VARIANTS)}")
    return text


def flags(variant: str, env_id: str = "srwm_rl/CartPoleNoVel-v0") -> str:
    """The command-line flags of a variant (task flags + every choice of BASE, replaced by the variant's)."""
    opts = {**BASE, **changes(variant)}
    out = []
    for k, v in opts.items():
        if v in ("true", "false"):
            out.append(f"--{k}" if v == "true" else f"--no-{k}")
        else:
            out.append(f"--{k} {v}")
    return f"--env.id {env_id} " + TASK_FLAGS + " " + " ".join(out)


def summarize(results: list[dict], budget: int) -> str:
    """Markdown table: one row per variant, means over seeds with 95% CIs."""
    def fmt(ci: dict) -> str:
        lo, hi = ci["ci95"]
        return f"{ci['mean']:.0f} [{lo:.0f}, {hi:.0f}]" if ci["n"] > 1 else f"{ci['mean']:.0f}"

    lines = ["| variant | flags changed | seeds | reached 475 | env steps to 475 (mean [95% CI]; budget if not) "
             "| training mean at stop | greedy eval |", "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["variant"] for r in results):
        rs = [r for r in results if r["variant"] == name]
        reached = [r for r in rs if r["reached"]]
        steps = mean_ci([r["reached"]["steps"] if r["reached"] else r["final_steps"] for r in rs])
        more = ">" if len(reached) < len(rs) else ""
        changed = " ".join(f"{k}={v}" for k, v in changes(name).items()) if all(
            p in VARIANTS for p in name.split("+")) else "?"
        changed = changed or "-"
        lines.append(f"| {name} | {changed} | {len(rs)} | {len(reached)}/{len(rs)} | {more}{fmt(steps)} | "
                     f"{fmt(mean_ci([r['final_train_return'] for r in rs]))} | "
                     f"{fmt(mean_ci([r['eval_return'] for r in rs]))} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=["base"], type=variant_name,
                    help="variant names, or several joined by '+' (applied left to right)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--budget", type=int, default=1_500_000, help="env steps per run")
    ap.add_argument("--max-seconds", type=float, default=600, help="wall-time cap per run")
    ap.add_argument("--target", type=float, default=475.0)
    ap.add_argument("--env-id", default="srwm_rl/CartPoleNoVel-v0",
                    help="the task (CartPole-v1: the same task with velocity, a control without the memory need)")
    ap.add_argument("--json", default="core_ablation.jsonl", help="append each result as a JSON line here")
    ap.add_argument("--summary", help="only print the table of the results in this JSON-lines file")
    args = ap.parse_args()
    if args.summary:
        rows = [json.loads(line) for line in Path(args.summary).read_text().splitlines() if line.strip()]
        print(summarize(rows, args.budget))
        return
    TASKS["ablation"] = {"flags": ""}
    results = []
    for variant in args.variants:
        for seed in args.seeds:
            r = train_until("ablation", seed, flags(variant, args.env_id), args.budget, args.max_seconds, args.target)
            r.update(evaluate_run(r["run_dir"], "test", 32))
            r.update(variant=variant, budget=args.budget, flags=flags(variant, args.env_id), env_id=args.env_id)
            results.append(r)
            print(json.dumps(r), flush=True)
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    print(summarize(results, args.budget))


if __name__ == "__main__":
    main()
