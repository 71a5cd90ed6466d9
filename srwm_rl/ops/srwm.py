"""The SRWM recurrence (Irie et al., ICML 2022) as pure functions; the maths are in docs/srwm.md.

Row-vector convention: a block maps a row vector ``x`` of length d to ``x @ M``. Per head the fast
weights are four blocks ``W_y, W_q, W_k`` ([d, d]) and ``w_b`` ([d, 4]). Internally the four blocks
are laid side by side in one matrix ``W = [W_y | W_q | W_k | w_b]`` of shape [d, m], m = 3d + 4, so
that one product ``x @ W`` gives the output, the query and key logits and the four learning-rate
logits, and one product ``(q - k) @ W`` gives ``v_j - vbar_j`` for all four blocks.

Paths, all computing the same function:

- :func:`srwm_unroll` - the public contract (tuples of blocks); the definition of the recurrence.
- :func:`srwm_unroll_cat` - the same on the concatenated layout, plain autograd (saves every W).
- :func:`srwm_rl.ops.srwm_lean.srwm_unroll_lean` - a custom autograd Function that saves only q, k,
  beta and v - vbar per step and rebuilds earlier weights backwards from the final ones
  (O(T*H*d) saved memory).
- :func:`srwm_rl.ops.srwm_fused.srwm_unroll_fused` - the same algorithm as one native CPU kernel for
  the whole unroll (built on first use; falls back to the pure path when it cannot be built).
- :func:`srwm_rl.ops.srwm_triton.srwm_unroll_triton` - the same algorithm as one Triton kernel per
  direction (CUDA; CPU tensors under TRITON_INTERPRET=1); needs the optional `gpu` extra.

:func:`srwm_rl.nn.layers.resolve_impl` picks among them ('auto': fused on the CPU, triton on CUDA
when installed, lean otherwise).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor

Blocks = tuple[Tensor, Tensor, Tensor, Tensor]

N_BETAS = 4  # one self-invented learning rate per block


def fast_width(d: int) -> int:
    """Columns of the concatenated fast weight matrix for head size ``d``: 3d + 4."""
    return 3 * d + N_BETAS


def cat_blocks(blocks: Sequence[Tensor]) -> Tensor:
    """(W_y, W_q, W_k, w_b) with shapes [..., d, d] x3 and [..., d, 4] -> [..., d, 3d + 4]."""
    return torch.cat(tuple(blocks), dim=-1)


def split_blocks(w: Tensor) -> Blocks:
    """Inverse of :func:`cat_blocks`: [..., d, 3d + 4] -> (W_y, W_q, W_k, w_b)."""
    d = w.shape[-2]
    w_y, w_q, w_k, w_b = torch.split(w, [d, d, d, N_BETAS], dim=-1)
    return w_y, w_q, w_k, w_b


def expand_beta(beta: Tensor, d: int) -> Tensor:
    """Per-block rates [..., 4] -> per-column rates [..., 3d + 4] (rate j repeated over block j)."""
    sizes = torch.tensor([d, d, d, N_BETAS], device=beta.device)
    return torch.repeat_interleave(beta, sizes, dim=-1)


# --------------------------------------------------------------------------------------------
# Input checks: every path goes through these, so bad shapes fail loudly and the same way.
# --------------------------------------------------------------------------------------------

def _expect(name: str, t: Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {list(shape)}, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {list(t.shape)}, expected {list(shape)}")
    if t.dtype != dtype:
        raise ValueError(f"{name} has dtype {t.dtype}, expected {dtype} (the dtype of x)")


def check_first(first: Optional[Tensor], T: int, B: int) -> None:
    """``first`` must be None or a bool tensor [T, B]."""
    if first is None:
        return
    if not isinstance(first, Tensor):
        raise ValueError(f"first must be a bool tensor of shape [{T}, {B}], got {type(first).__name__}")
    if first.dtype != torch.bool:
        raise ValueError(f"first has dtype {first.dtype}, expected torch.bool")
    if tuple(first.shape) != (T, B):
        raise ValueError(f"first has shape {list(first.shape)}, expected [{T}, {B}] (time, batch)")


def _check_x(x: Tensor) -> tuple[int, int, int, int]:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must have shape [T, B, H, d], got {shape}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"x has dtype {x.dtype}, expected torch.float32 or torch.float64")
    T, B, H, d = x.shape
    return T, B, H, d


def check_cat_inputs(x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor]) -> None:
    """Shapes for the concatenated layout: x [T,B,H,d], w0 [H,d,m], delta [B,H,d,m]."""
    T, B, H, d = _check_x(x)
    m = fast_width(d)
    _expect("W0", w0, (H, d, m), x.dtype)
    _expect("delta", delta, (B, H, d, m), x.dtype)
    check_first(first, T, B)


def check_inputs(x: Tensor, W0: Sequence[Tensor], delta: Sequence[Tensor], first: Optional[Tensor]) -> None:
    """Shapes for the public contract (tuples of four blocks)."""
    T, B, H, d = _check_x(x)
    names = ("W_y", "W_q", "W_k", "w_b")
    cols = (d, d, d, N_BETAS)
    for what, seq, lead in (("W0", W0, (H,)), ("delta", delta, (B, H))):
        if not isinstance(seq, (tuple, list)) or len(seq) != 4:
            raise ValueError(f"{what} must be a tuple of four tensors (W_y, W_q, W_k, w_b)")
        for name, c, t in zip(names, cols, seq):
            _expect(f"{what}.{name}", t, lead + (d, c), x.dtype)
    check_first(first, T, B)


# --------------------------------------------------------------------------------------------
# The recurrence, plain autograd.
# --------------------------------------------------------------------------------------------

def srwm_step(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """One step on the concatenated layout, batched over leading dims.

    x: [N, d] inputs (after phi); w: [N, d, m] weights before the step.
    Returns y [N, d] (read before the update) and the updated weights [N, d, m].
    """
    d = x.shape[-1]
    s = torch.bmm(x.unsqueeze(1), w).squeeze(1)                      # [N, m]
    y = s[:, :d]
    q = torch.softmax(s[:, d:2 * d], dim=-1)
    k = torch.softmax(s[:, 2 * d:3 * d], dim=-1)
    beta = torch.sigmoid(s[:, 3 * d:])                               # [N, 4]
    u = torch.bmm((q - k).unsqueeze(1), w).squeeze(1)                # v - vbar, all blocks [N, m]
    e = expand_beta(beta, d) * u
    w_new = torch.baddbmm(w, k.unsqueeze(2), e.unsqueeze(1))         # w + outer(k, e)
    return y, w_new


def _reset(w: Tensor, w0: Tensor, first_t: Optional[Tensor]) -> Tensor:
    """Rows of w [B, H, d, m] whose ``first_t`` [B] is true become w0 [H, d, m] (no in-place)."""
    if first_t is None:
        return w
    return torch.where(first_t.view(-1, 1, 1, 1), w0.unsqueeze(0), w)


def srwm_unroll_cat(x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor] = None
                    ) -> tuple[Tensor, Tensor]:
    """The recurrence on the concatenated layout, plain autograd.

    x: [T, B, H, d]; w0: [H, d, m]; delta: [B, H, d, m]; first: bool [T, B] or None.
    Returns y [T, B, H, d] and delta_out [B, H, d, m]. Saved memory grows as O(T*B*H*d*m).
    """
    check_cat_inputs(x, w0, delta, first)
    T, B, H, d = x.shape
    m = fast_width(d)
    w = w0.unsqueeze(0) + delta                                       # [B, H, d, m]
    ys = []
    for t in range(T):
        w = _reset(w, w0, None if first is None else first[t])
        y, w_flat = srwm_step(x[t].reshape(B * H, d), w.reshape(B * H, d, m))
        w = w_flat.view(B, H, d, m)
        ys.append(y.view(B, H, d))
    return torch.stack(ys), w - w0.unsqueeze(0)


def srwm_unroll(x: Tensor, W0: Sequence[Tensor], delta: Sequence[Tensor],
                first: Optional[Tensor] = None) -> tuple[Tensor, Blocks]:
    """The SRWM recurrence: the public contract of docs/srwm.md, section 3.

    x: [T, B, H, d] per-head inputs (after phi).
    W0: (W_y [H,d,d], W_q [H,d,d], W_k [H,d,d], w_b [H,d,4]), the learned start.
    delta: the same four with a leading batch dim [B, ...], the fast state Delta = W - W0.
    first: optional bool [T, B]; where true, that sample's delta is zeroed before step t.
    Returns y [T, B, H, d] and delta_out (four blocks), the state after step T - 1.
    Pure (inputs are never written) and differentiable through every self-modification.
    """
    check_inputs(x, W0, delta, first)
    y, d_out = srwm_unroll_cat(x, cat_blocks(W0), cat_blocks(delta), first)
    return y, split_blocks(d_out)
