"""The Triton SRWM kernel (srwm_rl/ops/srwm_triton.py) equals the pure recurrence and the float64 reference.

Marked ``triton``: excluded from ``make test``, run by ``make test-kernels`` (installs the ``gpu`` extra
and sets TRITON_INTERPRET=1, so the kernels run on CPU tensors in Triton's interpreter) and by
benchmarks/gpu_check.sh on a CUDA machine (no interpreter: the same tests on the real device).
The interpreter costs ~0.05-0.1 s per (sample, head, step), so sizes are small.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from srwm_reference import reference_unroll
from srwm_rl.ops.srwm import fast_width, split_blocks, srwm_unroll_cat
from srwm_rl.ops.srwm_triton import NUM_WARPS, interpreting, srwm_unroll_triton, triton_unavailable_reason

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def device():
    """cuda on a GPU machine, else cpu under the interpreter; skips, saying why, otherwise."""
    dev = "cpu" if interpreting() or not torch.cuda.is_available() else "cuda"
    reason = triton_unavailable_reason(dev)
    if reason is not None:
        pytest.skip(f"triton SRWM kernel cannot run on {dev}: {reason}")
    return dev


def make(T, B, H, d, dtype=torch.float64, seed=0, p_first=0.3, delta_scale=0.1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    m = fast_width(d)
    x = torch.softmax(torch.randn(T, B, H, d, generator=g, dtype=dtype), -1)
    w0 = torch.randn(H, d, m, generator=g, dtype=dtype) / d ** 0.5
    delta = delta_scale * torch.randn(B, H, d, m, generator=g, dtype=dtype)
    first = torch.rand(T, B, generator=g) < p_first if p_first else None
    if first is not None:
        first = first.to(device)
    return x.to(device), w0.to(device), delta.to(device), first


def run(fn, x, w0, delta, first, seed=1):
    """Outputs, final state and gradients of a random linear loss on both outputs (on the CPU)."""
    x, w0, delta = (t.detach().clone().requires_grad_() for t in (x, w0, delta))
    y, d_out = fn(x, w0, delta, first)
    g = torch.Generator().manual_seed(seed)
    gy = torch.randn(y.shape, generator=g, dtype=y.dtype).to(y.device)
    gd = torch.randn(d_out.shape, generator=g, dtype=y.dtype).to(y.device)
    ((y * gy).sum() + (d_out * gd).sum()).backward()
    return [t.cpu() for t in (y.detach(), d_out.detach(), x.grad, w0.grad, delta.grad)]


NAMES = ["y", "delta_out", "grad x", "grad w0", "grad delta"]


def assert_close(got, want, atol, rtol=0.0):
    for name, a, b in zip(NAMES, got, want):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"{name}: {m}")


# T = 1, odd head sizes (padded to a power of two inside the kernel), and the sizes the issue names.
SHAPES = [(1, 3, 2, 4), (5, 3, 2, 5), (4, 2, 1, 8), (3, 2, 2, 7), (3, 2, 1, 16), (2, 1, 2, 32), (2, 1, 1, 64)]


@pytest.mark.parametrize("T,B,H,d", SHAPES)
@pytest.mark.parametrize("with_first", [False, True])
def test_float64_equals_pure_and_reference(device, T, B, H, d, with_first):
    """float64: every output and gradient equals plain autograd through the pure path to 1e-12."""
    x, w0, delta, first = make(T, B, H, d, p_first=0.4 if with_first else 0, device=device)
    got = run(srwm_unroll_triton, x, w0, delta, first)
    assert_close(got, run(srwm_unroll_cat, x, w0, delta, first), atol=1e-12)
    f = None if first is None else first.cpu().numpy()
    y_ref, d_ref = reference_unroll(x.cpu().numpy(), split_blocks(w0.cpu()), split_blocks(delta.cpu()), f)
    np.testing.assert_allclose(got[0].numpy(), y_ref, atol=1e-12)
    np.testing.assert_allclose(torch.cat([torch.as_tensor(b) for b in d_ref], -1).numpy(), got[1].numpy(),
                               atol=1e-12)


def test_resets_everywhere_and_at_the_start(device):
    x, w0, delta, _ = make(4, 3, 2, 6, device=device)
    for first in (torch.ones(4, 3, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.bool)):
        first[0] = True                       # a reset at t = 0: delta gets no gradient there
        first = first.to(device)
        got = run(srwm_unroll_triton, x, w0, delta, first)
        assert_close(got, run(srwm_unroll_cat, x, w0, delta, first), atol=1e-12)
        assert torch.equal(got[4], torch.zeros_like(got[4]))


@pytest.mark.parametrize("d", [8, 16, 32, 64])
def test_float32_as_accurate_as_pytorch_float32(device, d):
    """float32 tolerance, justified: measured against the float64 truth, the kernel's error is at
    most a few times that of PyTorch's own float32 pure path (summation order differs, and the
    backward rebuilds weights by subtraction), and it agrees with that path to 2e-5 / 1e-4."""
    args64 = make(10, 2, 2, d, p_first=0.15, device=device)
    truth = run(srwm_unroll_cat, *args64)
    args32 = [t if t is None or t.dtype == torch.bool else t.float() for t in args64]
    got = run(srwm_unroll_triton, *args32)
    pure = run(srwm_unroll_cat, *args32)
    assert all(t.dtype == torch.float32 for t in got)
    for name, a, p, tr in zip(NAMES, got, pure, truth):
        err, err_pure = (a.double() - tr).abs().max().item(), (p.double() - tr).abs().max().item()
        assert err <= 4 * err_pure + 1e-6, f"{name}: kernel error {err:.2e} vs pure float32 {err_pure:.2e}"
    assert_close(got, pure, atol=2e-5, rtol=1e-4)


def test_float32_long_unroll_rebuilds_weights(device):
    """T = 48: the rebuilt weights drift by float32 rounding; gradients stay within the pure path's
    float32 error of the float64 truth (4x plus a floor)."""
    args64 = make(48, 1, 2, 16, p_first=0.05, device=device)
    truth = run(srwm_unroll_cat, *args64)
    args32 = [t if t is None or t.dtype == torch.bool else t.float() for t in args64]
    got, pure = run(srwm_unroll_triton, *args32), run(srwm_unroll_cat, *args32)
    for name, a, p, tr in zip(NAMES, got, pure, truth):
        err, err_pure = (a.double() - tr).abs().max().item(), (p.double() - tr).abs().max().item()
        assert err <= 4 * err_pure + 1e-5, f"{name}: kernel error {err:.2e} vs pure float32 {err_pure:.2e}"


def test_gradcheck_tiny(device):
    """Finite differences in float64 (central, eps 1e-6) through forward, a reset and backward.

    fast_mode: gradcheck compares directional derivatives along random directions (a few kernel
    calls) instead of the full Jacobian (two calls per input element: minutes in the interpreter).
    """
    x, w0, delta, _ = make(3, 2, 2, 3, p_first=0, device=device)
    first = torch.tensor([[False, False], [True, False], [False, True]], device=device)
    inputs = tuple(t.clone().requires_grad_() for t in (x, w0, delta))
    assert torch.autograd.gradcheck(lambda a, b, c: srwm_unroll_triton(a, b, c, first), inputs,
                                    eps=1e-6, atol=1e-8, fast_mode=True)


def test_one_output_used_no_grad_and_only_x(device):
    x, w0, delta, first = make(3, 2, 2, 5, device=device)
    for pick in (0, 1):          # loss on y only, then on delta_out only (the other grad is None)
        grads = []
        for fn in (srwm_unroll_triton, srwm_unroll_cat):
            xs, ws, ds = (t.clone().requires_grad_() for t in (x, w0, delta))
            fn(xs, ws, ds, first)[pick].pow(2).sum().backward()
            grads.append((xs.grad, ws.grad, ds.grad))
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    with torch.inference_mode():
        for a, b in zip(srwm_unroll_triton(x, w0, delta, first), srwm_unroll_cat(x, w0, delta, first)):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    xs = x.clone().requires_grad_()
    srwm_unroll_triton(xs, w0, delta, first)[0].sum().backward()
    assert xs.grad is not None and w0.grad is None and delta.grad is None


def test_inputs_untouched_and_non_contiguous_inputs(device):
    x, w0, delta, first = make(3, 3, 2, 5, device=device)
    x_nc = x.transpose(1, 2).contiguous().transpose(1, 2)
    assert not x_nc.is_contiguous()
    ins = [t.clone().requires_grad_() for t in (x_nc, w0, delta)]
    before = [t.detach().clone() for t in ins]
    versions = [t._version for t in ins]
    got = run(srwm_unroll_triton, *ins, first)
    for t, b, v in zip(ins, before, versions):
        assert torch.equal(t.detach(), b) and t._version == v
    assert_close(got, run(srwm_unroll_cat, x, w0, delta, first), atol=1e-12)


def test_bad_inputs_raise_value_error(device):
    x, w0, delta, _ = make(2, 2, 1, 4, p_first=0, device=device)
    with pytest.raises(ValueError, match="W0 has shape"):
        srwm_unroll_triton(x, w0[:, :, :-1], delta)
    with pytest.raises(ValueError, match="first has shape"):
        srwm_unroll_triton(x, w0, delta, torch.zeros(3, 2, dtype=torch.bool, device=device))


def test_layer_with_impl_triton_equals_pure(device):
    """Through the registry: an SRWM layer with impl='triton' trains like impl='pure'."""
    from srwm_rl.nn.layers import SRWMLayer, resolve_impl
    assert resolve_impl("triton", torch.device(device)) is srwm_unroll_triton
    if device == "cuda":
        assert resolve_impl("auto", torch.device(device)) is srwm_unroll_triton
    T, B, D, H = 4, 2, 16, 2
    h = torch.randn(T, B, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(device)
    first = torch.tensor([[True, False], [False, False], [False, True], [False, False]], device=device)
    grads = []
    for impl in ("triton", "pure"):
        torch.manual_seed(0)
        layer = SRWMLayer(D, H, impl=impl).double().to(device)
        delta = torch.zeros(B, *layer.state_shape(), dtype=torch.float64, device=device)
        out, d_out = layer(h, delta, first)
        (out.pow(2).sum() + d_out.pow(2).sum()).backward()
        grads.append([out.detach(), d_out.detach(), *[p.grad for p in layer.parameters()]])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=0)


@pytest.mark.skipif(not interpreting(), reason="on a GPU machine the other tests compile the kernels for real")
def test_kernels_compile_for_a_gpu_without_one(tmp_path):
    """The interpreter accepts code the compiler rejects: compile both kernels to sm_90 cubins (no GPU
    needed) for every head size with the shipped warps, in a fresh Triton cache, and read their
    register use (benchmarks/triton_resources.py)."""
    pytest.importorskip("triton.backends.nvidia")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "benchmarks/triton_resources.py", "--quick"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("registers=") == 2 * (len(NUM_WARPS) + 2), res.stdout   # + 2 flag variants
