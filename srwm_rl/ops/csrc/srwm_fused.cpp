// Fused CPU kernel for the SRWM unroll (shared/design/srwm.md section 1), on the concatenated layout
// W = [W_y | W_q | W_k | w_b] of shape [d, m], m = 3d + 4, row-vector convention.
//
// Plain C ABI (loaded with ctypes from srwm_rl/srwm_fused.py): no PyTorch or Python headers, so it
// builds in about a second with any C++17 compiler and does not depend on the torch version.
//
// Work is split over the B*H independent (sample, head) pairs; one thread takes a contiguous range
// of pairs and runs each pair through all T steps with its weights in a private, zero-padded
// buffer (rows padded to a multiple of 8), so the matrix stays in L1 for the whole unroll.
//
// Forward, per step:  s = x W;  y = s[:d];  q = softmax(s[d:2d]);  k = softmax(s[2d:3d]);
//                     beta = sigmoid(s[3d:]);  u = (q - k) W;  W += outer(k, expand(beta) * u).
// The update of step t and the product s = x_{t+1} W of step t + 1 share one pass over W.
// With saving on, each step stores q, k, beta, u ([n, T, 5d + 8] floats per pair) and the weights
// of a sample just before a reset at t >= 1; the backward walks time in reverse, rebuilding the
// weights with W(t-1) = W(t) - outer(k, expand(beta) * u) (the derivation of srwm_lean.py).
//
// No -ffast-math: the only approximation is the vectorised float32 exp (Cephes polynomial, about
// 1 ulp); float64 uses std::exp. Reductions are vectorised through `omp simd reduction` only.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

#ifndef SRWM_PAD
#define SRWM_PAD 8
#endif
constexpr int kPad = SRWM_PAD;
inline int padded(int m) { return (m + kPad - 1) / kPad * kPad; }

// expf: Cephes (range reduction by ln2, degree-5 polynomial), branch-free so loops over it
// vectorise. Arguments are clamped to [-87, 88] (results stay normal floats); NaN stays NaN.
inline float exp_f(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float fx = x * 1.44269504088896341f + 12582912.0f;       // round to nearest via 1.5*2^23
    const float n = fx - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof(scale));
    return p * scale;
}
inline float exp_any(float x) { return exp_f(x); }
inline double exp_any(double x) { return std::exp(x); }

template <typename F>
inline void softmax(const F* __restrict s, F* __restrict out, int d) {
    F mx = s[0];
    for (int i = 1; i < d; ++i) mx = std::max(mx, s[i]);
    F sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < d; ++i) {
        out[i] = exp_any(s[i] - mx);
        sum += out[i];
    }
    const F inv = F(1) / sum;
    for (int i = 0; i < d; ++i) out[i] *= inv;
}

template <typename F>
inline F sigmoid(F z) { return F(1) / (F(1) + exp_any(-z)); }

template <typename F>
struct Buf {  // 64-byte aligned scratch, zero-initialised
    F* p;
    explicit Buf(size_t n) {
        size_t bytes = (n * sizeof(F) + 63) / 64 * 64;
        p = static_cast<F*>(std::aligned_alloc(64, bytes ? bytes : 64));
        if (!p) throw std::bad_alloc();
        std::memset(p, 0, bytes);
    }
    ~Buf() { std::free(p); }
    Buf(const Buf&) = delete;
    Buf& operator=(const Buf&) = delete;
};

template <typename F>
struct Args {
    const F* x;          // [T, n, d]
    const F* w0;         // [H, d, m]
    const F* delta;      // [n, d, m]            (forward)
    const uint8_t* first;  // [T, B] or null
    const int32_t* slot;   // [T, B] index into pre, -1 when no saved weights
    F* y;                // [T, n, d]            (forward)
    F* delta_out;        // [n, d, m]            (forward)
    F* wfinal;           // [n, d, m] or null    (forward, saving)
    F* saved;            // [n, T, S] or null    (forward saving; backward input)
    F* pre;              // [R, H, d, m] or null (forward saving; backward input)
    const F* gy;         // [T, n, d] or null    (backward)
    const F* gdo;        // [n, d, m] or null    (backward)
    F* gx;               // [T, n, d]            (backward)
    F* gdelta;           // [n, d, m]            (backward)
    F* gacc;             // [n, d, m] or null    (backward: gdelta + gradient at every reset)
    int64_t T, B, H;
    int d;
};

