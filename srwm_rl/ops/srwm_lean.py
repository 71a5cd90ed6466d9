"""Memory-lean SRWM: a custom autograd Function that saves O(H*d) per step instead of O(H*d^2).

The forward pass keeps, per step, only q, k, beta and u = v - vbar (for all four blocks at once,
see :mod:`srwm_rl.srwm`). The backward pass walks time in reverse and rebuilds the weights before
each step from the weights after it, using the inverse of the rank-1 update (srwm.md section 1):

    W(t-1) = W(t) - outer(k_t, expand(beta_t) * u_t)

A reset (``first[t, b]`` true) throws the old weights away, so they cannot be rebuilt; the
function keeps a copy of the pre-reset weights of just those samples (one [H, d, m] matrix per
episode boundary, not per step).

In float32 the rebuilt weights drift from the true ones by rounding, growing with T; the tests
check float64 to 1e-9 and float32 to a tolerance. The function is first-order differentiable.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from srwm_rl.ops.srwm import check_cat_inputs, expand_beta, fast_width


def _block_sums(g: Tensor, d: int) -> Tensor:
    """Per-column values [N, 3d + 4] -> per-block sums [N, 4] (the adjoint of expand_beta)."""
    n = g.shape[0]
    return torch.cat([g[:, :3 * d].reshape(n, 3, d).sum(-1), g[:, 3 * d:].reshape(n, 1, -1).sum(-1)], -1)


class _SRWMLean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor]):
        T, B, H, d = x.shape
        m, n = fast_width(d), B * H
        w = (w0.unsqueeze(0) + delta).reshape(n, d, m)             # our own buffer from here on
        wv = w.view(B, H, d, m)
        ys = x.new_empty(T, n, d)
        qs, ks = x.new_empty(T, n, d), x.new_empty(T, n, d)
        betas, us = x.new_empty(T, n, 4), x.new_empty(T, n, m)
        resets: dict[int, tuple[Tensor, Tensor]] = {}               # t -> (batch idx, pre-reset W)
        for t in range(T):
            if first is not None and bool(first[t].any()):
                idx = first[t].nonzero().squeeze(1)
                resets[t] = (idx, wv[idx].clone())
                wv[idx] = w0
            xt = x[t].reshape(n, 1, d)
            s = torch.bmm(xt, w).squeeze(1)
            ys[t] = s[:, :d]
            q = torch.softmax(s[:, d:2 * d], -1)
            k = torch.softmax(s[:, 2 * d:3 * d], -1)
            beta = torch.sigmoid(s[:, 3 * d:])
            u = torch.bmm((q - k).unsqueeze(1), w).squeeze(1)
            w.baddbmm_(k.unsqueeze(2), (expand_beta(beta, d) * u).unsqueeze(1))
            qs[t], ks[t], betas[t], us[t] = q, k, beta, u
        ctx.save_for_backward(x, w0)
        ctx.w_final, ctx.qs, ctx.ks, ctx.betas, ctx.us, ctx.resets = w, qs, ks, betas, us, resets
        delta_out = wv - w0.unsqueeze(0)
        return ys.view(T, B, H, d), delta_out

    @staticmethod
    @once_differentiable
    def backward(ctx, gy: Optional[Tensor], g_delta_out: Optional[Tensor]):
        x, w0 = ctx.saved_tensors
        T, B, H, d = x.shape
        m, n = fast_width(d), B * H
        w = ctx.w_final.clone()                                     # becomes W before each step
        wv = w.view(B, H, d, m)
        if g_delta_out is None:
            g_delta_out = torch.zeros(B, H, d, m, dtype=x.dtype, device=x.device)
        gw = g_delta_out.reshape(n, d, m).clone()                   # dL/dW after the current step
        gwv = gw.view(B, H, d, m)
        gw0 = -g_delta_out.sum(0)
        if gy is None:
            gy = torch.zeros_like(x)
        gy = gy.reshape(T, n, d)
        gx = torch.empty(T, n, d, dtype=x.dtype, device=x.device)
        for t in reversed(range(T)):
            q, k, beta, u = ctx.qs[t], ctx.ks[t], ctx.betas[t], ctx.us[t]
            be = expand_beta(beta, d)
            e = be * u
            w.baddbmm_(k.unsqueeze(2), e.unsqueeze(1), alpha=-1.0)  # W before step t
            g_k = torch.bmm(gw, e.unsqueeze(2)).squeeze(2)          # through outer(k, e)
            g_e = torch.bmm(k.unsqueeze(1), gw).squeeze(1)
            g_u = g_e * be
            g_beta = _block_sums(g_e * u, d)
            g_qk = torch.bmm(w, g_u.unsqueeze(2)).squeeze(2)        # through u = (q - k) @ W
            gw.baddbmm_((q - k).unsqueeze(2), g_u.unsqueeze(1))
            g_q, g_k = g_qk, g_k - g_qk
            g_s = torch.cat([
                gy[t],
                q * (g_q - (g_q * q).sum(-1, keepdim=True)),          # softmax adjoint
                k * (g_k - (g_k * k).sum(-1, keepdim=True)),
                g_beta * beta * (1.0 - beta),                       # sigmoid adjoint
            ], dim=-1)
            xt = x[t].reshape(n, d)
            gx[t] = torch.bmm(w, g_s.unsqueeze(2)).squeeze(2)       # through s = x @ W
            gw.baddbmm_(xt.unsqueeze(2), g_s.unsqueeze(1))
            if t in ctx.resets:                                     # W before step t was W0
                idx, pre = ctx.resets[t]
                gw0 += gwv[idx].sum(0)
                gwv[idx] = 0.0
                wv[idx] = pre                                       # W after step t - 1
        gw0 += gwv.sum(0)                                           # W_init = W0 + delta
        return gx.view(T, B, H, d), gw0, gwv, None


def srwm_unroll_lean(x: Tensor, w0: Tensor, delta: Tensor, first: Optional[Tensor] = None
                     ) -> tuple[Tensor, Tensor]:
    """Same contract as :func:`srwm_rl.srwm.srwm_unroll_cat`, with O(T*B*H*d) saved memory.

    x: [T, B, H, d]; w0: [H, d, 3d+4]; delta: [B, H, d, 3d+4]; first: bool [T, B] or None.
    Returns y [T, B, H, d] and delta_out [B, H, d, 3d+4].
    """
    check_cat_inputs(x, w0, delta, first)
    return _SRWMLean.apply(x, w0, delta, first)
