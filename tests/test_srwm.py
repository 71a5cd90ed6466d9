"""The SRWM recurrence: the pure path against a float64 numpy transcription, its semantics, the lean path."""
import numpy as np
import pytest
import torch

from srwm_reference import reference_unroll
from srwm_rl.ops.srwm import cat_blocks, split_blocks, srwm_unroll, srwm_unroll_cat
from srwm_rl.ops.srwm_lean import srwm_unroll_lean


def make_inputs(T, B, H, d, dtype=torch.float64, seed=0, delta_scale=0.1, grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(T, B, H, d, generator=g, dtype=dtype), -1)
    W0 = tuple(torch.randn(H, d, c, generator=g, dtype=dtype) / d ** 0.5 for c in (d, d, d, 4))
    delta = tuple(delta_scale * torch.randn(B, H, d, c, generator=g, dtype=dtype) for c in (d, d, d, 4))
    if grad:
        x.requires_grad_()
        for t in W0 + delta:
            t.requires_grad_()
    return x, W0, delta


def random_first(T, B, p=0.3, seed=1):
    return torch.rand(T, B, generator=torch.Generator().manual_seed(seed)) < p


def numpy_of(ts):
    return [t.detach().numpy() for t in ts]


@pytest.mark.parametrize("T,B,H,d", [(1, 1, 1, 3), (6, 3, 2, 4), (9, 2, 3, 5)])
@pytest.mark.parametrize("with_first", [False, True])
def test_matches_float64_reference(T, B, H, d, with_first):
    x, W0, delta = make_inputs(T, B, H, d)
    first = random_first(T, B) if with_first else None
    y, d_out = srwm_unroll(x, W0, delta, first)
    y_ref, d_ref = reference_unroll(x.numpy(), numpy_of(W0), numpy_of(delta), None if first is None else first.numpy())
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=0, atol=1e-9)
    for a, b in zip(d_out, d_ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=0, atol=1e-9)


def test_unroll_equals_step_by_step_loop():
    T, B, H, d = 8, 3, 2, 4
    x, W0, delta = make_inputs(T, B, H, d)
    first = random_first(T, B)
    y, d_out = srwm_unroll(x, W0, delta, first)
    state, ys = delta, []
    for t in range(T):
        y_t, state = srwm_unroll(x[t:t + 1], W0, state, first[t:t + 1])
        ys.append(y_t)
    torch.testing.assert_close(torch.cat(ys), y, rtol=0, atol=1e-12)
    for a, b in zip(state, d_out):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_reset_gives_fresh_unroll_and_leaves_others_alone():
    T, B, H, d, t0 = 10, 3, 2, 4, 4
    x, W0, delta = make_inputs(T, B, H, d, delta_scale=0.5)
    first = torch.zeros(T, B, dtype=torch.bool)
    first[t0, 1] = True
    y, _ = srwm_unroll(x, W0, delta, first)
    zero = tuple(torch.zeros_like(t[:1]) for t in delta)
    y_fresh, _ = srwm_unroll(x[t0:, 1:2], W0, zero)
    torch.testing.assert_close(y[t0:, 1:2], y_fresh, rtol=0, atol=1e-12)
    y_none, _ = srwm_unroll(x, W0, delta)
    torch.testing.assert_close(y[:, [0, 2]], y_none[:, [0, 2]], rtol=0, atol=0)
    torch.testing.assert_close(y[:t0], y_none[:t0], rtol=0, atol=0)
    assert (y[t0:, 1] - y_none[t0:, 1]).abs().max() > 1e-6   # the reset changed something


