"""Memory layers the cores stack: SRWM, Delta Net, Fake SR, and the feed-forward block.

Every layer maps h [T, B, D] to [T, B, D] (residual inside) and takes its own state as a value.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srwm_rl.ops.srwm import fast_width, srwm_unroll_cat
from srwm_rl.ops.srwm_lean import srwm_unroll_lean

Unroll = Callable[[Tensor, Tensor, Tensor, Optional[Tensor]], tuple[Tensor, Tensor]]

NORMS = ("none", "pre", "post")


def _fused() -> Optional[Unroll]:
    """The fused CPU kernel if it can be built here, else None (it warns once, saying why)."""
    try:
        from srwm_rl.ops.srwm_fused import fused_available, srwm_unroll_fused
    except ImportError:
        return None
    return srwm_unroll_fused if fused_available() else None


def _triton(device: torch.device) -> Optional[Unroll]:
    """The Triton kernel if it can run on ``device`` here (triton installed; CUDA, or the
    interpreter for CPU tensors), else None."""
    from srwm_rl.ops.srwm_triton import srwm_unroll_triton, triton_available
    return srwm_unroll_triton if triton_available(device) else None


# Implementations of the SRWM recurrence on the concatenated layout, all with the same contract:
# name -> loader(device) returning the unroll function, or None when it cannot run there.
SRWM_IMPLS: dict[str, Callable[[torch.device], Optional[Unroll]]] = {
    "pure": lambda device: srwm_unroll_cat,
    "lean": lambda device: srwm_unroll_lean,
    "fused": lambda device: _fused(),
    "triton": _triton,
}
# 'auto': the first implementation that can run, per device type, fastest measured first
# (benchmarks/srwm_core.py and benchmarks/gpu_check.sh, BENCHMARKS.md); lean elsewhere.
AUTO_ORDER: dict[str, tuple[str, ...]] = {"cpu": ("fused", "lean"), "cuda": ("triton", "lean")}
FALLBACK = "lean"


def resolve_impl(impl: str, device: torch.device) -> Unroll:
    """Pick the SRWM path: 'auto' or a name in SRWM_IMPLS ('pure', 'lean', 'fused', 'triton').

    'auto' is the fastest measured path: the fused kernel on the CPU (forward + backward ~1x
    nn.LSTM), the Triton kernel on CUDA when triton is installed, else the lean path (about half
    the pure path's time and O(T*H*d) saved memory). A named path that cannot run here warns once
    and the lean path runs.
    """
    for name in AUTO_ORDER.get(device.type, (FALLBACK,)) if impl == "auto" else (impl,):
        unroll = SRWM_IMPLS[name](device)
        if unroll is not None:
            return unroll
    if impl != "auto":
        _warn_unavailable(impl, device)
    return SRWM_IMPLS[FALLBACK](device)


_warned: set[tuple[str, str]] = set()


def _warn_unavailable(impl: str, device: torch.device) -> None:
    if (impl, device.type) in _warned:
        return
    _warned.add((impl, device.type))
    why = ""
    if impl == "triton":
        from srwm_rl.ops.srwm_triton import triton_unavailable_reason
        why = f" ({triton_unavailable_reason(device)})"
    warnings.warn(f"srwm impl {impl!r} is unavailable on {device.type}{why}; using the {FALLBACK!r} path",
                  RuntimeWarning, stacklevel=3)


class FeedForward(nn.Module):
    """Pre-LayerNorm residual block: h + W2 relu(W1 LN(h)). [T, B, D] -> [T, B, D]."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mult * dim)
        self.fc2 = nn.Linear(mult * dim, dim)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.fc2(F.relu(self.fc1(self.norm(h))))


class ShortConv(nn.Module):
    """Causal depthwise convolution over time of width K: out_t = sum_j w_j * h_{t-j}, j = 0..K-1.

    Each channel mixes its current input with its K - 1 previous ones (a "short convolution", as
    linear-attention and fast-weight layers use in front of their memory). An episode start clears
    the history: inputs from before a reset count as zeros. No bias (the input projection has one).

    h [T, B, D], state: the previous K - 1 inputs [B, K - 1, D] (oldest first, already zeroed where a
    reset cut them off), first: bool [T, B] or None. Returns (out [T, B, D], new state).
    """

    def __init__(self, dim: int, width: int):
        super().__init__()
        if width < 2:
            raise ValueError(f"short convolution width={width}: must be >= 2")
        self.width = width
        # nn.Conv1d's default for a depthwise kernel: U(-1/sqrt(K), 1/sqrt(K)). Starting from the
        # identity (w_0 = 1, the rest 0) instead, RMSprop at 1e-3 needed ~500k env steps to form
        # differences of consecutive inputs on CartPole without velocity (BENCHMARKS.md, "Wave 6").
        bound = 1.0 / math.sqrt(width)
        self.weight = nn.Parameter(torch.empty(width, dim).uniform_(-bound, bound))

    def state_shape(self) -> tuple[int, ...]:
        return (self.width - 1, self.weight.shape[1])

    def forward(self, h: Tensor, hist: Tensor, first: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        T, B, _ = h.shape
        K = self.width
        padded = torch.cat([hist.transpose(0, 1), h])                   # [K - 1 + T, B, D]
        # alive[t]: no reset before step t; row T stands for the next call's first step (its own
        # reset, if any, is applied then).
        alive = torch.ones(T + 1, B, dtype=torch.bool, device=h.device)
        if first is not None:
            alive[:T] = ~first
        keep, out, new_hist = alive, self.weight[0] * h, []
        for j in range(1, K):
            # lag j at step t (t = 0..T): input t - j, kept when no reset at steps t - j + 1 .. t
            lagged = padded[K - 1 - j:K + T - j] * keep.unsqueeze(-1).to(h.dtype)   # [T + 1, B, D]
            out = out + self.weight[j] * lagged[:T]
            new_hist.append(lagged[T])
            keep = keep & torch.cat([alive.new_ones(j, B), alive])[:T + 1]   # alive[t - j], True before 0
        return out, torch.stack(new_hist[::-1], dim=1)


class _Residual(nn.Module):
    """Shared residual wiring with a norm placement: 'none' h + f(h), 'pre' h + f(LN h), 'post' LN(h + f(h))."""

    def __init__(self, dim: int, norm: str):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not one of {NORMS}")
        self.norm_kind = norm
        self.norm = nn.LayerNorm(dim) if norm != "none" else nn.Identity()

    def layer_in(self, h: Tensor) -> Tensor:
        return self.norm(h) if self.norm_kind == "pre" else h

    def layer_out(self, h: Tensor, out: Tensor) -> Tensor:
        return self.norm(h + out) if self.norm_kind == "post" else h + out


class SRWMLayer(_Residual):
    """One SRWM layer, H heads of size d, D = H * d (srwm.md section 2).

    State: delta [B, H, d, 3d + 4], the change of the fast weights from the learned start W0.
    """

    def __init__(self, dim: int, heads: int, *, input_softmax: bool = True, norm: str = "none",
                 beta_init: float = 0.0, w0_scale: float = 1.0, impl: str = "auto",
                 detach_every_step: bool = False):
        super().__init__(dim, norm)
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by heads={heads}")
        self.heads, self.head_dim = heads, dim // heads
        d, std = self.head_dim, w0_scale / math.sqrt(self.head_dim)
        self.W_y = nn.Parameter(torch.randn(heads, d, d) * std)
        self.W_q = nn.Parameter(torch.randn(heads, d, d) * std)
        self.W_k = nn.Parameter(torch.randn(heads, d, d) * std)
        # With the input softmax x sums to one, so a constant added to w_b is a bias on beta's logits;
        # without it the shift is beta_init * sum(x) (x >= 0 after the ReLU input projection and no norm).
        self.w_b = nn.Parameter(torch.randn(heads, d, 4) * std + beta_init)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.input_softmax, self.impl, self.detach_every_step = input_softmax, impl, detach_every_step

    def state_shape(self) -> tuple[int, ...]:
        return (self.heads, self.head_dim, fast_width(self.head_dim))

    def w0(self) -> Tensor:
        """The learned start, concatenated: [H, d, 3d + 4]."""
        return torch.cat([self.W_y, self.W_q, self.W_k, self.w_b], dim=-1)

    def forward(self, h: Tensor, delta: Tensor, first: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        T, B, D = h.shape
        x = self.layer_in(h).reshape(T, B, self.heads, self.head_dim)
        if self.input_softmax:
            x = torch.softmax(x, dim=-1)
        unroll, w0 = resolve_impl(self.impl, h.device), self.w0()
        if self.detach_every_step:  # the authors' RL training: no gradient through self-modification
            ys = []
            for t in range(T):
                y_t, delta = unroll(x[t:t + 1], w0, delta.detach(), None if first is None else first[t:t + 1])
                ys.append(y_t)
            y = torch.cat(ys)
        else:
            y, delta = unroll(x, w0, delta, first)
        return self.layer_out(h, self.out_proj(y.reshape(T, B, D))), delta


def delta_unroll(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, w: Tensor, first: Optional[Tensor]
                 ) -> tuple[Tensor, Tensor]:
    """Delta Net recurrence (column convention): W <- W + outer(beta (v - W k), k); out = W q.

    q, k: [T, B, H, dk]; v: [T, B, H, dv]; beta: [T, B, H, 1]; w: [B, H, dv, dk];
    first: bool [T, B] zeroes W before step t. Returns out [T, B, H, dv] (read after the write)
    and the final W.
    """
    outs = []
    for t in range(q.shape[0]):
        if first is not None:
            w = w * (~first[t]).to(w.dtype).view(-1, 1, 1, 1)
        v_old = torch.einsum("bhvk,bhk->bhv", w, k[t])
        w = w + torch.einsum("bhv,bhk->bhvk", beta[t] * (v[t] - v_old), k[t])
        outs.append(torch.einsum("bhvk,bhk->bhv", w, q[t]))
    return torch.stack(outs), w


def _elu_sum_norm(z: Tensor) -> Tensor:
    z = F.elu(z) + 1.0
    return z / z.sum(-1, keepdim=True)


class DeltaLayer(_Residual):
    """Delta Net layer (a fast weight programmer). State: W [B, H, d, d]."""

    def __init__(self, dim: int, heads: int, norm: str = "pre"):
        super().__init__(dim, norm)
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by heads={heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkvb = nn.Linear(dim, heads * (3 * self.head_dim + 1))
        self.out_proj = nn.Linear(dim, dim, bias=False)

    def state_shape(self) -> tuple[int, ...]:
        return (self.heads, self.head_dim, self.head_dim)

    def forward(self, h: Tensor, w: Tensor, first: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        T, B, D = h.shape
        d = self.head_dim
        z = self.qkvb(self.layer_in(h)).view(T, B, self.heads, 3 * d + 1)
        q, k, v, b = torch.split(z, [d, d, d, 1], dim=-1)
        out, w = delta_unroll(_elu_sum_norm(q), _elu_sum_norm(k), v, torch.sigmoid(b), w, first)
        return self.layer_out(h, self.out_proj(out.reshape(T, B, D))), w


class FakeSRLayer(_Residual):
    """The 'Fake SR' ablation: y = phi(x) @ W_y with W_y learned but never self-modified. No state."""

    def __init__(self, dim: int, heads: int, *, input_softmax: bool = True, norm: str = "none"):
        super().__init__(dim, norm)
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by heads={heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.W_y = nn.Parameter(torch.randn(heads, self.head_dim, self.head_dim) / math.sqrt(self.head_dim))
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.input_softmax = input_softmax

    def forward(self, h: Tensor) -> Tensor:
        T, B, D = h.shape
        x = self.layer_in(h).reshape(T, B, self.heads, self.head_dim)
        if self.input_softmax:
            x = torch.softmax(x, dim=-1)
        y = torch.einsum("tbhi,hij->tbhj", x, self.W_y)
        return self.layer_out(h, self.out_proj(y.reshape(T, B, D)))
