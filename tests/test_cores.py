"""Every registered core honours the protocol: state threading, reset, batch independence, errors."""
import pytest
import torch

from srwm_rl.nn.cores import CORES, SHORT_CONV_CORES, CoreConfig, make_core
from srwm_rl.nn.layers import delta_unroll

IN = 5


def build(kind, **kw):
    torch.manual_seed(0)
    cfg = CoreConfig(kind=kind, hidden_size=12, num_layers=2, num_heads=3, ff_mult=2, **kw)
    core = make_core(IN, cfg).double()
    if getattr(core, "conv", None) is not None:   # it starts as the identity: give every lag a weight
        with torch.no_grad():
            core.conv.weight.normal_()
    return core


CASES = [("srwm", {"impl": "pure"}), ("srwm", {"impl": "lean"}), ("srwm", {"norm": "pre"}),
         ("srwm", {"input_softmax": False, "norm": "post"}), ("lstm", {}), ("delta", {}),
         ("fake_sr", {}), ("none", {}), ("srwm", {"short_conv": 3}), ("delta", {"short_conv": 2}),
         ("fake_sr", {"short_conv": 4})]
IDS = [f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items())}" for k, kw in CASES]


def test_every_registered_core_is_covered():
    assert {k for k, _ in CASES} == set(CORES)


def run(core, x, first, state=None):
    state = core.initial_state(x.shape[1]) if state is None else state
    return core(x, state, first)


def random_first(T, B, seed=0):
    return torch.rand(T, B, generator=torch.Generator().manual_seed(seed)) < 0.2


@pytest.mark.parametrize("kind,kw", CASES, ids=IDS)
def test_state_threading_chunking(kind, kw):
    core = build(kind, **kw)
    T, B = 10, 3
    x = torch.randn(T, B, IN, dtype=torch.float64)
    first = random_first(T, B)
    out, state = run(core, x, first)
    assert out.shape == (T, B, core.output_size)
    o1, s = run(core, x[:4], first[:4])
    o2, s = run(core, x[4:], first[4:], s)
    torch.testing.assert_close(torch.cat([o1, o2]), out, rtol=0, atol=1e-10)
    for a, b in zip(s, state):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind,kw", CASES, ids=IDS)
def test_reset_equals_fresh_start(kind, kw):
    core = build(kind, **kw)
    T, B, t0 = 9, 3, 5
    x = torch.randn(T, B, IN, dtype=torch.float64)
    first = torch.zeros(T, B, dtype=torch.bool)
    first[t0, 2] = True
    warm = tuple(torch.randn_like(s) for s in core.initial_state(B))   # a non-trivial carried state
    out, _ = run(core, x, first, warm)
    fresh, _ = run(core, x[t0:, 2:3], None)
    torch.testing.assert_close(out[t0:, 2:3], fresh, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind,kw", CASES, ids=IDS)
def test_batch_independence(kind, kw):
    core = build(kind, **kw)
    T, B = 7, 4
    x = torch.randn(T, B, IN, dtype=torch.float64)
    first = random_first(T, B, seed=2)
    out, state = run(core, x, first)
    for b in range(B):
        o_b, s_b = run(core, x[:, b:b + 1], first[:, b:b + 1])
        torch.testing.assert_close(o_b, out[:, b:b + 1], rtol=0, atol=1e-10)
        for a, c in zip(s_b, state):
            torch.testing.assert_close(a, c[b:b + 1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind,kw", CASES, ids=IDS)
def test_introspect_and_state_are_batch_first(kind, kw):
    core = build(kind, **kw)
    state = core.initial_state(6)
    assert all(s.shape[0] == 6 for s in state)
    _, state = run(core, torch.randn(3, 6, IN, dtype=torch.float64), None, state)
    for name, v in core.introspect(state).items():
        assert v.shape[0] == 6, name
    if kind == "srwm":
        assert set(core.introspect(state)) == {"delta_norm/layer0", "delta_norm/layer1"}


def short_conv_reference(weight, h, hist, first):
    """Step by step: a list of the previous K - 1 inputs per sample, emptied (zeros) at a reset."""
    K = weight.shape[0]
    T, B, _ = h.shape
    outs, new = torch.zeros_like(h), []
    for b in range(B):
        past = [hist[b, i] for i in range(K - 1)]           # oldest first
        for t in range(T):
            if first is not None and first[t, b]:
                past = [torch.zeros_like(p) for p in past]
            window = past + [h[t, b]]                         # oldest ... current
            outs[t, b] = sum(weight[j] * window[-1 - j] for j in range(K))
            past = window[1:]
        new.append(torch.stack(past))
    return outs, torch.stack(new)


@pytest.mark.parametrize("width", [2, 3, 5])
def test_short_conv_matches_a_step_by_step_loop(width):
    from srwm_rl.nn.layers import ShortConv
    torch.manual_seed(width)
    conv = ShortConv(4, width).double()
    with torch.no_grad():
        conv.weight.normal_()
    T, B = 7, 3
    h = torch.randn(T, B, 4, dtype=torch.float64)
    hist = torch.randn(B, width - 1, 4, dtype=torch.float64)
    first = random_first(T, B, seed=width)
    first[0, 0], first[T - 1, 1] = True, True
    for f in (first, None):
        out, new = conv(h, hist, f)
        ref_out, ref_new = short_conv_reference(conv.weight, h, hist, f)
        torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-12)
        torch.testing.assert_close(new, ref_new, rtol=0, atol=1e-12)
    state, outs = hist, []
    for t in range(T):          # one step per call, as an actor steps: shorter than the window
        o, state = conv(h[t:t + 1], state, first[t:t + 1])
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs), conv(h, hist, first)[0], rtol=0, atol=1e-12)