// Expanded learning rates: column j of block b gets beta[b]; the padding gets 0.
template <typename F>
inline void expand(const F* beta, F* be, int d, int P) {
    for (int j = 0; j < d; ++j) be[j] = beta[0];
    for (int j = d; j < 2 * d; ++j) be[j] = beta[1];
    for (int j = 2 * d; j < 3 * d; ++j) be[j] = beta[2];
    for (int j = 3 * d; j < 3 * d + 4; ++j) be[j] = beta[3];
    for (int j = 3 * d + 4; j < P; ++j) be[j] = 0;
}

// DC > 0: head size known at compile time (the common sizes), so every row loop has a fixed
// trip count; DC == 0: any head size.
template <typename F, int DC>
void forward_range(const Args<F>& a, int64_t p0, int64_t p1) {
    const int d = DC ? DC : a.d;
    const int m = 3 * d + 4;
    const int P = DC ? (3 * DC + 4 + kPad - 1) / kPad * kPad : padded(m);
    const int64_t T = a.T, B = a.B, H = a.H, n = B * H;
    const int S = 2 * d + 4 + m;
    Buf<F> Wb(size_t(d) * P), sb(P), ub(P), eb(P), beb(P), qb(d), kb(d), cb(d);
    F* __restrict W = Wb.p;
    F* __restrict s = sb.p;
    F* __restrict u = ub.p;
    F* __restrict e = eb.p;
    F* __restrict be = beb.p;
    F* __restrict q = qb.p;
    F* __restrict k = kb.p;
    F* __restrict c = cb.p;
    F beta[4];
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t b = p / H, h = p % H;
        const F* w0h = a.w0 + h * d * m;
        const F* dl = a.delta + p * d * m;
        for (int i = 0; i < d; ++i) {
            for (int j = 0; j < m; ++j) W[i * P + j] = w0h[i * m + j] + dl[i * m + j];
            for (int j = m; j < P; ++j) W[i * P + j] = 0;
        }
        bool have_s = false;
        for (int64_t t = 0; t < T; ++t) {
            const F* xt = a.x + (t * n + p) * d;
            if (a.first && a.first[t * B + b]) {
                if (a.pre && a.slot[t * B + b] >= 0) {
                    F* dst = a.pre + (int64_t(a.slot[t * B + b]) * H + h) * d * m;
                    for (int i = 0; i < d; ++i) std::memcpy(dst + i * m, W + i * P, sizeof(F) * m);
                }
                for (int i = 0; i < d; ++i) std::memcpy(W + i * P, w0h + i * m, sizeof(F) * m);
                have_s = false;
            }
            if (!have_s) {
                for (int j = 0; j < P; ++j) s[j] = 0;
                for (int i = 0; i < d; ++i) {
                    const F xi = xt[i];
                    const F* __restrict wr = W + i * P;
#pragma omp simd
                    for (int j = 0; j < P; ++j) s[j] += xi * wr[j];
                }
            }
            std::memcpy(a.y + (t * n + p) * d, s, sizeof(F) * d);
            softmax(s + d, q, d);
            softmax(s + 2 * d, k, d);
            for (int j = 0; j < 4; ++j) beta[j] = sigmoid(s[3 * d + j]);
            for (int i = 0; i < d; ++i) c[i] = q[i] - k[i];
            for (int j = 0; j < P; ++j) u[j] = 0;
            for (int i = 0; i < d; ++i) {
                const F ci = c[i];
                const F* __restrict wr = W + i * P;
#pragma omp simd
                for (int j = 0; j < P; ++j) u[j] += ci * wr[j];
            }
            expand(beta, be, d, P);
#pragma omp simd
            for (int j = 0; j < P; ++j) e[j] = be[j] * u[j];
            if (a.saved) {
                F* sv = a.saved + (p * T + t) * S;
                std::memcpy(sv, q, sizeof(F) * d);
                std::memcpy(sv + d, k, sizeof(F) * d);
                std::memcpy(sv + 2 * d, beta, sizeof(F) * 4);
                std::memcpy(sv + 2 * d + 4, u, sizeof(F) * m);
            }
            const bool fuse = t + 1 < T && !(a.first && a.first[(t + 1) * B + b]);
            if (fuse) {  // W += outer(k, e) and s = x_{t+1} W in one pass
                const F* xn = a.x + ((t + 1) * n + p) * d;
                for (int j = 0; j < P; ++j) s[j] = 0;
                for (int i = 0; i < d; ++i) {
                    const F ki = k[i], xi = xn[i];
                    F* __restrict wr = W + i * P;
#pragma omp simd
                    for (int j = 0; j < P; ++j) {
                        const F w = wr[j] + ki * e[j];
                        wr[j] = w;
                        s[j] += xi * w;
                    }
                }
                have_s = true;
            } else {
                for (int i = 0; i < d; ++i) {
                    const F ki = k[i];
                    F* __restrict wr = W + i * P;
#pragma omp simd
                    for (int j = 0; j < P; ++j) wr[j] += ki * e[j];
                }
                have_s = false;
            }
        }
        F* dout = a.delta_out + p * d * m;
        for (int i = 0; i < d; ++i)
            for (int j = 0; j < m; ++j) dout[i * m + j] = W[i * P + j] - w0h[i * m + j];
        if (a.wfinal) {
            F* wf = a.wfinal + p * d * m;
            for (int i = 0; i < d; ++i) std::memcpy(wf + i * m, W + i * P, sizeof(F) * m);
        }
    }
}

