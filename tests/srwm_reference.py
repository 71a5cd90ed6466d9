"""An independent, obviously-correct transcription of docs/srwm.md section 1 in float64 numpy.

One sample, one head, one step at a time, four separate blocks, explicit outer products. Every
faster SRWM path in the project is tested against this.
"""
from __future__ import annotations

import numpy as np


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def reference_unroll(x, W0, delta, first=None):
    """x [T,B,H,d]; W0 four arrays [H,d,*]; delta four arrays [B,H,d,*]; first bool [T,B] or None.

    Returns y [T,B,H,d] and the four delta blocks after the last step, all float64 numpy.
    """
    x = np.asarray(x, dtype=np.float64)
    T, B, H, d = x.shape
    W0 = [np.asarray(w, dtype=np.float64) for w in W0]
    cur = [np.array(dl, dtype=np.float64) + w[None] for dl, w in zip(delta, W0)]   # full weights
    y = np.zeros((T, B, H, d))
    for t in range(T):
        for b in range(B):
            if first is not None and first[t][b]:
                for j in range(4):
                    cur[j][b] = W0[j]
            for h in range(H):
                W_y, W_q, W_k, w_b = (cur[j][b, h] for j in range(4))
                xt = x[t, b, h]
                y[t, b, h] = xt @ W_y
                q = _softmax(xt @ W_q)
                k = _softmax(xt @ W_k)
                beta = _sigmoid(xt @ w_b)
                new = []
                for j, M in enumerate((W_y, W_q, W_k, w_b)):
                    v = q @ M
                    vbar = k @ M
                    new.append(M + np.outer(k, beta[j] * (v - vbar)))
                for j in range(4):
                    cur[j][b, h] = new[j]
    return y, [c - w[None] for c, w in zip(cur, W0)]
