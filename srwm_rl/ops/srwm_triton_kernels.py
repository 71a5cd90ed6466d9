"""Triton kernels of the SRWM unroll (imported only by :mod:`srwm_rl.ops.srwm_triton`, lazily).

One program per (sample, head) pair n = b * H + h. It keeps that pair's fast weights on chip for
all T steps as four blocks padded to BD = next power of two >= d (rows and columns past d are held
at zero, so they never leak into a product): W_y, W_q, W_k [BD, BD] and w_b [BD, 4].

Memory layouts (all contiguous; N = B * H, m = 3d + 4):
    x, y, gy, gx, q, k : [T, N, d]          beta : [T, N, 4]        u : [T, N, m]
    w0                 : [H, d, m]          delta, delta_out, w_final, gdelta, gacc : [N, d, m]
    rst, slot          : int32 [T, B]       rst != 0: reset before step t; slot >= 0: the index in
    pre                : [S, H, d, m]       pre of the weights just before that reset (t >= 1)

The forward kernel is docs/srwm.md section 1 step by step; the backward kernel is the same algorithm
as :mod:`srwm_rl.ops.srwm_lean` (weights rebuilt in reverse by W(t-1) = W(t) - outer(k, e)).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _load4(base, rows, cols, cols4, d, m):
    """The four blocks at ``base`` (a [d, m] matrix), zero-padded to [BD, BD] x3 and [BD, 4]."""
    rmask = rows[:, None] < d
    cmask = rmask & (cols[None, :] < d)
    off = rows[:, None] * m + cols[None, :]
    a = tl.load(base + off, mask=cmask, other=0.0)
    b = tl.load(base + off + d, mask=cmask, other=0.0)
    c = tl.load(base + off + 2 * d, mask=cmask, other=0.0)
    e = tl.load(base + rows[:, None] * m + 3 * d + cols4[None, :], mask=rmask & (cols4[None, :] < 4), other=0.0)
    return a, b, c, e


@triton.jit
def _store4(base, a, b, c, e, rows, cols, cols4, d, m):
    """Writes the four blocks into the [d, m] matrix at ``base``."""
    rmask = rows[:, None] < d
    cmask = rmask & (cols[None, :] < d)
    off = rows[:, None] * m + cols[None, :]
    tl.store(base + off, a, mask=cmask)
    tl.store(base + off + d, b, mask=cmask)
    tl.store(base + off + 2 * d, c, mask=cmask)
    tl.store(base + rows[:, None] * m + 3 * d + cols4[None, :], e, mask=rmask & (cols4[None, :] < 4))


@triton.jit
def srwm_fwd_kernel(x_ptr, w0_ptr, delta_ptr, rst_ptr, slot_ptr,
                    y_ptr, dout_ptr, wfin_ptr, q_ptr, k_ptr, beta_ptr, u_ptr, pre_ptr,
                    T, B, H, d,
                    HAS_FIRST: tl.constexpr, SAVE: tl.constexpr, BD: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    N = B * H
    b = n // H
    h = n % H
    m = 3 * d + 4
    rows = tl.arange(0, BD)
    cols = tl.arange(0, BD)
    cols4 = tl.arange(0, 4)
    cmask = cols < d
    w0_base = w0_ptr + h * d * m
    wy, wq, wk, wb = _load4(delta_ptr + n * d * m, rows, cols, cols4, d, m)
    iy, iq, ik, ib = _load4(w0_base, rows, cols, cols4, d, m)
    wy, wq, wk, wb = wy + iy, wq + iq, wk + ik, wb + ib
    for t in range(T):
        if HAS_FIRST:
            if tl.load(rst_ptr + t * B + b) != 0:
                slot = tl.load(slot_ptr + t * B + b).to(tl.int64)
                if SAVE:
                    if slot >= 0:
                        _store4(pre_ptr + (slot * H + h) * d * m, wy, wq, wk, wb, rows, cols, cols4, d, m)
                wy, wq, wk, wb = _load4(w0_base, rows, cols, cols4, d, m)
        vec = (t * N + n) * d
        x = tl.load(x_ptr + vec + rows, mask=rows < d, other=0.0)
        y = tl.sum(x[:, None] * wy, axis=0)
        zq = tl.where(cmask, tl.sum(x[:, None] * wq, axis=0), float("-inf"))   # softmax over d
        zk = tl.where(cmask, tl.sum(x[:, None] * wk, axis=0), float("-inf"))
        q = tl.where(cmask, tl.exp(zq - tl.max(zq, axis=0)), 0.0)
        k = tl.where(cmask, tl.exp(zk - tl.max(zk, axis=0)), 0.0)
        q = q / tl.sum(q, axis=0)
        k = k / tl.sum(k, axis=0)
        beta = tl.sigmoid(tl.sum(x[:, None] * wb, axis=0))                # [4]
        b0 = tl.sum(tl.where(cols4 == 0, beta, 0.0), axis=0)              # the four rates as scalars
        b1 = tl.sum(tl.where(cols4 == 1, beta, 0.0), axis=0)
        b2 = tl.sum(tl.where(cols4 == 2, beta, 0.0), axis=0)
        b3 = tl.sum(tl.where(cols4 == 3, beta, 0.0), axis=0)
        dqk = q - k                                                       # u = v - vbar = (q - k) @ W
        uy = tl.sum(dqk[:, None] * wy, axis=0)
        uq = tl.sum(dqk[:, None] * wq, axis=0)
        uk = tl.sum(dqk[:, None] * wk, axis=0)
        ub = tl.sum(dqk[:, None] * wb, axis=0)
        wy += k[:, None] * (b0 * uy)[None, :]                             # W + outer(k, beta_j * u_j)
        wq += k[:, None] * (b1 * uq)[None, :]
        wk += k[:, None] * (b2 * uk)[None, :]
        wb += k[:, None] * (b3 * ub)[None, :]
        tl.store(y_ptr + vec + cols, y, mask=cmask)
        if SAVE:
            tl.store(q_ptr + vec + cols, q, mask=cmask)
            tl.store(k_ptr + vec + cols, k, mask=cmask)
            tl.store(beta_ptr + (t * N + n) * 4 + cols4, beta)
            ubase = u_ptr + (t * N + n) * m
            tl.store(ubase + cols, uy, mask=cmask)
            tl.store(ubase + d + cols, uq, mask=cmask)
            tl.store(ubase + 2 * d + cols, uk, mask=cmask)
            tl.store(ubase + 3 * d + cols4, ub)
    if SAVE:
        _store4(wfin_ptr + n * d * m, wy, wq, wk, wb, rows, cols, cols4, d, m)
    iy, iq, ik, ib = _load4(w0_base, rows, cols, cols4, d, m)
    _store4(dout_ptr + n * d * m, wy - iy, wq - iq, wk - ik, wb - ib, rows, cols, cols4, d, m)


@triton.jit
def srwm_bwd_kernel(x_ptr, wfin_ptr, q_ptr, k_ptr, beta_ptr, u_ptr, pre_ptr, rst_ptr, slot_ptr,
                    gy_ptr, gdo_ptr, gx_ptr, gdelta_ptr, gacc_ptr,
                    T, B, H, d,
                    HAS_FIRST: tl.constexpr, HAS_GY: tl.constexpr, HAS_GDO: tl.constexpr,
                    BD: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    N = B * H
    b = n // H
    h = n % H
    m = 3 * d + 4
    rows = tl.arange(0, BD)
    cols = tl.arange(0, BD)
    cols4 = tl.arange(0, 4)
    cmask = cols < d
    rmask = rows < d
    wy, wq, wk, wb = _load4(wfin_ptr + n * d * m, rows, cols, cols4, d, m)   # W after step t
    if HAS_GDO:
        gwy, gwq, gwk, gwb = _load4(gdo_ptr + n * d * m, rows, cols, cols4, d, m)  # dL/dW after step t
    else:
        gwy, gwq, gwk, gwb = tl.zeros_like(wy), tl.zeros_like(wq), tl.zeros_like(wk), tl.zeros_like(wb)
    for i in range(T):
        t = T - 1 - i
        vec = (t * N + n) * d
        q = tl.load(q_ptr + vec + cols, mask=cmask, other=0.0)
        k = tl.load(k_ptr + vec + cols, mask=cmask, other=0.0)
        beta = tl.load(beta_ptr + (t * N + n) * 4 + cols4)
        ubase = u_ptr + (t * N + n) * m
        uy = tl.load(ubase + cols, mask=cmask, other=0.0)
        uq = tl.load(ubase + d + cols, mask=cmask, other=0.0)
        uk = tl.load(ubase + 2 * d + cols, mask=cmask, other=0.0)
        ub = tl.load(ubase + 3 * d + cols4)
        b0 = tl.load(beta_ptr + (t * N + n) * 4)                          # the four rates as scalars
        b1 = tl.load(beta_ptr + (t * N + n) * 4 + 1)
        b2 = tl.load(beta_ptr + (t * N + n) * 4 + 2)
        b3 = tl.load(beta_ptr + (t * N + n) * 4 + 3)
        ey, eq, ek, eb = b0 * uy, b1 * uq, b2 * uk, b3 * ub
        # W before step t (the inverse of the rank-1 update).
        wy -= k[:, None] * ey[None, :]
        wq -= k[:, None] * eq[None, :]
        wk -= k[:, None] * ek[None, :]
        wb -= k[:, None] * eb[None, :]
        # Through W_new = W + outer(k, e): dk and de.
        g_k = tl.sum(gwy * ey[None, :] + gwq * eq[None, :] + gwk * ek[None, :], axis=1) \
            + tl.sum(gwb * eb[None, :], axis=1)
        gey = tl.sum(k[:, None] * gwy, axis=0)
        geq = tl.sum(k[:, None] * gwq, axis=0)
        gek = tl.sum(k[:, None] * gwk, axis=0)
        geb = tl.sum(k[:, None] * gwb, axis=0)
        guy, guq, guk, gub = gey * b0, geq * b1, gek * b2, geb * b3
        gb0, gb1 = tl.sum(gey * uy, axis=0), tl.sum(geq * uq, axis=0)
        gb2, gb3 = tl.sum(gek * uk, axis=0), tl.sum(geb * ub, axis=0)
        g_beta = tl.where(cols4 == 0, gb0, tl.where(cols4 == 1, gb1, tl.where(cols4 == 2, gb2, gb3)))
        # Through u = (q - k) @ W.
        g_qk = tl.sum(wy * guy[None, :] + wq * guq[None, :] + wk * guk[None, :], axis=1) \
            + tl.sum(wb * gub[None, :], axis=1)
        dqk = q - k
        gwy += dqk[:, None] * guy[None, :]
        gwq += dqk[:, None] * guq[None, :]
        gwk += dqk[:, None] * guk[None, :]
        gwb += dqk[:, None] * gub[None, :]
        g_q = g_qk
        g_k = g_k - g_qk
        # Through s = x @ W: the adjoints of the read-out, the softmaxes and the sigmoid.
        if HAS_GY:
            gsy = tl.load(gy_ptr + vec + cols, mask=cmask, other=0.0)
        else:
            gsy = tl.zeros_like(q)
        gsq = q * (g_q - tl.sum(g_q * q, axis=0))
        gsk = k * (g_k - tl.sum(g_k * k, axis=0))
        gsb = g_beta * beta * (1.0 - beta)
        gx = tl.sum(wy * gsy[None, :] + wq * gsq[None, :] + wk * gsk[None, :], axis=1) \
            + tl.sum(wb * gsb[None, :], axis=1)
        tl.store(gx_ptr + vec + rows, gx, mask=rmask)
        x = tl.load(x_ptr + vec + rows, mask=rmask, other=0.0)
        gwy += x[:, None] * gsy[None, :]
        gwq += x[:, None] * gsq[None, :]
        gwk += x[:, None] * gsk[None, :]
        gwb += x[:, None] * gsb[None, :]
        if HAS_FIRST:
            if tl.load(rst_ptr + t * B + b) != 0:
                # W before step t was W0: its gradient goes to W0, none flows to earlier steps.
                acc = gacc_ptr + n * d * m
                ay, aq, ak, ab = _load4(acc, rows, cols, cols4, d, m)
                _store4(acc, ay + gwy, aq + gwq, ak + gwk, ab + gwb, rows, cols, cols4, d, m)
                gwy, gwq, gwk, gwb = tl.zeros_like(wy), tl.zeros_like(wq), tl.zeros_like(wk), \
                    tl.zeros_like(wb)
                slot = tl.load(slot_ptr + t * B + b).to(tl.int64)
                if slot >= 0:                                             # W after step t - 1
                    wy, wq, wk, wb = _load4(pre_ptr + (slot * H + h) * d * m, rows, cols, cols4, d, m)
    _store4(gdelta_ptr + n * d * m, gwy, gwq, gwk, gwb, rows, cols, cols4, d, m)
