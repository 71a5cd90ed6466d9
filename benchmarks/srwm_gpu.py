"""SRWM on a GPU: the Triton kernel, the lean and pure paths against nn.LSTM (cuDNN), same script.

    python benchmarks/srwm_gpu.py --out results.json                 # the grid below (~3 min on an H200)
    TRITON_INTERPRET=1 python benchmarks/srwm_gpu.py --device cpu --tiny   # the script itself, on CPU

Grid: B = 64, 256, 1024; width D = 128 as 8 heads of 16 and 4 heads of 32; T = 50 and 256; the
forward pass alone (torch.inference_mode) and forward + backward (loss gradient on the outputs,
reaching the inputs and the learned parameters: W0 for the SRWM, the LSTM's weights). Every SRWM path
gets the same precomputed per-head inputs (after phi); nn.LSTM(128, 128) includes its input
projection. Reported per case: milliseconds per call (median of timed repeats after warm-up, each
timed with CUDA events and a synchronize) and the ratio to nn.LSTM measured in the same case, plus
the largest difference of the Triton path's outputs from the pure path's (a correctness check on the
device; float32).

The target of issue 14: SRWM (triton) forward + backward <= 2x cuDNN LSTM at B = 256, D = 128, T = 50.
``--budget`` (seconds) stops the grid early, saying so, so that benchmarks/gpu_check.sh stays in time.
On the CPU (``--device cpu``) the numbers measure nothing but the interpreter: use it to check the script.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from srwm_rl.ops.srwm import fast_width, srwm_unroll_cat  # noqa: E402
from srwm_rl.ops import srwm_triton  # noqa: E402
from srwm_rl.ops.srwm_lean import srwm_unroll_lean  # noqa: E402
from srwm_rl.ops.srwm_triton import srwm_unroll_triton, triton_unavailable_reason  # noqa: E402

WIDTH = 128
PATHS: dict[str, Callable] = {"triton": srwm_unroll_triton, "lean": srwm_unroll_lean, "pure": srwm_unroll_cat}


def timer(device: torch.device, fn: Callable, reps: int, warmup: int = 2) -> float:
    """Median milliseconds per call of ``fn`` on ``device``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def lstm_case(T: int, B: int, device):
    torch.manual_seed(0)
    lstm = nn.LSTM(WIDTH, WIDTH).to(device)
    x = torch.randn(T, B, WIDTH, device=device)
    xg = x.clone().requires_grad_()
    gy = torch.randn(T, B, WIDTH, device=device)

    def fwd():
        with torch.inference_mode():
            lstm(x)

    def fwd_bwd():
        out, _ = lstm(xg)
        out.backward(gy)
        xg.grad = None
        lstm.zero_grad(set_to_none=True)

    return fwd, fwd_bwd


def srwm_inputs(T: int, B: int, H: int, d: int, device):
    g = torch.Generator().manual_seed(0)
    m = fast_width(d)
    x = torch.softmax(torch.randn(T, B, H, d, generator=g), -1)
    w0 = torch.randn(H, d, m, generator=g) / d ** 0.5
    delta = 0.1 * torch.randn(B, H, d, m, generator=g)
    gy = torch.randn(T, B, H, d, generator=g)
    return x.to(device), w0.to(device), delta.to(device), gy.to(device)


def srwm_case(unroll: Callable, T: int, B: int, H: int, d: int, device):
    x, w0, delta, gy = srwm_inputs(T, B, H, d, device)
    xg, w0g = x.clone().requires_grad_(), w0.clone().requires_grad_()

    def fwd():
        with torch.inference_mode():
            unroll(x, w0, delta, None)

    def fwd_bwd():
        y, _ = unroll(xg, w0g, delta, None)
        y.backward(gy)
        xg.grad = w0g.grad = None

    return fwd, fwd_bwd


def triton_error(T: int, B: int, H: int, d: int, device) -> float:
    """Largest |triton - pure| over y, delta_out and the gradients of x and W0 (float32)."""
    x, w0, delta, gy = srwm_inputs(T, B, H, d, device)
    outs = []
    for fn in (srwm_unroll_triton, srwm_unroll_cat):
        xg, w0g = x.clone().requires_grad_(), w0.clone().requires_grad_()
        y, d_out = fn(xg, w0g, delta, None)
        y.backward(gy)
        outs.append([y.detach(), d_out.detach(), xg.grad, w0g.grad])
    return max((a - b).abs().max().item() for a, b in zip(*outs))


def warps_sweep(device, reps: int, sizes: list[tuple[int, int]], heads: list[tuple[int, int]],
                out: list[dict]) -> None:
    """Triton forward + backward milliseconds for each warps-per-program setting (srwm_triton.NUM_WARPS),
    per (T, B) in ``sizes`` and (H, d) in ``heads``; one JSON line each, appended to ``out`` too."""
    for H, d in heads:
        bd = max(4, 1 << (d - 1).bit_length())
        keep = srwm_triton.NUM_WARPS[bd]
        for T, B in sizes:
            res = {}
            for w in (1, 2, 4, 8, 16):
                if w == 16 and bd < 64:   # 512 threads for <= 32 x 32 fast weights: nothing left to split
                    continue
                srwm_triton.NUM_WARPS[bd] = w
                res[w] = timer(device, srwm_case(srwm_unroll_triton, T, B, H, d, device)[1], reps)
            srwm_triton.NUM_WARPS[bd] = keep
            row = {"warps_sweep": f"T={T} B={B} {H}x{d}", "T": T, "B": B, "H": H, "d": d, "default": keep,
                   "fwdbwd_ms_by_warps": {w: round(v, 3) for w, v in res.items()},
                   "best": min(res, key=res.get)}
            out.append(row)
            print(json.dumps(row), flush=True)