def test_short_conv_sits_between_input_projection_and_memory_and_only_fast_weight_cores_use_it():
    """With the kernel set to the identity (w_0 = 1, the rest 0) the core computes what it computes without."""
    x = torch.randn(6, 2, IN, dtype=torch.float64)
    plain = make_core(IN, CoreConfig(kind="srwm", hidden_size=12, num_heads=3, num_layers=1, short_conv=0)).double()
    conv = make_core(IN, CoreConfig(kind="srwm", hidden_size=12, num_heads=3, num_layers=1, short_conv=3)).double()
    w = conv.conv.weight.detach().clone()
    assert w.abs().max() <= 3 ** -0.5 and w[1:].abs().sum() > 0        # nn.Conv1d's depthwise init
    identity = torch.zeros_like(w)
    identity[0] = 1.0
    conv.load_state_dict({**plain.state_dict(), "conv.weight": identity}, strict=True)
    torch.testing.assert_close(run(conv, x, None)[0], run(plain, x, None)[0], rtol=0, atol=1e-12)
    assert conv.state_shapes()[-1] == (2, 12)
    for kind in SHORT_CONV_CORES:
        assert make_core(IN, CoreConfig(kind=kind, hidden_size=12, num_heads=3, short_conv=2)).conv is not None
    # the LSTM has gates of its own; the feed-forward baseline must stay without memory
    assert make_core(IN, CoreConfig(kind="lstm", short_conv=2)).state_shapes() == [(2, 128)] * 2
    assert make_core(IN, CoreConfig(kind="none", short_conv=2)).state_shapes() == []
    assert CoreConfig(short_conv=1).validate() == ["core.short_conv=1: must be 0 (none) or a width >= 2"]
    assert "core.short_conv=-2" in CoreConfig(short_conv=-2).validate()[0]


def test_srwm_paths_agree_inside_the_core():
    x = torch.randn(8, 3, IN, dtype=torch.float64)
    first = random_first(8, 3, seed=4)
    outs = []
    for impl in ("pure", "lean"):
        core = build("srwm", impl=impl)
        out, _ = run(core, x, first)
        outs.append(out)
        grads = torch.autograd.grad(out.square().sum(), list(core.parameters()))
        outs.append(torch.cat([g.flatten() for g in grads]))
    torch.testing.assert_close(outs[0], outs[2], rtol=0, atol=1e-10)
    torch.testing.assert_close(outs[1], outs[3], rtol=0, atol=1e-9)