// Per-step values read back from the saved buffer, in the padded layout.
template <typename F>
struct Step {
    const F* q;
    const F* k;
    const F* beta;
    F* u;    // [P], zero past m
    F* be;   // [P] expanded beta
    F* e;    // [P] be * u
    F* ge;   // [P] accumulates k W-gradient (zeroed here)
    F* gk;   // [d] gradient w.r.t. k through outer(k, e)
    void load(const F* sv, int d, int m, int P) {
        q = sv;
        k = sv + d;
        beta = sv + 2 * d;
        std::memcpy(u, sv + 2 * d + 4, sizeof(F) * m);
        for (int j = m; j < P; ++j) u[j] = 0;
        expand(beta, be, d, P);
        for (int j = 0; j < P; ++j) {
            e[j] = be[j] * u[j];
            ge[j] = 0;
        }
    }
};

// Backward, per pair, walking t from T-1 to 0 with W = weights after step t and gW = dL/dW after
// step t. Step t: rebuild W before t (W -= outer(k, e)); g_k = gW e and g_e = k gW (through the
// update); g_u = be * g_e, g_beta = block sums of g_e * u; g_(q-k) = W g_u (through u = (q-k) W);
// g_s = [gy, softmax and sigmoid adjoints]; gx = W g_s; gW += outer(q-k, g_u) + outer(x, g_s).
// The last line of step t and the first of step t-1 share one pass over W and gW.
template <typename F, int DC>
void backward_range(const Args<F>& a, int64_t p0, int64_t p1) {
    const int d = DC ? DC : a.d;
    const int m = 3 * d + 4;
    const int P = DC ? (3 * DC + 4 + kPad - 1) / kPad * kPad : padded(m);
    const int64_t T = a.T, B = a.B, H = a.H, n = B * H;
    const int S = 2 * d + 4 + m;
    Buf<F> Wb(size_t(d) * P), gWb(size_t(d) * P), accb(size_t(d) * P), scratch(size_t(10) * P),
        gqkb(d), cb(d);
    F* __restrict W = Wb.p;
    F* __restrict gW = gWb.p;
    F* __restrict acc = accb.p;
    F* __restrict gu = scratch.p;
    F* __restrict gs = scratch.p + P;
    F* __restrict gqk = gqkb.p;
    F* __restrict c = cb.p;
    Step<F> cur{nullptr, nullptr, nullptr, scratch.p + 2 * P, scratch.p + 3 * P, scratch.p + 4 * P,
                scratch.p + 5 * P, nullptr};
    Step<F> nxt{nullptr, nullptr, nullptr, scratch.p + 6 * P, scratch.p + 7 * P, scratch.p + 8 * P,
                scratch.p + 9 * P, nullptr};
    Buf<F> gkb(size_t(2) * d);
    cur.gk = gkb.p;
    nxt.gk = gkb.p + d;
    for (int64_t p = p0; p < p1; ++p) {
        const int64_t b = p / H, h = p % H;
        const F* wf = a.wfinal + p * d * m;
        const F* gd = a.gdo ? a.gdo + p * d * m : nullptr;
        for (int i = 0; i < d; ++i) {
            for (int j = 0; j < P; ++j) {
                W[i * P + j] = j < m ? wf[i * m + j] : F(0);
                gW[i * P + j] = (gd && j < m) ? gd[i * m + j] : F(0);
                acc[i * P + j] = 0;
            }
        }
        // Opening half-step for t = T - 1.
        cur.load(a.saved + (p * T + T - 1) * S, d, m, P);
        for (int i = 0; i < d; ++i) {
            const F ki = cur.k[i];
            F* __restrict wr = W + i * P;
            const F* __restrict gr = gW + i * P;
            const F* __restrict e = cur.e;
            F* __restrict ge = cur.ge;
            F dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < P; ++j) {
                wr[j] -= ki * e[j];
                dot += gr[j] * e[j];
                ge[j] += ki * gr[j];
            }
            cur.gk[i] = dot;
        }
        for (int64_t t = T - 1; t >= 0; --t) {
            // Here W = weights before step t, cur.gk and cur.ge are complete.
            const F* __restrict q = cur.q;
            const F* __restrict k = cur.k;
            const F* __restrict beta = cur.beta;
            F gbeta[4] = {0, 0, 0, 0};
            for (int blk = 0; blk < 4; ++blk) {
                const int j0 = blk * d, j1 = blk < 3 ? (blk + 1) * d : m;
                const F* __restrict ge = cur.ge;
                const F* __restrict u = cur.u;
                F acc_b = 0;
#pragma omp simd reduction(+ : acc_b)
                for (int j = j0; j < j1; ++j) acc_b += ge[j] * u[j];
                gbeta[blk] = acc_b;
            }
#pragma omp simd
            for (int j = 0; j < P; ++j) gu[j] = cur.ge[j] * cur.be[j];
            for (int i = 0; i < d; ++i) {
                const F* __restrict wr = W + i * P;
                F dot = 0;
#pragma omp simd reduction(+ : dot)
                for (int j = 0; j < P; ++j) dot += wr[j] * gu[j];
                gqk[i] = dot;
            }
            if (a.gy) std::memcpy(gs, a.gy + (t * n + p) * d, sizeof(F) * d);
            else for (int j = 0; j < d; ++j) gs[j] = 0;
            F* __restrict gk = cur.gk;
            F sq = 0, sk = 0;
#pragma omp simd reduction(+ : sq, sk)
            for (int i = 0; i < d; ++i) {
                gk[i] -= gqk[i];
                sq += gqk[i] * q[i];
                sk += gk[i] * k[i];
            }
            for (int i = 0; i < d; ++i) {
                gs[d + i] = q[i] * (gqk[i] - sq);
                gs[2 * d + i] = k[i] * (gk[i] - sk);
                c[i] = q[i] - k[i];
            }
            for (int j = 0; j < 4; ++j) gs[3 * d + j] = gbeta[j] * beta[j] * (F(1) - beta[j]);
            for (int j = m; j < P; ++j) gs[j] = 0;
            const F* xt = a.x + (t * n + p) * d;
            F* gxt = a.gx + (t * n + p) * d;
            const bool reset = a.first && a.first[t * B + b];
            if (t > 0 && !reset) {
                // Close step t and open step t - 1 in one pass over the rows.
                nxt.load(a.saved + (p * T + t - 1) * S, d, m, P);
                const F* __restrict e = nxt.e;
                F* __restrict ge = nxt.ge;
                for (int i = 0; i < d; ++i) {
                    const F ci = c[i], xi = xt[i], ki = nxt.k[i];
                    F* __restrict wr = W + i * P;
                    F* __restrict gr = gW + i * P;
                    F dx = 0, dk = 0;
#pragma omp simd reduction(+ : dx, dk)
                    for (int j = 0; j < P; ++j) {
                        const F w = wr[j];
                        dx += w * gs[j];
                        wr[j] = w - ki * e[j];
                        const F g = gr[j] + ci * gu[j] + xi * gs[j];
                        gr[j] = g;
                        dk += g * e[j];
                        ge[j] += ki * g;
                    }
                    gxt[i] = dx;
                    nxt.gk[i] = dk;
                }
                std::swap(cur, nxt);
                continue;
            }
            for (int i = 0; i < d; ++i) {
                const F ci = c[i], xi = xt[i];
                const F* __restrict wr = W + i * P;
                F* __restrict gr = gW + i * P;
                F dx = 0;
#pragma omp simd reduction(+ : dx)
                for (int j = 0; j < P; ++j) {
                    dx += wr[j] * gs[j];
                    gr[j] += ci * gu[j] + xi * gs[j];
                }
                gxt[i] = dx;
            }
            if (reset) {  // W before step t was W0: its gradient goes to w0, none flows further back
                for (int j = 0; j < d * P; ++j) {
                    acc[j] += gW[j];
                    gW[j] = 0;
                }
                if (t > 0) {
                    const F* src = a.pre + (int64_t(a.slot[t * B + b]) * H + h) * d * m;
                    for (int i = 0; i < d; ++i) std::memcpy(W + i * P, src + i * m, sizeof(F) * m);
                }
            }
            if (t > 0) {  // open step t - 1 (gW is zero after a reset, so only W changes)
                cur.load(a.saved + (p * T + t - 1) * S, d, m, P);
                for (int i = 0; i < d; ++i) {
                    const F ki = cur.k[i];
                    F* __restrict wr = W + i * P;
                    const F* __restrict gr = gW + i * P;
                    const F* __restrict e = cur.e;
                    F* __restrict ge = cur.ge;
                    F dot = 0;
#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j < P; ++j) {
                        wr[j] -= ki * e[j];
                        dot += gr[j] * e[j];
                        ge[j] += ki * gr[j];
                    }
                    cur.gk[i] = dot;
                }
            }
        }
        F* gdl = a.gdelta + p * d * m;
        for (int i = 0; i < d; ++i)
            for (int j = 0; j < m; ++j) gdl[i * m + j] = gW[i * P + j];
        if (a.gacc) {
            F* ga = a.gacc + p * d * m;
            for (int i = 0; i < d; ++i)
                for (int j = 0; j < m; ++j) ga[i * m + j] = acc[i * P + j] + gW[i * P + j];
        }
    }
}

