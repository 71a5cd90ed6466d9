"""Fused CPU SRWM: the whole unroll in one native call, forward and backward.

Same contract as :func:`srwm_rl.ops.srwm.srwm_unroll_cat` (concatenated layout, W = [W_y|W_q|W_k|w_b],
[d, 3d+4] per head). The kernel (``srwm_rl/ops/csrc/srwm_fused.cpp``, a plain C ABI loaded with ctypes)
keeps each (sample, head) matrix in cache for all T steps, splits the B*H pairs over
``torch.get_num_threads()`` threads, and saves only q, k, beta and u = v - vbar per step (plus the
weights just before each reset), rebuilding earlier weights in the backward pass exactly as
:mod:`srwm_rl.ops.srwm_lean` does. Saved memory grows as O(T*B*H*d).

The library is compiled on first use with the system C++ compiler (``$CXX`` or ``g++``, about
5 s) into ``$SRWM_RL_CACHE`` (default ``~/.cache/srwm_rl``)/fused/<key>, the key hashing the source,
the flags (OpenMP, and the AVX2/FMA/AVX-512 the CPU reports) and the compiler version; a file lock keeps
concurrent processes from building twice and the library is moved into place atomically. When it
cannot be built (no compiler, a failed build, ``SRWM_RL_NO_FUSED=1``), :func:`fused_available`
returns False, :func:`fused_unavailable_reason` says why, one RuntimeWarning says it once per process
(none when disabled on purpose by the variable), and :func:`srwm_unroll_fused` runs the pure path.
Tensors not on the CPU always take the pure path.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from srwm_rl.ops.srwm import check_cat_inputs, fast_width, srwm_unroll_cat

_SOURCE = Path(__file__).with_name("csrc") / "srwm_fused.cpp"
_ABI_VERSION = 1
_lock = threading.Lock()
_state: dict = {}          # "lib" -> ctypes.CDLL, or "reason" -> why there is none


def cache_dir() -> Path:
    """Root of the project's build cache: $SRWM_RL_CACHE, else $XDG_CACHE_HOME/srwm_rl or ~/.cache/srwm_rl."""
    env = os.environ.get("SRWM_RL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "srwm_rl"


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compile_flags(openmp: bool, isa: bool) -> list[str]:
    flags = ["-O3", "-std=gnu++17", "-shared", "-fPIC", "-pthread", "-ffp-contract=fast",
             "-fopenmp" if openmp else "-fopenmp-simd"]
    # Instruction sets the CPU reports (keyed into the cache path, so no cross-machine mix-up).
    # 512-bit vectors measured ~1.7x faster forward on this project's AMD EPYC machines; rows are
    # then padded to 16 floats so no loop has a remainder.
    cpu = _cpu_flags() if isa and platform.machine() in ("x86_64", "AMD64") else set()
    if {"avx2", "fma"} <= cpu:
        flags += ["-mavx2", "-mfma"]
        if {"avx512f", "avx512vl"} <= cpu:
            flags += ["-mavx512f", "-mavx512vl", "-mprefer-vector-width=512", "-DSRWM_PAD=16"]
    return flags


def _build() -> Path:
    """Compile (or find cached) the kernel library; returns its path or raises RuntimeError.

    With OpenMP first (the kernel then shares PyTorch's thread team) and the CPU's vector
    instructions; without them when that build fails.
    """
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler ({cxx!r} not found on PATH)")
    attempts = [(True, True), (True, False), (False, False)]     # (OpenMP, CPU-specific flags)
    for i, (openmp, isa) in enumerate(attempts):
        try:
            return _build_with(cxx, _compile_flags(openmp, isa))
        except RuntimeError:
            if i == len(attempts) - 1:
                raise
    raise AssertionError("unreachable")


def _build_with(cxx: str, flags: list[str]) -> Path:
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"{cxx} --version failed: {exc}") from exc
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(flags).encode(), version.encode(),
                                     platform.machine().encode()])).hexdigest()[:16]
    out_dir = cache_dir() / "fused" / key
    lib = out_dir / "srwm_fused.so"
    _state["build"] = f"{lib} ({' '.join(flags)})"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    import fcntl
    with open(out_dir / "build.lock", "w") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX)      # one builder at a time; others wait, then reuse
        except OSError:                                # no locks on this filesystem: the rename below
            pass                                       # still keeps the library whole
        if lib.exists():
            return lib
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = [cxx, *flags, str(_SOURCE), "-o", tmp]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            os.unlink(tmp)
            raise RuntimeError(f"compiler failed to run: {exc}") from exc
        if res.returncode != 0:
            os.unlink(tmp)
            first_error = next((ln for ln in res.stderr.splitlines() if "error" in ln), res.stderr[-200:])
            raise RuntimeError(f"build failed ({' '.join(cmd[:2])} ...): {first_error.strip()}")
        os.replace(tmp, lib)                            # atomic: readers never see a partial file
    return lib