@pytest.mark.parametrize("detach", [False, True])
def test_detach_every_step_cuts_gradient_to_the_self_modification(detach):
    core = build("srwm", impl="pure", detach_every_step=detach)
    out, _ = run(core, torch.randn(6, 2, IN, dtype=torch.float64), None)
    out.square().sum().backward()
    layer = core.layers[0]
    assert layer.W_y.grad.abs().max() > 0
    for w in (layer.W_q, layer.W_k, layer.w_b):
        assert (w.grad.abs().max() == 0) == detach


def test_reset_every_unroll_ignores_carried_state():
    core = build("srwm", reset_every_unroll=True)
    x = torch.randn(4, 2, IN, dtype=torch.float64)
    warm = tuple(torch.randn_like(s) for s in core.initial_state(2))
    torch.testing.assert_close(run(core, x, None, warm)[0], run(core, x, None)[0])


def test_delta_unroll_matches_naive_loop():
    T, B, H, d = 5, 2, 2, 3
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(T, B, H, d, generator=g, dtype=torch.float64) for _ in range(3))
    beta = torch.rand(T, B, H, 1, generator=g, dtype=torch.float64)
    w0 = torch.randn(B, H, d, d, generator=g, dtype=torch.float64)
    first = random_first(T, B)
    out, w_end = delta_unroll(q, k, v, beta, w0, first)
    for b in range(B):
        for h in range(H):
            W = w0[b, h].clone()
            for t in range(T):
                if first[t, b]:
                    W = torch.zeros_like(W)
                W = W + beta[t, b, h] * torch.outer(v[t, b, h] - W @ k[t, b, h], k[t, b, h])
                torch.testing.assert_close(out[t, b, h], W @ q[t, b, h], rtol=0, atol=1e-12)
            torch.testing.assert_close(w_end[b, h], W, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(CORES))
def test_bad_inputs_name_the_tensor(kind):
    core = build(kind)
    x = torch.randn(4, 2, IN, dtype=torch.float64)
    state = core.initial_state(2)
    with pytest.raises(ValueError, match=r"x has shape \[4, 2, 3\], expected \[T, B, 5\]"):
        core(x[..., :3], state, None)
    with pytest.raises(ValueError, match=r"first has shape"):
        core(x, state, torch.zeros(4, 3, dtype=torch.bool))
    if state:
        with pytest.raises(ValueError, match=r"state\[0\] has shape"):
            core(x, tuple(s[:1] for s in state), None)   # no silent broadcast across the batch


def test_config_errors_name_the_field():
    assert any("core.kind='gru'" in e for e in CoreConfig(kind="gru").validate())
    assert any("core.hidden_size=10" in e for e in CoreConfig(hidden_size=10, num_heads=3).validate())
    with pytest.raises(ValueError, match="core.impl='cuda'"):
        make_core(4, CoreConfig(impl="cuda"))


def test_w0_scale_scales_the_initial_slow_weights_only():
    """core.w0_scale multiplies the initial W_y, W_q, W_k and w_b draws (beta_init is added after)."""
    base, scaled = build("srwm", beta_init=-1.0), build("srwm", beta_init=-1.0, w0_scale=0.5)
    for (name, a), (_, b) in zip(base.named_parameters(), scaled.named_parameters()):
        if name.endswith(("W_y", "W_q", "W_k")):
            torch.testing.assert_close(b, 0.5 * a)
        elif name.endswith("w_b"):
            torch.testing.assert_close(b + 1.0, 0.5 * (a + 1.0))
        else:
            torch.testing.assert_close(b, a)
    assert any(n.endswith("W_q") for n, _ in base.named_parameters())
    assert CoreConfig(w0_scale=0.0).validate() == ["core.w0_scale=0.0: must be a finite number > 0"]
    assert "core.w0_scale=inf" in CoreConfig(w0_scale=float("inf")).validate()[0]
