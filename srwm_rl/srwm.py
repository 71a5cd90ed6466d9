"""The public name of the pure SRWM recurrence, ``srwm_unroll`` (its contract: docs/srwm.md, section 3).

The definition and its helpers live in :mod:`srwm_rl.ops.srwm`; the faster paths in ``srwm_rl/ops``.
"""
from srwm_rl.ops.srwm import srwm_unroll

__all__ = ["srwm_unroll"]