template <typename F>
using RangeFn = void (*)(const Args<F>&, int64_t, int64_t);

template <typename F>
RangeFn<F> pick(int d, bool backward) {
    switch (d) {
        case 8: return backward ? backward_range<F, 8> : forward_range<F, 8>;
        case 16: return backward ? backward_range<F, 16> : forward_range<F, 16>;
        case 32: return backward ? backward_range<F, 32> : forward_range<F, 32>;
        case 64: return backward ? backward_range<F, 64> : forward_range<F, 64>;
        default: return backward ? backward_range<F, 0> : forward_range<F, 0>;
    }
}

// Slot of the saved pre-reset weights for every (t, b) with first true and t >= 1, in (t, b) order.
std::vector<int32_t> reset_slots(const uint8_t* first, int64_t T, int64_t B) {
    std::vector<int32_t> slot(size_t(T * B), -1);
    if (!first) return slot;
    int32_t r = 0;
    for (int64_t i = B; i < T * B; ++i)
        if (first[i]) slot[size_t(i)] = r++;
    return slot;
}

// Runs fn over the n pairs with up to nthreads threads. The pairs are handed out in chunks from a
// shared counter, so a thread slowed by another process on its core takes fewer chunks instead of
// holding everyone up. Built with -fopenmp this uses the process's OpenMP runtime: PyTorch's CPU
// wheels load a libgomp.so.1, and the loader resolves our libgomp.so.1 to that same library, so the
// kernel shares PyTorch's thread team instead of competing with its spinning workers. Without
// OpenMP it starts std::threads.
template <typename F>
int run(RangeFn<F> fn, const Args<F>& a, int nthreads) {
    const int64_t n = a.B * a.H;
    const int nt = int(std::max<int64_t>(1, std::min<int64_t>(nthreads, n)));
    const int64_t chunk = std::max<int64_t>(1, n / (int64_t(nt) * 16));
    std::atomic<int64_t> next{0};
    std::atomic<int> failed{0};
    auto worker = [&]() {
        try {
            for (int64_t p0; (p0 = next.fetch_add(chunk)) < n;) fn(a, p0, std::min(n, p0 + chunk));
        } catch (...) {
            failed = 1;
        }
    };
#ifdef _OPENMP
    if (nt > 1) {
#pragma omp parallel num_threads(nt)
        worker();
    } else {
        worker();
    }
#else
    std::vector<std::thread> pool;
    try {
        pool.reserve(size_t(nt - 1));
        for (int i = 1; i < nt; ++i) pool.emplace_back(worker);
    } catch (...) {  // fewer threads than asked: the others take their chunks
    }
    worker();
    for (auto& th : pool) th.join();
#endif
    return failed.load();
}

}  // namespace

