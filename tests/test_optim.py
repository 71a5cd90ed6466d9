"""The fast optimisers (srwm_rl.run.optim) compute the same updates as PyTorch's per-tensor loop."""
import pytest
import torch

from srwm_rl.run.optim import adam, rmsprop


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 16), torch.nn.Tanh(), torch.nn.LSTM(16, 8))


def _train(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: int = 25) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    for i in range(steps):
        x = torch.randn(5, 2, 7, generator=gen)
        out, _ = net(x)
        loss = (out ** 2).mean() + 0.1 * out.sum()
        opt.zero_grad()
        loss.backward()
        opt.param_groups[0]["lr"] *= 0.97                     # annealed like the algorithms do
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("make, loop, kwargs", [
    (adam, lambda ps, **kw: torch.optim.Adam(ps, foreach=False, **kw), {"lr": 3e-3, "eps": 1e-5}),
    (rmsprop, lambda ps, **kw: torch.optim.RMSprop(ps, foreach=False, **kw),
     {"lr": 1e-3, "alpha": 0.99, "eps": 0.01, "momentum": 0.0}),
])
def test_fast_optimiser_matches_the_per_tensor_loop(make, loop, kwargs):
    fast_net, ref_net = _net(0), _net(0)
    fast = _train(fast_net, make(fast_net.parameters(), **kwargs))
    ref = _train(ref_net, loop(ref_net.parameters(), **kwargs))
    moved = max(float((a - b).abs().max()) for a, b in zip(ref, [p.detach() for p in _net(0).parameters()]))
    assert moved > 1e-3                                        # the parameters did move
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_fast_kernel_is_chosen_on_cpu_and_state_round_trips():
    net = _net(1)
    opt = adam(net.parameters(), lr=1e-3)
    assert opt.param_groups[0]["fused"] is True
    assert rmsprop(net.parameters(), lr=1e-3).param_groups[0]["foreach"] is True
    _train(net, opt, steps=3)
    again = adam(net.parameters(), lr=1e-3)
    again.load_state_dict(opt.state_dict())                   # a checkpoint of a fused run resumes
    assert again.param_groups[0]["fused"] is True and again.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_no_fused_kernel_for_non_float_parameters():
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    assert adam([p], lr=1e-3).param_groups[0]["fused"] is None
