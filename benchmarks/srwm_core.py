"""SRWM core benchmark: speed and saved memory of the SRWM recurrence paths.

    .venv/bin/python benchmarks/srwm_core.py            # full run (a few minutes)
    .venv/bin/python benchmarks/srwm_core.py --quick    # short run, T=64 only, fewer repeats

Speed: milliseconds per time step at B=64, width 128 (8 heads of 16 and 4 heads of 32), T=64 and
T=256, for the forward pass alone (torch.inference_mode) and for forward + backward, as ratios to
nn.LSTM(128, 128) over the whole sequence, measured in the same run. Paths: SRWM pure (plain
autograd), lean (custom backward, saves O(T*H*d)), fused (one native call per direction),
and the Delta Net recurrence (srwm_rl.nn.layers.delta_unroll, same heads) for comparison. Every path
receives precomputed per-head inputs (after phi); nn.LSTM includes its input projection. Forward +
backward: loss gradient on the outputs only (the carried state is detached at unroll borders, as in
training); gradients reach the inputs and the learned parameters (W0, the LSTM weights).

Method: the paths are timed in interleaved rounds (each round times every path a few times); a
ratio is taken inside each round and the median over rounds is reported, so machine noise that
lasts longer than a round cancels out.

Memory: bytes of the tensors the autograd graph keeps for the backward pass after a forward pass
(every tensor passed to save_for_backward, caught with torch.autograd.graph.saved_tensors_hooks,
plus tensors a custom Function keeps as ctx attributes), counted once per storage, excluding the
inputs themselves, at B=64, H=8, d=16, float32, for T = 32, 128, 512.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from srwm_rl.ops import srwm_fused  # noqa: E402
from srwm_rl.ops.srwm import fast_width, srwm_unroll_cat  # noqa: E402
from srwm_rl.ops.srwm_lean import srwm_unroll_lean  # noqa: E402

try:  # the Delta Net recurrence lives with the layers
    from srwm_rl.nn.layers import delta_unroll  # noqa: E402
except ImportError:  # pragma: no cover - older trees
    delta_unroll = None

B, WIDTH = 64, 128


# ------------------------------------------------------------------------------------------------
# The paths, each as (forward-only closure, forward+backward closure) on fixed inputs.
# ------------------------------------------------------------------------------------------------

def lstm_case(T: int):
    torch.manual_seed(0)
    lstm = nn.LSTM(WIDTH, WIDTH)
    x = torch.randn(T, B, WIDTH)
    xg = x.clone().requires_grad_()
    gy = torch.randn(T, B, WIDTH)

    def fwd():
        with torch.inference_mode():
            lstm(x)

    def fwd_bwd():
        out, _ = lstm(xg)
        out.backward(gy)
        xg.grad = None
        lstm.zero_grad(set_to_none=True)

    return fwd, fwd_bwd


def srwm_inputs(T: int, H: int, d: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    m = fast_width(d)
    x = torch.softmax(torch.randn(T, B, H, d, generator=g, dtype=dtype), -1)
    w0 = torch.randn(H, d, m, generator=g, dtype=dtype) / d ** 0.5
    delta = 0.1 * torch.randn(B, H, d, m, generator=g, dtype=dtype)
    return x, w0, delta


def srwm_case(unroll: Callable, T: int, H: int, d: int):
    x, w0, delta = srwm_inputs(T, H, d)
    xg, w0g = x.clone().requires_grad_(), w0.clone().requires_grad_()
    gy = torch.randn(T, B, H, d)

    def fwd():
        with torch.inference_mode():
            unroll(x, w0, delta, None)

    def fwd_bwd():
        y, _ = unroll(xg, w0g, delta, None)
        y.backward(gy)
        xg.grad = w0g.grad = None

    return fwd, fwd_bwd


def delta_inputs(T: int, H: int, d: int):
    g = torch.Generator().manual_seed(0)
    q = torch.softmax(torch.randn(T, B, H, d, generator=g), -1)
    k = torch.softmax(torch.randn(T, B, H, d, generator=g), -1)
    v = torch.randn(T, B, H, d, generator=g)
    beta = torch.sigmoid(torch.randn(T, B, H, 1, generator=g))
    w = 0.1 * torch.randn(B, H, d, d, generator=g)
    return q, k, v, beta, w


def delta_case(T: int, H: int, d: int):
    q, k, v, beta, w = delta_inputs(T, H, d)
    grads = [t.clone().requires_grad_() for t in (q, k, v, beta)]
    gy = torch.randn(T, B, H, d)

    def fwd():
        with torch.inference_mode():
            delta_unroll(q, k, v, beta, w, None)

    def fwd_bwd():
        out, _ = delta_unroll(*grads, w, None)
        out.backward(gy)
        for t in grads:
            t.grad = None

    return fwd, fwd_bwd


def paths(T: int, H: int, d: int) -> dict[str, tuple[Callable, Callable]]:
    out = {"nn.LSTM": lstm_case(T),
           "srwm pure": srwm_case(srwm_unroll_cat, T, H, d),
           "srwm lean": srwm_case(srwm_unroll_lean, T, H, d)}
    if srwm_fused.fused_available():
        out["srwm fused"] = srwm_case(srwm_fused.srwm_unroll_fused, T, H, d)
    if delta_unroll is not None:
        out["delta net"] = delta_case(T, H, d)
    return out


# ------------------------------------------------------------------------------------------------
# Timing: interleaved rounds, ratio to the LSTM inside each round, median over rounds.
# ------------------------------------------------------------------------------------------------

CLOCK = time.perf_counter           # --cpu-time: time.process_time


def time_once(fn: Callable) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def measure(fns: dict[str, Callable], rounds: int, per_round_s: float) -> dict[str, tuple[float, float]]:
    """{name: (median seconds per call, median ratio to 'nn.LSTM')}."""
    reps = {}
    for name, fn in fns.items():
        fn()                                                    # warm-up (and build, allocator)
        reps[name] = max(1, min(20, int(per_round_s / max(time_once(fn), 1e-6))))
    times = {name: [] for name in fns}
    ratios = {name: [] for name in fns}
    for _ in range(rounds):
        this_round = {}
        for name, fn in fns.items():
            this_round[name] = statistics.median(time_once(fn) for _ in range(reps[name]))
            times[name].append(this_round[name])
        for name in fns:
            ratios[name].append(this_round[name] / this_round["nn.LSTM"])
    return {name: (statistics.median(times[name]), statistics.median(ratios[name])) for name in fns}


def speed_table(shapes, Ts, rounds: int, per_round_s: float) -> None:
    clock = "CPU time" if CLOCK is time.process_time else "wall clock"
    print(f"\n## Speed: ms per time step (ratio to nn.LSTM in the same round), B={B}, width {WIDTH}, "
          f"{torch.get_num_threads()} thread(s), {clock}")
    for H, d in shapes:
        for T in Ts:
            cases = paths(T, H, d)
            fwd = measure({n: c[0] for n, c in cases.items()}, rounds, per_round_s)
            fb = measure({n: c[1] for n, c in cases.items()}, rounds, per_round_s)
            print(f"\nH={H}, d={d}, T={T}")
            print(f"  {'path':<12} {'forward':>18} {'forward+backward':>20}")
            for name in cases:
                (tf, rf), (tb, rb) = fwd[name], fb[name]
                print(f"  {name:<12} {tf * 1e3 / T:8.3f} ({rf:5.2f}x) {tb * 1e3 / T:10.3f} ({rb:5.2f}x)")
            del cases


# ------------------------------------------------------------------------------------------------
# Saved memory.
# ------------------------------------------------------------------------------------------------

def _tensors_in(obj, depth: int = 0):
    if isinstance(obj, Tensor):
        yield obj
    elif depth < 3 and isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors_in(o, depth + 1)
    elif depth < 3 and isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors_in(o, depth + 1)


def saved_bytes(run: Callable[[], tuple], exclude: tuple[Tensor, ...]) -> int:
    """Bytes the autograd graph of run()'s outputs keeps for backward, once per storage."""
    storages: dict[int, int] = {}

    def add(t: Tensor) -> None:
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()

    def pack(t: Tensor) -> Tensor:
        add(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = run()
    seen, stack = set(), [o.grad_fn for o in outs if isinstance(o, Tensor) and o.grad_fn is not None]
    while stack:                          # custom Functions may keep tensors as ctx attributes
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for value in getattr(node, "__dict__", {}).values():
            for t in _tensors_in(value):
                add(t)
        stack.extend(fn for fn, _ in node.next_functions)
    for t in exclude:
        storages.pop(t.untyped_storage().data_ptr(), None)
    del outs
    return sum(storages.values())


def memory_table(Ts, H: int = 8, d: int = 16) -> None:
    print(f"\n## Saved memory for backward (MiB), B={B}, H={H}, d={d}, float32; excluding the inputs")
    names = ["srwm pure", "srwm lean", "srwm fused", "delta net", "nn.LSTM"]
    rows = {n: [] for n in names}
    for T in Ts:
        x, w0, delta = srwm_inputs(T, H, d)
        xg, w0g = x.clone().requires_grad_(), w0.clone().requires_grad_()
        for name, fn in (("srwm pure", srwm_unroll_cat), ("srwm lean", srwm_unroll_lean),
                         ("srwm fused", srwm_fused.srwm_unroll_fused)):
            if name == "srwm fused" and not srwm_fused.fused_available():
                rows[name].append(float("nan"))
                continue
            rows[name].append(saved_bytes(lambda: fn(xg, w0g, delta, None), (xg, w0g, delta)))
        if delta_unroll is not None:
            ins = [t.requires_grad_() for t in delta_inputs(T, H, d)[:4]]
            w = torch.zeros(B, H, d, d)
            rows["delta net"].append(saved_bytes(lambda: delta_unroll(*ins, w, None), (*ins, w)))
        else:
            rows["delta net"].append(float("nan"))
        lstm = nn.LSTM(WIDTH, WIDTH)
        xl = torch.randn(T, B, WIDTH, requires_grad=True)
        rows["nn.LSTM"].append(saved_bytes(lambda: lstm(xl), (xl, *lstm.parameters())))
    print(f"  {'path':<12}" + "".join(f"{'T=' + str(T):>12}" for T in Ts) + f"{'bytes per step and sample':>28}")
    for name in names:
        vals = rows[name]
        per = (vals[-1] - vals[0]) / (Ts[-1] - Ts[0]) / B           # slope: what each extra step costs
        print(f"  {name:<12}" + "".join(f"{v / 2 ** 20:12.2f}" for v in vals) + f"{per:28.0f}")
    m = fast_width(d)
    print(f"  (per sample and step, H={H} heads: fast weights H*d*(3d+4) = {4 * H * d * m} bytes; "
          f"q, k, beta, v-vbar: H*(5d+8) floats = {4 * H * (5 * d + 8)} bytes)")


# ------------------------------------------------------------------------------------------------
# End to end: env steps/s of SRWM-PPO with each recurrence path (the `srwm-rl train` CLI).
# ------------------------------------------------------------------------------------------------

E2E = {  # name -> CLI arguments; small runs, long enough for a steady steps/s
    "cartpole-novel": ["--preset", "cartpole-novel", "--total_steps", "8192"],
    "procgen bigfish": ["--preset", "procgen", "--env.num_envs", "16", "--total_steps", "8192"],
}


def e2e_table(impls=("pure", "lean", "fused")) -> None:
    import csv
    import subprocess
    import tempfile
    exe = os.path.join(os.path.dirname(sys.executable), "srwm-rl")
    print("\n## End to end: SRWM-PPO env steps/s (whole training loop: rollout + update)")
    for name, extra in E2E.items():
        row = []
        for impl in impls:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [exe, "train", *extra, "--core.impl", impl, "--torch_threads", str(torch.get_num_threads()),
                       "--log_every", "1", "--run_dir", os.path.join(tmp, "run"), "--no-progress"]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    row.append(f"{impl}: failed ({res.stderr.strip().splitlines()[-1:]})")
                    continue
                with open(os.path.join(tmp, "run", "metrics.csv"), newline="") as f:
                    sps = float(list(csv.DictReader(f))[-1]["sps"])
                row.append(f"{impl} {sps:8.0f}")
        print(f"  {name:<16} " + "   ".join(row))
    print("  (" + "; ".join(f"{k}: srwm-rl train {' '.join(v)}" for k, v in E2E.items()) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="T=64 only, fewer rounds (about a minute)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--e2e", action="store_true", help="also time short SRWM-PPO runs with each path")
    ap.add_argument("--cpu-time", action="store_true",
                    help="one thread, timed by this process's CPU time instead of the wall clock: a cross-check "
                         "that other processes on the same cores hardly disturb")
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        args.threads, CLOCK = 1, time.process_time
    torch.set_num_threads(args.threads)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"# SRWM core benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, "
          f"{os.cpu_count()} CPUs")
    load = lambda: open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"  # noqa: E731
    print(f"load average at start: {load()} (other processes on these cores skew the figures)")
    t0 = time.perf_counter()
    if srwm_fused.fused_available():
        print(f"fused kernel ready in {time.perf_counter() - t0:.1f} s: {srwm_fused.fused_build_info()}")
    else:
        print(f"fused kernel: unavailable ({srwm_fused.fused_unavailable_reason()})")
    if delta_unroll is None:
        print("delta net: srwm_rl.nn.layers.delta_unroll not found; not benchmarked")
    if args.quick:
        speed_table([(8, 16), (4, 32)], [64], rounds=3, per_round_s=0.15)
        memory_table([32, 128, 512])
    else:
        speed_table([(8, 16), (4, 32)], [64, 256], rounds=7, per_round_s=0.3)
        memory_table([32, 128, 512])
    if args.e2e:
        e2e_table()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average at the end: {load()}")


if __name__ == "__main__":
    main()
