"""SRWM on a GPU: the whole unroll as one Triton kernel per direction (docs/srwm_triton.md).

Same contract as :func:`srwm_rl.ops.srwm.srwm_unroll_cat` (concatenated layout, W = [W_y|W_q|W_k|w_b],
[d, 3d+4] per head). One Triton program per (sample, head) keeps its fast weights on chip for all T
steps; the forward pass saves only q, k, beta and u = v - vbar per step (plus the weights just before
each reset, and the final weights), and the backward kernel rebuilds earlier weights in reverse exactly
as :mod:`srwm_rl.ops.srwm_lean` and the fused CPU kernel do. Saved memory grows as O(T*B*H*d).

Triton is an optional dependency (``pip install srwm-rl[gpu]``): it is imported on first use, so this
module imports without it. The kernel runs on CUDA tensors, and on CPU tensors under Triton's
interpreter (``TRITON_INTERPRET=1``, slow: for tests only). :func:`triton_available` says whether it
can run on a device here and :func:`triton_unavailable_reason` why not. Head sizes up to
:data:`MAX_HEAD_DIM`; float32 (float64 works too, for finite-difference tests).
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from srwm_rl.ops.srwm import check_cat_inputs, fast_width, srwm_unroll_cat

MAX_HEAD_DIM = 128
_state: dict = {}          # "kernels" -> the kernels module, or "reason" -> why it cannot be imported


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "") not in ("", "0")


def _kernels():
    """The kernels module (imports triton on the first call), or None when triton is missing."""
    if "kernels" not in _state and "reason" not in _state:
        try:
            from srwm_rl.ops import srwm_triton_kernels
            _state["kernels"] = srwm_triton_kernels
        except Exception as exc:  # noqa: BLE001 - ImportError, or a triton that fails to initialise
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            _state["reason"] = (f"triton cannot be imported ({type(exc).__name__}: {first_line}); "
                                "install the extra: pip install 'srwm-rl[gpu]'")
    return _state.get("kernels")


def triton_unavailable_reason(device: torch.device | str = "cuda") -> Optional[str]:
    """Why the kernel cannot run on ``device`` here (one line), or None when it can."""
    device = torch.device(device)
    if _kernels() is None:
        return _state["reason"]
    if device.type == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device"
    if device.type == "cpu":
        return None if interpreting() else "CPU tensors need Triton's interpreter (TRITON_INTERPRET=1)"
    return f"device type {device.type!r} is not supported (cuda, or cpu under TRITON_INTERPRET=1)"


def triton_available(device: torch.device | str = "cuda") -> bool:
    """True when the kernel can run on ``device`` here."""
    return triton_unavailable_reason(device) is None


# Warps per program by padded head size, measured on an H200 (benchmarks/srwm_gpu.py --warps-grid,
# forward + backward, B = 64/256/1024 x T = 50/256; BENCHMARKS.md "SRWM on a GPU"): one warp was the
# fastest for d = 16 and d = 32 in 5 of 6 cases each (up to 2.5x faster than the 2 and 4 warps chosen
# before from register counts alone), four warps for d = 64 in 6 of 6 (2x faster than eight). d <= 8
# needs no more than one; d = 128 (16 warps) is unmeasured.
NUM_WARPS: dict[int, int] = {4: 1, 8: 1, 16: 1, 32: 1, 64: 4, 128: 16}


def _block(d: int) -> tuple[int, int]:
    """Padded head size (a power of two) and the warps per program for head size d."""
    bd = max(4, 1 << (d - 1).bit_length())
    return bd, NUM_WARPS[bd]


def _resets(first: Optional[Tensor], T: int, B: int, device) -> tuple[Tensor, Tensor, int, bool]:
    """rst int32 [T, B] (1 = reset before step t), slot int32 [T, B] (index of the saved pre-reset
    weights, -1 where none is saved: no reset, or a reset at t = 0), the slot count, and whether
    there is any reset (read from the device in one sync)."""
    if first is None:
        z = torch.zeros(1, dtype=torch.int32, device=device)
        return z, z, 0, False
    rst = first.to(torch.int32)
    later = rst.clone()
    later[0] = 0
    count = later.flatten().cumsum(0).view(T, B)
    slot = torch.where(later.bool(), count - 1, torch.full_like(count, -1)).to(torch.int32)
    n_slots, n_resets = torch.stack([count[-1, -1], rst.sum()]).tolist()
    return rst.contiguous(), slot.contiguous(), int(n_slots), n_resets > 0


def _forward(x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor], save: bool):
    """Runs the forward kernel. Returns y, delta_out and, when ``save``, what backward needs."""
    kern = _kernels()
    T, B, H, d = x.shape
    m, n = fast_width(d), B * H
    bd, warps = _block(d)
    rst, slot, n_slots, any_reset = _resets(first, T, B, x.device)
    y = x.new_empty(T, B, H, d)
    delta_out = x.new_empty(B, H, d, m)
    if save:
        wfin, qs, ks = x.new_empty(B, H, d, m), x.new_empty(T, n, d), x.new_empty(T, n, d)
        betas, us, pre = x.new_empty(T, n, 4), x.new_empty(T, n, m), x.new_empty(max(n_slots, 1), H, d, m)
    else:
        wfin = qs = ks = betas = us = pre = delta_out                   # never written (SAVE=False)
    kern.srwm_fwd_kernel[(n,)](x, w0, delta, rst, slot, y, delta_out, wfin, qs, ks, betas, us, pre,
                               T, B, H, d, HAS_FIRST=first is not None, SAVE=save, BD=bd, num_warps=warps)
    return y, delta_out, any_reset, (wfin, qs, ks, betas, us, pre, rst, slot)


class _SRWMTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor]):
        y, delta_out, any_reset, saved = _forward(x, w0, delta, first, save=True)
        ctx.has_first = any_reset
        ctx.save_for_backward(x, *saved)
        return y, delta_out

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Optional[Tensor], gdo: Optional[Tensor]):
        x, wfin, qs, ks, betas, us, pre, rst, slot = ctx.saved_tensors
        T, B, H, d = x.shape
        bd, warps = _block(d)
        gy = None if gy is None else gy.contiguous()
        gdo = None if gdo is None else gdo.contiguous()
        gx = torch.empty_like(x)
        gdelta = torch.empty_like(wfin)
        gacc = torch.zeros_like(wfin) if ctx.has_first else gdelta      # W0's share from resets
        _kernels().srwm_bwd_kernel[(B * H,)](
            x, wfin, qs, ks, betas, us, pre, rst, slot,
            gx if gy is None else gy, gx if gdo is None else gdo, gx, gdelta, gacc,
            T, B, H, d, HAS_FIRST=ctx.has_first, HAS_GY=gy is not None, HAS_GDO=gdo is not None,
            BD=bd, num_warps=warps)
        gw0 = gdelta.sum(0)                                              # W_init = W0 + delta
        if ctx.has_first:
            gw0 = gw0 + gacc.sum(0)
        if gdo is not None:
            gw0 = gw0 - gdo.sum(0)                                       # delta_out = W_final - W0
        return gx, gw0, gdelta, None


def srwm_unroll_triton(x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor] = None
                       ) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`srwm_rl.ops.srwm.srwm_unroll_cat`, one Triton kernel per direction.

    x: [T, B, H, d]; w0: [H, d, 3d+4]; delta: [B, H, d, 3d+4]; first: bool [T, B] or None.
    Returns y [T, B, H, d] and delta_out [B, H, d, 3d+4]. First-order differentiable in x, w0 and
    delta; saved memory O(T*B*H*d). Raises RuntimeError when the kernel cannot run on x's device
    (see :func:`triton_unavailable_reason`); head sizes above MAX_HEAD_DIM take the pure path with
    a warning.
    """
    check_cat_inputs(x, w0, delta, first)
    devices = {t.device for t in (x, w0, delta)} | ({first.device} if first is not None else set())
    if len(devices) != 1:
        raise ValueError(f"x, W0, delta and first must be on one device, got {sorted(map(str, devices))}")
    reason = triton_unavailable_reason(x.device)
    if reason is not None:
        raise RuntimeError(f"srwm triton kernel cannot run on {x.device}: {reason}")
    d = x.shape[-1]
    if d > MAX_HEAD_DIM:
        warnings.warn(f"srwm triton kernel: head size {d} > {MAX_HEAD_DIM}; the pure path runs instead",
                      RuntimeWarning, stacklevel=2)
        return srwm_unroll_cat(x, w0, delta, first)
    x, w0, delta = x.contiguous(), w0.contiguous(), delta.contiguous()
    first = None if first is None else first.contiguous()
    if torch.is_grad_enabled() and (x.requires_grad or w0.requires_grad or delta.requires_grad):
        return _SRWMTriton.apply(x, w0, delta, first)
    y, delta_out, _, _ = _forward(x, w0, delta, first, save=False)
    return y, delta_out
