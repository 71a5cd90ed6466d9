"""Few-shot classification: SRWM against LSTM, Delta Net, Fake SR and feed-forward, same budget.

    flock /tmp/srwm_heavy.lock .venv/bin/python benchmarks/fewshot.py            # the BENCHMARKS.md run
    .venv/bin/python benchmarks/fewshot.py --quick                                # wiring check, ~1 min
    .venv/bin/python benchmarks/fewshot.py --cores srwm --seeds 1 2 3             # 3 seeds, 95% CIs over seeds

For each setting (5-way 1-shot, 5-way 5-shot) and core: meta-train on the TRAIN glyph classes with
``agents.fewshot.train`` (run directories under --out, like ``srwm-rl train --algo fewshot``), best.pt
chosen on the VAL glyph classes, then evaluate on --tasks held-out tasks from the TEST glyph classes
and from the real scikit-learn digits (never seen in training). Every core gets the same encoder, the
same width, the same number of updates and tasks. Writes results.json, one comparison plot per
setting, and prints the markdown table of BENCHMARKS.md; with several ``--seeds``, one row per run and
a table of the means over seeds with t-based 95% CIs (``srwm_rl.eval.stats.mean_ci``).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.fewshot import FewshotConfig, build_model, evaluate_run  # noqa: E402
from agents.registry import TrainConfig, train  # noqa: E402
from srwm_rl.eval.fewshot import plot_comparison, shot_accuracy  # noqa: E402
from srwm_rl.eval.stats import mean_ci  # noqa: E402
from srwm_rl.nn.cores import CoreConfig  # noqa: E402
from srwm_rl.run.config import to_dict  # noqa: E402
from srwm_rl.run.runlog import prepare_run_dir, write_json  # noqa: E402

CORES = ("srwm", "lstm", "delta", "fake_sr", "none")
@dataclass(frozen=True)
class Setting:
    """The recipe of one setting (the fewshot-5w1s / fewshot-5w5s presets)."""

    shots: int
    queries: int          # per class, in training tasks
    updates: int
    lr: float
    shots_warmup: float
    vary_shots: bool


# 5w5s until wave 4: Setting(5, 1, 2000, 3e-3, 0.0, False), at chance for the SRWM (BENCHMARKS.md, "Few-shot:
# a shots curriculum"). The 5w5s model is also evaluated at 1 shot (it trains on 1..5 shots).
SETTINGS = {"5w1s": Setting(1, 3, 2500, 3e-3, 0.0, False), "5w5s": Setting(5, 3, 4000, 1e-3, 0.8, True)}


def config(core: str, setting: Setting, args, seed: int = 1) -> TrainConfig:
    f = FewshotConfig(num_ways=5, num_shots=setting.shots, num_queries=setting.queries, batch_size=args.batch,
                      loss_on=args.loss_on, learning_rate=setting.lr, pairing=args.pairing, encoder_features=64,
                      distortion=args.distortion, distortion_warmup=args.warmup, vary_shots=setting.vary_shots,
                      shots_warmup=setting.shots_warmup, eval_every=max(setting.updates // 5, 1), eval_tasks=256,
                      eval_sources=("glyphs",))
    steps = setting.updates * f.batch_size * f.num_ways * (f.num_shots + f.num_queries)
    # One core config for all kinds; input_softmax and norm apply to srwm and fake_sr only (the SRWM
    # paper's supervised variant: LayerNorm before the layer, no softmax on its input).
    c = CoreConfig(kind=core, hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                   input_softmax=args.input_softmax, norm=args.norm)
    return TrainConfig(algo="fewshot", seed=seed, total_steps=steps, torch_threads=args.threads,
                       log_every=10, checkpoint_every=10**9, core=c, fewshot=f)


def setting_from_args(name: str, args) -> Setting:
    """SETTINGS[name] with the command line's overrides (flags left at None keep the setting's value)."""
    s = SETTINGS[name]
    one = s.shots == 1
    overrides = {"updates": args.updates[0] if one else args.updates[1], "lr": args.lr,
                 "shots_warmup": args.shots_warmup, "vary_shots": args.vary_shots,
                 "queries": None if args.train_queries is None else args.train_queries[0 if one else 1]}
    return replace(s, **{k: v for k, v in overrides.items() if v is not None})


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", nargs="+", default=list(CORES))
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--updates", nargs=2, type=int, metavar=("U_1SHOT", "U_5SHOT"),
                   default=[SETTINGS["5w1s"].updates, SETTINGS["5w5s"].updates], help="updates per run")
    p.add_argument("--batch", type=int, default=16, help="tasks per update")
    p.add_argument("--distortion", type=float, default=0.5, help="glyph distortion (training and evaluation)")
    p.add_argument("--warmup", type=float, default=0.8, help="fewshot.distortion_warmup (curriculum)")
    p.add_argument("--shots-warmup", type=float, default=None,
                   help="fewshot.shots_warmup: shots grow from 1 to K over this fraction of training "
                        "(curriculum; default: the setting's, 0 for 5w1s, 0.8 for 5w5s)")
    p.add_argument("--vary-shots", action=argparse.BooleanOptionalAction, default=None,
                   help="fewshot.vary_shots: K drawn from 1..shots per update (default: the setting's, on for 5w5s)")
    p.add_argument("--eval-queries", type=int, default=1, help="queries per class in evaluation tasks")
    p.add_argument("--train-queries", nargs=2, type=int, metavar=("Q_1SHOT", "Q_5SHOT"), default=None,
                   help="queries per class in training tasks (default: the setting's, 3 for both)")
    p.add_argument("--loss-on", default="all", choices=["all", "queries"], help="fewshot.loss_on")
    p.add_argument("--lr", type=float, default=None, help="default: the setting's (3e-3 for 5w1s, 1e-3 for 5w5s)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--input-softmax", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--norm", default="pre", choices=["none", "pre", "post"])
    p.add_argument("--pairing", default="interleave", choices=["none", "shift", "interleave"])
    p.add_argument("--tasks", type=int, default=500, help="held-out evaluation tasks per source")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", type=int, nargs="+", default=[1], help="training seeds (one run each)")
    p.add_argument("--out", default="runs/bench_fewshot")
    p.add_argument("--quick", action="store_true", help="20 updates, 64 tasks: checks the wiring only")
    args = p.parse_args()
    if args.quick:
        args.updates, args.tasks, args.out = [20, 10], 64, args.out + "_quick"
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    results = []
    for name in args.settings:
        setting = setting_from_args(name, args)
        runs = []
        for core, seed in [(c, s) for c in args.cores for s in args.seeds]:
            cfg = config(core, setting, args, seed)
            label = core if args.seeds == [1] else f"{core}/s{seed}"
            run_dir = prepare_run_dir(out / name / label, overwrite=True)
            write_json(run_dir / "config.json", to_dict(cfg))
            t0, c0 = time.time(), time.process_time()
            summary = train(cfg, run_dir, progress=False)
            wall, cpu = time.time() - t0, time.process_time() - c0
            t1, c1 = time.time(), time.process_time()
            r = evaluate_run(run_dir, ("glyphs", "digits"), args.tasks, seed=0, num_queries=args.eval_queries)
            if setting.vary_shots and setting.shots > 1:      # trained on 1..K shots: its 1-shot accuracy too
                r["one_shot"] = evaluate_run(run_dir, ("glyphs", "digits"), args.tasks, seed=0, num_shots=1,
                                             num_queries=args.eval_queries)["sources"]
            r.update(setting=name, label=core, seed=seed, train_wall_s=wall, train_cpu_s=cpu, eval_wall_s=time.time() - t1,
                     eval_cpu_s=time.process_time() - c1, recipe=asdict(setting), examples=summary["global_step"],
                     params=sum(p.numel() for p in build_model(cfg).parameters()))
            runs.append(r)
            g, d = r["sources"]["glyphs"], r["sources"]["digits"]
            print(f"{name} {core:8s} seed {seed} train {wall:6.1f}s wall {cpu:6.1f}s CPU  glyphs q-acc {g['query_accuracy']:.3f}"
                  f"±{g['query_accuracy_ci95']:.3f} shot2 {shot_accuracy(g, 2):.3f} | digits q-acc "
                  f"{d['query_accuracy']:.3f}±{d['query_accuracy_ci95']:.3f} shot2 {shot_accuracy(d, 2):.3f}",
                  flush=True)
            if "one_shot" in r:
                g1, d1 = r["one_shot"]["glyphs"], r["one_shot"]["digits"]
                print(f"{name} {core:8s} seed {seed} evaluated at 1 shot: glyphs q-acc {g1['query_accuracy']:.3f}"
                      f"±{g1['query_accuracy_ci95']:.3f} | digits shot 1 {shot_accuracy(d1, 1):.3f} -> q-acc "
                      f"{d1['query_accuracy']:.3f}", flush=True)
        plot_comparison(runs, out / f"{name}.png",
                        f"{name}: {setting.updates} updates x {args.batch} tasks, {args.tasks} held-out tasks per source")
        results += runs
        write_json(out / "results.json", {"args": vars(args), "results": results})
    print(markdown(results))
    if len(args.seeds) > 1:
        print("\n" + seed_table(results))
    cpu = sum(r["train_cpu_s"] + r["eval_cpu_s"] for r in results)
    wall = sum(r["train_wall_s"] + r["eval_wall_s"] for r in results)
    print(f"\ntotal: {cpu / 60:.1f} min CPU, {wall / 60:.1f} min wall (training + evaluation)")
    return 0


def seed_table(results: list[dict]) -> str:
    """Means over seeds [t-based 95% CI] of the held-out query accuracy and shot-2 accuracy, per setting and core."""
    rows = ["| setting | core | seeds | glyphs: queries (per seed) | glyphs: shot 2 | digits: shot 1 -> shot 2 "
            "| digits: queries |", "|---|---|---|---|---|---|---|"]

    def fmt(xs: list[float]) -> str:
        ci = mean_ci(xs)
        return f"{ci['mean']:.3f} [{ci['ci95'][0]:.3f}, {ci['ci95'][1]:.3f}]"
    for setting, core in dict.fromkeys((r["setting"], r["label"]) for r in results):
        rs = [r for r in results if (r["setting"], r["label"]) == (setting, core)]
        g = [r["sources"]["glyphs"] for r in rs]
        d = [r["sources"]["digits"] for r in rs]
        views = [(setting, g, d)]
        if all("one_shot" in r for r in rs):          # the same models, evaluated on 1-shot tasks
            views.append((f"{setting} at 1 shot", [r["one_shot"]["glyphs"] for r in rs],
                          [r["one_shot"]["digits"] for r in rs]))
        for label, g, d in views:
            per_seed = ", ".join(f"{x['query_accuracy']:.3f}" for x in g)
            rows.append(f"| {label} | {core} | {len(rs)} | {fmt([x['query_accuracy'] for x in g])} ({per_seed}) | "
                        f"{fmt([shot_accuracy(x, 2) for x in g])} | {fmt([shot_accuracy(x, 1) for x in d])} -> "
                        f"{fmt([shot_accuracy(x, 2) for x in d])} | {fmt([x['query_accuracy'] for x in d])} |")
    return "\n".join(rows)


def markdown(results: list[dict]) -> str:
    head = ("| setting | core | seed | params | train CPU / wall (s) | glyphs: shot 1 | glyphs: shot 2 | glyphs: queries | "
            "digits: shot 2 | digits: queries |\n|---|---|---|---|---|---|---|---|---|---|")
    rows = [head]
    for r in results:
        g, d = r["sources"]["glyphs"], r["sources"]["digits"]

        def cell(s, k):
            return f"{s[k]:.3f} ± {s[k + '_ci95']:.3f}"
        rows.append(f"| {r['setting']} | {r['label']} | {r.get('seed', 1)} | {r['params']:,} | {r['train_cpu_s']:.0f} / {r['train_wall_s']:.0f} | "
                    f"{shot_accuracy(g, 1):.3f} | {shot_accuracy(g, 2):.3f} | {cell(g, 'query_accuracy')} | "
                    f"{shot_accuracy(d, 2):.3f} | {cell(d, 'query_accuracy')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
