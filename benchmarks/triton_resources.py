"""Compile the Triton SRWM kernels for a GPU without one, and print their registers and spills.

    .venv/bin/python benchmarks/triton_resources.py            # sm_90 (Hopper), every head size and warps
    .venv/bin/python benchmarks/triton_resources.py --quick    # the shipped warps only (tests use this)

Triton compiles a kernel to a cubin on a machine without a GPU (the x86 wheels ship ptxas); this
checks that the kernels get through the real compiler (the CPU interpreter accepts code the compiler
rejects) and reads each cubin's resource usage with the wheel's cuobjdump: registers per thread and
STACK bytes (spilled registers). Exit 1 when any compile fails. Run without TRITON_INTERPRET.
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from srwm_rl.ops import srwm_triton_kernels as K  # noqa: E402
from srwm_rl.ops.srwm_triton import NUM_WARPS  # noqa: E402


def signature(fn, consts: dict) -> dict[str, str]:
    out = {}
    for name in inspect.signature(fn.fn).parameters:
        if name in consts:
            out[name] = "constexpr"
        elif name in ("rst_ptr", "slot_ptr"):
            out[name] = "*i32"
        elif name.endswith("_ptr"):
            out[name] = "*fp32"
        else:
            out[name] = "i32"
    return out


def compile_one(fn, consts: dict, warps: int, arch: int) -> dict:
    t = time.time()
    k = triton.compile(ASTSource(fn=fn, signature=signature(fn, consts), constexprs=consts),
                       target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    res = {"compile_s": round(time.time() - t, 1)}
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if os.path.exists(cuobjdump):
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(k.asm["cubin"])
            f.flush()
            usage = subprocess.run([cuobjdump, "-res-usage", f.name], capture_output=True, text=True).stdout
        for key in ("REG", "STACK"):
            m = re.search(rf"{key}:(\d+)", usage)
            res[key.lower()] = int(m.group(1)) if m else None
    return res


# The kernels' constexpr branches: (forward flags, backward flags). The first is the full case; the
# others cover inference with resets (actors, evaluation), training on y only with a detached state,
# and the branches without resets.
VARIANTS = [
    (dict(HAS_FIRST=True, SAVE=True), dict(HAS_FIRST=True, HAS_GY=True, HAS_GDO=True)),
    (dict(HAS_FIRST=True, SAVE=False), dict(HAS_FIRST=False, HAS_GY=True, HAS_GDO=False)),
    (dict(HAS_FIRST=False, SAVE=False), dict(HAS_FIRST=True, HAS_GY=False, HAS_GDO=True)),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90 = H100/H200)")
    ap.add_argument("--quick", action="store_true", help="only the shipped warps per head size, plus the "
                                                         "kernels' other constexpr branches at d = 16")
    ap.add_argument("--expect", type=int, help="exit 1 unless this many kernels compiled")
    args = ap.parse_args()
    cases = []
    for bd, shipped in NUM_WARPS.items():
        for w in ([shipped] if args.quick else sorted({max(1, shipped // 2), shipped, shipped * 2})):
            cases.append((bd, w, 0))
    for v in range(1, len(VARIANTS)):     # the other constexpr branches, at the paper's head size
        cases.append((16, NUM_WARPS[16], v))
    failed = 0
    print(f"triton {triton.__version__}, sm_{args.arch}")
    compiled = 0
    for bd, w, v in cases:
        fwd_flags, bwd_flags = VARIANTS[v]
        for name, fn, consts in (("forward", K.srwm_fwd_kernel, dict(fwd_flags, BD=bd)),
                                 ("backward", K.srwm_bwd_kernel, dict(bwd_flags, BD=bd))):
            flags = " ".join(f"{k}={int(val)}" for k, val in consts.items() if k != "BD")
            try:
                res = compile_one(fn, consts, w, args.arch)
                compiled += 1
                print(f"{name:8s} BD={bd:3d} warps={w:2d} registers={res.get('reg')} "
                      f"spill_stack_bytes={res.get('stack')} ({res['compile_s']} s) {flags}", flush=True)
            except Exception as exc:  # noqa: BLE001 - report every failure, then exit 1
                failed += 1
                print(f"{name:8s} BD={bd:3d} warps={w:2d} FAILED: {type(exc).__name__}: "
                      f"{str(exc)[:2000]} {flags}", flush=True)
    if args.expect is not None and compiled != args.expect:
        print(f"compiled {compiled} kernels, expected {args.expect}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
