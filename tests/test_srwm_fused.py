"""The fused CPU kernel (srwm_rl/srwm_fused.py) equals the pure recurrence and the float64 reference.

The kernel is compiled on first use (a few seconds, then cached); every test that needs it skips,
saying why, when it cannot be built here.
"""
import numpy as np
import pytest
import torch

from srwm_reference import reference_unroll
from srwm_rl.ops import srwm_fused
from srwm_rl.ops.srwm import cat_blocks, fast_width, split_blocks, srwm_unroll_cat
from srwm_rl.ops.srwm_fused import fused_available, fused_unavailable_reason, srwm_unroll_fused


@pytest.fixture
def kernel():
    """Skips the test, saying why, when the kernel cannot be built on this machine."""
    if not fused_available():
        pytest.skip(f"fused SRWM kernel unavailable: {fused_unavailable_reason()}")


def make(T, B, H, d, dtype=torch.float64, seed=0, p_first=0.3, delta_scale=0.1):
    g = torch.Generator().manual_seed(seed)
    m = fast_width(d)
    x = torch.softmax(torch.randn(T, B, H, d, generator=g, dtype=dtype), -1)
    w0 = torch.randn(H, d, m, generator=g, dtype=dtype) / d ** 0.5
    delta = delta_scale * torch.randn(B, H, d, m, generator=g, dtype=dtype)
    first = torch.rand(T, B, generator=g) < p_first if p_first else None
    return x, w0, delta, first


def run(fn, x, w0, delta, first, seed=1):
    """Outputs, final state and gradients of a random linear loss on both outputs."""
    x, w0, delta = (t.detach().clone().requires_grad_() for t in (x, w0, delta))
    y, d_out = fn(x, w0, delta, first)
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(y.shape, generator=g, dtype=y.dtype)
    gd = torch.randn(d_out.shape, generator=g, dtype=y.dtype)
    ((y * gy).sum() + (d_out * gd).sum()).backward()
    return [y.detach(), d_out.detach(), x.grad, w0.grad, delta.grad]


NAMES = ["y", "delta_out", "grad x", "grad w0", "grad delta"]


def assert_close(got, want, atol, rtol=0.0):
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


SHAPES = [(1, 3, 2, 4), (1, 2, 1, 16), (5, 3, 2, 5), (7, 2, 3, 7), (6, 4, 2, 8), (9, 3, 2, 16),
          (4, 2, 1, 32)]


@pytest.mark.parametrize("T,B,H,d", SHAPES)
@pytest.mark.parametrize("with_first", [False, True])
def test_float64_equals_pure_and_reference(kernel, T, B, H, d, with_first):
    x, w0, delta, first = make(T, B, H, d, p_first=0.35 if with_first else 0)
    got = run(srwm_unroll_fused, x, w0, delta, first)
    assert_close(got, run(srwm_unroll_cat, x, w0, delta, first), atol=1e-12)
    W0 = split_blocks(w0)
    D = split_blocks(delta)
    y_ref, d_ref = reference_unroll(x.numpy(), [t.numpy() for t in W0], [t.numpy() for t in D],
                                    None if first is None else first.numpy())
    np.testing.assert_allclose(got[0].numpy(), y_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got[1].numpy(), cat_blocks([torch.from_numpy(a) for a in d_ref]).numpy(),
                               rtol=0, atol=1e-10)


def test_resets_everywhere_and_at_the_start(kernel):
    x, w0, delta, _ = make(6, 3, 2, 5)
    first = torch.zeros(6, 3, dtype=torch.bool)
    first[0] = True            # the carried state is discarded: no gradient reaches delta
    first[:, 1] = True         # sample 1 resets before every step
    first[3, 2] = True
    got = run(srwm_unroll_fused, x, w0, delta, first)
    assert_close(got, run(srwm_unroll_cat, x, w0, delta, first), atol=1e-12)
    assert torch.count_nonzero(got[4]) == 0


@pytest.mark.parametrize("d", [16, 32, 6])
def test_float32_agrees_with_pure(kernel, d):
    x, w0, delta, first = make(24, 4, 2, d, dtype=torch.float32, p_first=0.1)
    got = run(srwm_unroll_fused, x, w0, delta, first)
    want = run(srwm_unroll_cat, x, w0, delta, first)
    assert all(t.dtype == torch.float32 for t in got)
    assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_gradcheck_tiny(kernel):
    x, w0, delta, first = make(3, 2, 2, 3, p_first=0.4)
    first[1, 0] = True
    inputs = tuple(t.clone().requires_grad_() for t in (x, w0, delta))
    assert torch.autograd.gradcheck(lambda a, b, c: srwm_unroll_fused(a, b, c, first), inputs,
                                    eps=1e-6, atol=1e-8)