def warps_table(rows: list[dict]) -> str:
    """Markdown: per head size and case, ms by warps, the shipped and the fastest setting."""
    ws = sorted({int(w) for r in rows for w in r["fwdbwd_ms_by_warps"]})
    lines = ["| H x d | T | B | " + " | ".join(f"{w} warps" for w in ws) + " | shipped | fastest |",
             "|---|---|---|" + "---|" * len(ws) + "---|---|"]
    for r in rows:
        ms = r["fwdbwd_ms_by_warps"]
        cells = [f"{ms[w]:.3f}" if w in ms else "-" for w in ws]
        lines.append(f"| {r['H']}x{r['d']} | {r['T']} | {r['B']} | " + " | ".join(cells)
                     + f" | {r['default']} | {r['best']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--B", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--T", type=int, nargs="+", default=[50, 256])
    ap.add_argument("--heads", nargs="+", default=["8x16", "4x32"], help="H x d with H * d = 128")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0, help="stop after this many seconds (0 = no limit)")
    ap.add_argument("--tiny", action="store_true", help="B=2, T=3, one rep: checks the script (CPU interpreter)")
    ap.add_argument("--warps-sweep", action="store_true",
                    help="first: triton forward + backward at B=256, T=50, for each --heads "
                         "and 1, 2, 4, 8 (16) warps per program")
    ap.add_argument("--warps-grid", action="store_true",
                    help="only the warps sweep, over every --T x --B x --heads, then its table")
    ap.add_argument("--out", help="write the results as JSON lines to this file")
    args = ap.parse_args()
    if args.tiny:
        args.B, args.T, args.reps = [2], [3], 1
    device = torch.device(args.device)
    paths = [p for p in args.paths if p != "triton" or triton_unavailable_reason(device) is None]
    if "triton" in args.paths and "triton" not in paths:
        print(f"triton path skipped: {triton_unavailable_reason(device)}", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device: {name}; torch {torch.__version__}; cudnn {torch.backends.cudnn.version()}", flush=True)
    head_shapes = [tuple(int(v) for v in spec.split("x")) for spec in args.heads]
    if (args.warps_sweep or args.warps_grid) and "triton" in paths:
        sizes = [(T, B) for T in args.T for B in args.B] if args.warps_grid or args.tiny else [(50, 256)]
        sweep: list[dict] = []
        warps_sweep(device, args.reps, sizes, head_shapes, sweep)
        if args.warps_grid:
            print(warps_table(sweep))
            if args.out:
                with open(args.out, "a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in sweep)
            return
    t_start, rows, stopped = time.time(), [], False
    for T in args.T:
        for B in args.B:
            for spec in args.heads:
                H, d = (int(v) for v in spec.split("x"))
                if args.budget and time.time() - t_start > args.budget:
                    stopped = True
                    break
                lstm = [timer(device, f, args.reps) for f in lstm_case(T, B, device)]
                row = {"device": name, "T": T, "B": B, "H": H, "d": d,
                       "lstm_fwd_ms": lstm[0], "lstm_fwdbwd_ms": lstm[1]}
                for p in paths:
                    fwd, fwd_bwd = srwm_case(PATHS[p], T, B, H, d, device)
                    row[f"{p}_fwd_ms"] = timer(device, fwd, args.reps)
                    row[f"{p}_fwdbwd_ms"] = timer(device, fwd_bwd, args.reps)
                    row[f"{p}_fwd_x_lstm"] = row[f"{p}_fwd_ms"] / lstm[0]
                    row[f"{p}_fwdbwd_x_lstm"] = row[f"{p}_fwdbwd_ms"] / lstm[1]
                if "triton" in paths:
                    row["triton_max_abs_err"] = triton_error(T, B, H, d, device)
                rows.append(row)
                print(json.dumps(row), flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    if stopped:
        print(f"stopped after {time.time() - t_start:.0f} s (--budget {args.budget}); the rest of the grid not run")
    heads = " | ".join(f"{p} fwd / fwd+bwd (x LSTM)" for p in paths)
    print(f"\n| T | B | H x d | LSTM fwd / fwd+bwd ms | {heads} |")
    print("|---|---|---|---|" + "---|" * len(paths))
    for r in rows:
        cells = [f"{r[f'{p}_fwd_ms']:.2f} / {r[f'{p}_fwdbwd_ms']:.2f} ({r[f'{p}_fwd_x_lstm']:.1f}x / "
                 f"{r[f'{p}_fwdbwd_x_lstm']:.1f}x)" for p in paths]
        print(f"| {r['T']} | {r['B']} | {r['H']}x{r['d']} | {r['lstm_fwd_ms']:.2f} / "
              f"{r['lstm_fwdbwd_ms']:.2f} | " + " | ".join(cells) + " |")
    target = [r for r in rows if r["T"] == 50 and r["B"] == 256 and r["H"] == 8 and "triton_fwdbwd_x_lstm" in r]
    for r in target:
        ok = r["triton_fwdbwd_x_lstm"] <= 2.0
        print(f"target (triton fwd+bwd <= 2x LSTM at B=256, T=50, 8x16): {r['triton_fwdbwd_x_lstm']:.2f}x "
              f"{'MET' if ok else 'NOT MET'}")
    if args.out:
        with open(args.out, "a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