template <typename F>
static int fwd(const F* x, const F* w0, const F* delta, const uint8_t* first, F* y, F* delta_out,
               F* wfinal, F* saved, F* pre, int64_t T, int64_t B, int64_t H, int64_t d, int nthreads) {
    std::vector<int32_t> slot = reset_slots(first, T, B);
    Args<F> a{};
    a.x = x; a.w0 = w0; a.delta = delta; a.first = first; a.slot = slot.data();
    a.y = y; a.delta_out = delta_out; a.wfinal = wfinal; a.saved = saved; a.pre = pre;
    a.T = T; a.B = B; a.H = H; a.d = int(d);
    return run<F>(pick<F>(int(d), false), a, nthreads);
}

template <typename F>
static int bwd(const F* x, const F* wfinal, const F* saved, const F* pre, const uint8_t* first,
               const F* gy, const F* gdo, F* gx, F* gdelta, F* gacc, int64_t T, int64_t B,
               int64_t H, int64_t d, int nthreads) {
    std::vector<int32_t> slot = reset_slots(first, T, B);
    Args<F> a{};
    a.x = x; a.first = first; a.slot = slot.data(); a.wfinal = const_cast<F*>(wfinal);
    a.saved = const_cast<F*>(saved); a.pre = const_cast<F*>(pre);
    a.gy = gy; a.gdo = gdo; a.gx = gx; a.gdelta = gdelta; a.gacc = gacc;
    a.T = T; a.B = B; a.H = H; a.d = int(d);
    return run<F>(pick<F>(int(d), true), a, nthreads);
}