def test_chunking_invariance():
    T, B, H, d = 12, 2, 2, 4
    x, W0, delta = make_inputs(T, B, H, d)
    first = random_first(T, B)
    y, d_out = srwm_unroll(x, W0, delta, first)
    y1, s = srwm_unroll(x[:T // 2], W0, delta, first[:T // 2])
    y2, s = srwm_unroll(x[T // 2:], W0, s, first[T // 2:])
    torch.testing.assert_close(torch.cat([y1, y2]), y, rtol=0, atol=1e-12)
    for a, b in zip(s, d_out):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_inputs_are_not_written():
    x, W0, delta = make_inputs(5, 2, 2, 3)
    first = random_first(5, 2)
    copies = [t.clone() for t in (x, *W0, *delta)]
    for fn in (srwm_unroll_cat, srwm_unroll_lean):
        fn(x, cat_blocks(W0), cat_blocks(delta), first)
    srwm_unroll(x, W0, delta, first)
    for a, b in zip(copies, (x, *W0, *delta)):
        assert torch.equal(a, b)


def test_gradients_reach_all_four_blocks():
    x, W0, delta = make_inputs(6, 2, 2, 4, grad=True, delta_scale=0.0)
    y, d_out = srwm_unroll(x, W0, delta)
    (y ** 2).sum().backward()
    for name, w in zip(("W_y", "W_q", "W_k", "w_b"), W0):
        assert w.grad is not None and w.grad.abs().max() > 1e-6, name


def test_gradcheck_pure_and_lean():
    T, B, H, d = 3, 2, 1, 3
    x, W0, delta = make_inputs(T, B, H, d, grad=False)
    first = torch.tensor([[False, False], [True, False], [False, True]])
    w0c, dc = cat_blocks(W0).requires_grad_(), cat_blocks(delta).requires_grad_()
    x.requires_grad_()
    for fn in (srwm_unroll_cat, srwm_unroll_lean):
        assert torch.autograd.gradcheck(lambda a, b, c: fn(a, b, c, first), (x, w0c, dc))


@pytest.mark.parametrize("T,B,H,d", [(1, 2, 1, 3), (7, 3, 2, 5), (16, 4, 2, 6)])
def test_lean_equals_pure_values_and_gradients(T, B, H, d):
    x, W0, delta = make_inputs(T, B, H, d, seed=T)
    first = random_first(T, B, seed=T)
    first[0, 0] = True
    ins = [x.clone().requires_grad_(), cat_blocks(W0).requires_grad_(), cat_blocks(delta).requires_grad_()]
    outs_p = srwm_unroll_cat(*ins, first)
    outs_l = srwm_unroll_lean(*ins, first)
    g = torch.Generator().manual_seed(3)
    cot = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs_p]
    grads_p = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs_p, cot)), ins)
    grads_l = torch.autograd.grad(sum((o * c).sum() for o, c in zip(outs_l, cot)), ins)
    for a, b in zip(outs_p + grads_p, outs_l + grads_l):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_lean_float32_close_to_float64():
    T, B, H, d = 64, 4, 2, 8
    x, W0, delta = make_inputs(T, B, H, d)
    first = random_first(T, B, p=0.05)
    args64 = [x.requires_grad_(), cat_blocks(W0).requires_grad_(), cat_blocks(delta).requires_grad_()]
    args32 = [a.detach().float().requires_grad_() for a in args64]
    y64, s64 = srwm_unroll_lean(*args64, first)
    y32, s32 = srwm_unroll_lean(*args32, first)
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)
    g64 = torch.autograd.grad(y64.square().sum() + s64.square().sum(), args64)
    g32 = torch.autograd.grad(y32.square().sum() + s32.square().sum(), args32)
    for a, b in zip(g32, g64):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4)


def test_block_layout_round_trip():
    _, W0, _ = make_inputs(1, 1, 2, 5)
    for a, b in zip(split_blocks(cat_blocks(W0)), W0):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad,match", [
    (lambda x, W0, dl, f: (x[0], W0, dl, f), r"x must have shape \[T, B, H, d\]"),
    (lambda x, W0, dl, f: (x.int(), W0, dl, f), "x has dtype"),
    (lambda x, W0, dl, f: (x, (W0[0][:, :2],) + W0[1:], dl, f), r"W0.W_y has shape"),
    (lambda x, W0, dl, f: (x, W0, (dl[0],) + tuple(t[:1] for t in dl[1:]), f), r"delta.W_q has shape"),
    (lambda x, W0, dl, f: (x, W0, tuple(t.float() for t in dl), f), r"delta.W_y has dtype"),
    (lambda x, W0, dl, f: (x, W0, dl[:3], f), "tuple of four"),
    (lambda x, W0, dl, f: (x, W0, dl, f.float()), "first has dtype"),
    (lambda x, W0, dl, f: (x, W0, dl, f[:, :1]), r"first has shape \[4, 1\], expected \[4, 2\]"),
])
def test_bad_input_names_the_tensor(bad, match):
    x, W0, delta = make_inputs(4, 2, 2, 3)
    with pytest.raises(ValueError, match=match):
        srwm_unroll(*bad(x, W0, delta, random_first(4, 2)))