def test_one_output_used_and_no_grad_paths(kernel):
    x, w0, delta, first = make(5, 2, 2, 5)
    for pick in (0, 1):          # loss on y only, then on delta_out only
        grads = []
        for fn in (srwm_unroll_fused, srwm_unroll_cat):
            xs, ws, ds = (t.clone().requires_grad_() for t in (x, w0, delta))
            fn(xs, ws, ds, first)[pick].pow(2).sum().backward()
            grads.append((xs.grad, ws.grad, ds.grad))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    with torch.inference_mode():
        for a, b in zip(srwm_unroll_fused(x, w0, delta, first), srwm_unroll_cat(x, w0, delta, first)):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    xs = x.clone().requires_grad_()      # only x needs a gradient
    y, _ = srwm_unroll_fused(xs, w0, delta, first)
    y.sum().backward()
    assert xs.grad is not None and w0.grad is None and delta.grad is None


def test_inputs_untouched_and_non_contiguous_inputs(kernel):
    x, w0, delta, first = make(5, 3, 2, 5)
    x_nc = x.transpose(1, 2).contiguous().transpose(1, 2)          # same values, other strides
    assert not x_nc.is_contiguous()
    ins = [t.clone().requires_grad_() for t in (x_nc, w0, delta)]
    before = [t.detach().clone() for t in ins]
    versions = [t._version for t in ins]
    first_before = first.clone()
    got = run(srwm_unroll_fused, *ins, first)
    y, d_out = srwm_unroll_fused(*ins, first)
    (y.sum() + d_out.sum()).backward()
    for t, b, v in zip(ins, before, versions):
        assert torch.equal(t.detach(), b) and t._version == v
    assert torch.equal(first, first_before)
    assert_close(got, run(srwm_unroll_cat, x, w0, delta, first), atol=1e-12)


def test_thread_count_does_not_change_results(kernel):
    x, w0, delta, first = make(7, 5, 3, 16, dtype=torch.float32)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(srwm_unroll_fused, x, w0, delta, first)
        torch.set_num_threads(2)
        two = run(srwm_unroll_fused, x, w0, delta, first)
    finally:
        torch.set_num_threads(n)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


def test_training_steps_match_pure(kernel):
    """Three SGD steps on a small sequence loss give the same parameters with either path."""
    T, B, H, d = 8, 3, 2, 5
    x_in, w0_init, _, first = make(T, B, H, d)
    target = torch.randn(T, B, H, d, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    results = []
    for fn in (srwm_unroll_fused, srwm_unroll_cat):
        torch.manual_seed(0)
        proj = torch.nn.Linear(d, d, dtype=torch.float64)
        w0 = torch.nn.Parameter(w0_init.clone())
        opt = torch.optim.SGD([w0, *proj.parameters()], lr=0.5, momentum=0.9)
        state = torch.zeros(B, H, d, fast_width(d), dtype=torch.float64)
        for _ in range(3):
            x = torch.softmax(proj(x_in), -1)
            y, state = fn(x, w0, state, first)
            loss = (y - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            state = state.detach()
        results.append([w0.detach(), *[p.detach() for p in proj.parameters()], state])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


def test_bad_shapes_raise_value_error(kernel):
    x, w0, delta, _ = make(3, 2, 2, 4, p_first=0)
    with pytest.raises(ValueError, match="delta"):
        srwm_unroll_fused(x, w0, delta[:1], None)
    with pytest.raises(ValueError, match="first"):
        srwm_unroll_fused(x, w0, delta, torch.zeros(3, 3, dtype=torch.bool))


def test_unavailable_kernel_falls_back_to_pure(monkeypatch):
    monkeypatch.setattr(srwm_fused, "_state", {"reason": "pretend the build failed"})
    assert not fused_available()
    assert fused_unavailable_reason() == "pretend the build failed"
    x, w0, delta, first = make(4, 2, 2, 5)
    assert_close(run(srwm_unroll_fused, x, w0, delta, first), run(srwm_unroll_cat, x, w0, delta, first),
                 atol=0)