extern "C" {

int srwm_fused_abi_version() { return 1; }

int srwm_fwd_f32(const float* x, const float* w0, const float* delta, const uint8_t* first,
                 float* y, float* delta_out, float* wfinal, float* saved, float* pre, int64_t T,
                 int64_t B, int64_t H, int64_t d, int nthreads) {
    return fwd<float>(x, w0, delta, first, y, delta_out, wfinal, saved, pre, T, B, H, d, nthreads);
}

int srwm_fwd_f64(const double* x, const double* w0, const double* delta, const uint8_t* first,
                 double* y, double* delta_out, double* wfinal, double* saved, double* pre,
                 int64_t T, int64_t B, int64_t H, int64_t d, int nthreads) {
    return fwd<double>(x, w0, delta, first, y, delta_out, wfinal, saved, pre, T, B, H, d, nthreads);
}

int srwm_bwd_f32(const float* x, const float* wfinal, const float* saved, const float* pre,
                 const uint8_t* first, const float* gy, const float* gdo, float* gx, float* gdelta,
                 float* gacc, int64_t T, int64_t B, int64_t H, int64_t d, int nthreads) {
    return bwd<float>(x, wfinal, saved, pre, first, gy, gdo, gx, gdelta, gacc, T, B, H, d, nthreads);
}

int srwm_bwd_f64(const double* x, const double* wfinal, const double* saved, const double* pre,
                 const uint8_t* first, const double* gy, const double* gdo, double* gx,
                 double* gdelta, double* gacc, int64_t T, int64_t B, int64_t H, int64_t d,
                 int nthreads) {
    return bwd<double>(x, wfinal, saved, pre, first, gy, gdo, gx, gdelta, gacc, T, B, H, d, nthreads);
}

}  // extern "C"
