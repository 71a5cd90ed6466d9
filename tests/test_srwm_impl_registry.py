"""The SRWM implementation registry (srwm_rl/nn/layers.py): 'auto' per device, named paths, and the
Triton path's lazy import (the project imports and falls back cleanly without triton installed)."""
import subprocess
import sys

import pytest
import torch

from srwm_rl.nn import layers
from srwm_rl.nn.cores import CoreConfig
from srwm_rl.ops.srwm import srwm_unroll_cat
from srwm_rl.ops.srwm_lean import srwm_unroll_lean


def test_every_registered_impl_is_a_valid_core_option():
    for name in ("auto", *layers.SRWM_IMPLS):
        assert CoreConfig(impl=name).validate() == []
    assert "triton" in layers.SRWM_IMPLS and "fused" in layers.SRWM_IMPLS
    assert any("core.impl='cuda'" in e for e in CoreConfig(impl="cuda").validate())


def test_auto_order_names_registered_impls_and_ends_with_one_that_always_runs():
    for order in layers.AUTO_ORDER.values():
        assert set(order) <= set(layers.SRWM_IMPLS)
        assert layers.SRWM_IMPLS[order[-1]](torch.device("cpu")) is not None
    assert layers.AUTO_ORDER["cuda"][0] == "triton"


def test_pure_and_lean_resolve_on_any_device():
    for dev in ("cpu", "cuda", "meta"):
        assert layers.resolve_impl("pure", torch.device(dev)) is srwm_unroll_cat
        assert layers.resolve_impl("lean", torch.device(dev)) is srwm_unroll_lean


def test_auto_on_cuda_without_triton_is_lean(monkeypatch):
    monkeypatch.setitem(layers.SRWM_IMPLS, "triton", lambda device: None)
    assert layers.resolve_impl("auto", torch.device("cuda")) is srwm_unroll_lean


def test_unavailable_named_impl_warns_and_runs_lean(monkeypatch):
    monkeypatch.setitem(layers.SRWM_IMPLS, "triton", lambda device: None)
    monkeypatch.setattr(layers, "_warned", set())
    with pytest.warns(RuntimeWarning, match="'triton' is unavailable on cpu"):
        assert layers.resolve_impl("triton", torch.device("cpu")) is srwm_unroll_lean


_NO_TRITON = """
import sys, warnings, torch
sys.modules['triton'] = None                      # as if triton were not installed
from srwm_rl.ops import srwm_triton
from srwm_rl.nn.layers import resolve_impl
from srwm_rl.ops.srwm_lean import srwm_unroll_lean
assert not srwm_triton.triton_available('cuda')
assert 'pip install' in srwm_triton.triton_unavailable_reason('cuda')
assert resolve_impl('auto', torch.device('cuda')) is srwm_unroll_lean
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter('always')
    assert resolve_impl('triton', torch.device('cuda')) is srwm_unroll_lean
assert any('triton cannot be imported' in str(x.message) for x in w), [str(x.message) for x in w]
x = torch.zeros(1, 1, 1, 2); w0 = torch.zeros(1, 2, 10); d = torch.zeros(1, 1, 2, 10)
try:
    srwm_triton.srwm_unroll_triton(x, w0, d)
except RuntimeError as e:
    assert 'cannot run on cpu' in str(e)
else:
    raise AssertionError('expected RuntimeError')
print('ok')
"""


def test_triton_module_imports_and_falls_back_without_triton():
    res = subprocess.run([sys.executable, "-c", _NO_TRITON], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