def _load() -> Optional[ctypes.CDLL]:
    with _lock:
        if "lib" in _state or "reason" in _state:
            return _state.get("lib")
        if os.environ.get("SRWM_RL_NO_FUSED", "") not in ("", "0"):
            _state["reason"] = "disabled by SRWM_RL_NO_FUSED"
            return None
        try:
            lib = ctypes.CDLL(str(_build()))
            if lib.srwm_fused_abi_version() != _ABI_VERSION:
                raise RuntimeError("stale kernel library (ABI version mismatch)")
            P, I64, I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
            for name in ("srwm_fwd_f32", "srwm_fwd_f64"):
                getattr(lib, name).argtypes = [P] * 9 + [I64] * 4 + [I32]
                getattr(lib, name).restype = I32
            for name in ("srwm_bwd_f32", "srwm_bwd_f64"):
                getattr(lib, name).argtypes = [P] * 10 + [I64] * 4 + [I32]
                getattr(lib, name).restype = I32
            _state["lib"] = lib
        except Exception as exc:  # noqa: BLE001 - any failure means: use the pure path
            _state["reason"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warnings.warn(f"srwm fused CPU kernel unavailable ({_state['reason']}); "
                          "the pure PyTorch path runs instead", RuntimeWarning, stacklevel=3)
        return _state.get("lib")


def fused_available() -> bool:
    """True when the fused kernel is built and loaded (builds it on the first call)."""
    return _load() is not None


def fused_build_info() -> Optional[str]:
    """The library path and the compiler flags it was built with, or None when unavailable."""
    return _state.get("build") if fused_available() else None


def fused_unavailable_reason() -> Optional[str]:
    """Why the fused kernel is unavailable (one line), or None when it is available."""
    return None if fused_available() else _state.get("reason")


def _ptr(t: Optional[Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def _forward(x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor], save: bool):
    """Runs the kernel. Returns y, delta_out and, when ``save``, (w_final, saved, pre)."""
    lib = _state["lib"]
    T, B, H, d = x.shape
    m = fast_width(d)
    y = x.new_empty(T, B, H, d)
    delta_out = x.new_empty(B, H, d, m)
    wfinal = saved = pre = None
    if save:
        wfinal = x.new_empty(B, H, d, m)
        saved = x.new_empty(B * H, T, 5 * d + 8)                     # q, k, beta, u per step
        n_resets = int(first[1:].sum()) if first is not None else 0
        pre = x.new_empty(n_resets, H, d, m)                         # weights before each reset, t >= 1
    rc = getattr(lib, "srwm_fwd_" + _suffix(x.dtype))(
        _ptr(x), _ptr(w0), _ptr(delta), _ptr(first), _ptr(y), _ptr(delta_out), _ptr(wfinal),
        _ptr(saved), _ptr(pre), T, B, H, d, torch.get_num_threads())
    if rc != 0:
        raise RuntimeError("srwm fused forward failed (out of memory in the kernel)")
    return y, delta_out, (wfinal, saved, pre)


class _SRWMFused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor]):
        y, delta_out, (wfinal, saved, pre) = _forward(x, w0, delta, first, save=True)
        ctx.has_first = first is not None
        ctx.save_for_backward(x, wfinal, saved, pre, first if first is not None else x.new_empty(0))
        return y, delta_out

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Optional[Tensor], gdo: Optional[Tensor]):
        x, wfinal, saved, pre, first = ctx.saved_tensors
        first = first if ctx.has_first else None
        T, B, H, d = x.shape
        gy = None if gy is None else gy.contiguous()
        gdo = None if gdo is None else gdo.contiguous()
        gx = torch.empty_like(x)
        gdelta = torch.empty_like(wfinal)
        gacc = torch.empty_like(wfinal) if first is not None and bool(first.any()) else None
        rc = getattr(_state["lib"], "srwm_bwd_" + _suffix(x.dtype))(
            _ptr(x), _ptr(wfinal), _ptr(saved), _ptr(pre), _ptr(first), _ptr(gy), _ptr(gdo),
            _ptr(gx), _ptr(gdelta), _ptr(gacc), T, B, H, d, torch.get_num_threads())
        if rc != 0:
            raise RuntimeError("srwm fused backward failed (out of memory in the kernel)")
        gw0 = (gacc if gacc is not None else gdelta).sum(0)
        if gdo is not None:
            gw0 = gw0 - gdo.sum(0)                                   # delta_out = W_final - w0
        return gx, gw0, gdelta, None


def srwm_unroll_fused(x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor] = None
                      ) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`srwm_rl.ops.srwm.srwm_unroll_cat`, one fused native call per direction.

    x: [T, B, H, d]; w0: [H, d, 3d+4]; delta: [B, H, d, 3d+4]; first: bool [T, B] or None.
    Returns y [T, B, H, d] and delta_out [B, H, d, 3d+4]. First-order differentiable in x, w0 and
    delta; saved memory O(T*B*H*d). Falls back to the pure path (with one warning) when the kernel
    is unavailable, and silently for tensors not on the CPU.
    """
    check_cat_inputs(x, w0, delta, first)
    if x.device.type != "cpu" or w0.device.type != "cpu" or delta.device.type != "cpu":
        return srwm_unroll_cat(x, w0, delta, first)
    if not fused_available():                         # it has warned once, saying why
        return srwm_unroll_cat(x, w0, delta, first)
    if first is not None and first.device.type != "cpu":
        raise ValueError(f"first is on {first.device}, expected the device of x (cpu)")
    x, w0, delta = x.contiguous(), w0.contiguous(), delta.contiguous()
    first = None if first is None else first.contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or w0.requires_grad or delta.requires_grad):
        return _SRWMFused.apply(x, w0, delta, first)
    y, delta_out, _ = _forward(x, w0, delta, first, save=False)
    return y, delta_out
