"""Optimisers with their fastest update kernel for the parameters' device.

PyTorch's default Adam and RMSprop on CPU parameters loop over the parameter tensors in Python, a
few small operators per tensor; for the small networks of RL that loop cost ~20% of a PPO update
(benchmarks/ppo_profile.py; BENCHMARKS.md "Wave 4: recurrent PPO, where the update's time goes").
Adam has a fused kernel on CPU and CUDA (one call for all tensors), RMSprop a multi-tensor
(``foreach``) one.
The maths is the same update rule; results agree with the loop to float32 rounding (tests/test_optim.py).
"""
from __future__ import annotations

from typing import Iterable

import torch

FUSED_ADAM_DEVICES = ("cpu", "cuda")
FOREACH_DEVICES = ("cpu", "cuda")


def _all_on(params: list[torch.Tensor], devices: tuple[str, ...]) -> bool:
    return bool(params) and all(p.device.type in devices and p.is_floating_point() for p in params)


def adam(params: Iterable[torch.Tensor], **kwargs) -> torch.optim.Adam:
    """``torch.optim.Adam(params, **kwargs)``, fused where every parameter is on a device that has the kernel."""
    params = list(params)
    return torch.optim.Adam(params, fused=True if _all_on(params, FUSED_ADAM_DEVICES) else None, **kwargs)


def rmsprop(params: Iterable[torch.Tensor], **kwargs) -> torch.optim.RMSprop:
    """``torch.optim.RMSprop(params, **kwargs)`` with the multi-tensor update where the device has it."""
    params = list(params)
    return torch.optim.RMSprop(params, foreach=True if _all_on(params, FOREACH_DEVICES) else None, **kwargs)
