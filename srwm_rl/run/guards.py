"""Finiteness guards: what every algorithm checks before it steps its optimiser and before it saves.

    guard = NonFiniteGuard(max_in_row=3)
    bad = nonfinite_data(reward=buf.rewards, observation=buf.obs) or nonfinite_loss(loss) \\
          or nonfinite_grads(model)
    if bad:                       # skip the update (weights unchanged), count it; persistent -> stop
        run.skip_nonfinite(guard, bad, steps)
    ...
    bad = nonfinite_params(model)  # after the step: weights cannot be un-stepped, the run stops

Each check returns None when everything is finite, else one line naming the first non-finite quantity
and where it came from ("reward from the environment", "the loss", "gradient of core.W"). A run that
cannot go on raises :class:`TrainingFailure` (the command prints its message and exits with status 1).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch


class TrainingFailure(RuntimeError):
    """A run that cannot go on (non-finite values, a failing environment); exit status 1, last good
    checkpoint kept. The message is one paragraph for the user, not a traceback."""


class NonFiniteError(TrainingFailure):
    """Non-finite values persisted (or reached the weights): the run stops."""


def _describe(name: str, value: Any) -> Optional[str]:
    """'name (k of n values non-finite: nan, inf)' or None when every value is finite."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or bool(torch.isfinite(value).all()):
            return None
        v = value.detach().cpu().double().numpy()
    else:
        v = np.asarray(value)
        if v.dtype.kind not in "fc" or np.isfinite(v).all():
            return None
    bad = ~np.isfinite(v)
    kinds = sorted({"nan" if np.isnan(x) else ("+inf" if x > 0 else "-inf") for x in v[bad].flat[:1000]})
    where = ""
    if v.ndim >= 1:
        idx = np.argwhere(bad)[0]
        where = f", first at index {tuple(int(i) for i in idx)}"
    return f"{name} ({int(bad.sum())} of {v.size} values non-finite: {', '.join(kinds)}{where})"


def first_nonfinite(named: Iterable[tuple[str, Any]]) -> Optional[str]:
    """The description of the first non-finite entry of (name, tensor or array) pairs, or None."""
    for name, value in named:
        if value is None:
            continue
        if isinstance(value, Mapping):                       # dict observations
            found = first_nonfinite((f"{name}[{k!r}]", v) for k, v in value.items())
        else:
            found = _describe(name, value)
        if found:
            return found
    return None


def nonfinite_data(**named: Any) -> Optional[str]:
    """Collected experience, e.g. ``nonfinite_data(reward=r, observation=obs)``: names the field as coming
    from the environment."""
    found = first_nonfinite(named.items())
    return None if found is None else f"{found} from the environment"


def nonfinite_loss(loss: torch.Tensor, terms: Optional[Mapping[str, torch.Tensor]] = None) -> Optional[str]:
    """The loss, naming the first non-finite term of ``terms`` when there is one."""
    if bool(torch.isfinite(loss.detach()).all()):
        return None
    term = first_nonfinite((terms or {}).items())
    return f"the loss ({float(loss.detach())}; first non-finite term: {term})" if term else \
        f"the loss ({float(loss.detach())})"


def nonfinite_grads(module: torch.nn.Module) -> Optional[str]:
    found = first_nonfinite((n, p.grad) for n, p in module.named_parameters() if p.grad is not None)
    return None if found is None else f"the gradient of parameter {found}"


def nonfinite_params(module: torch.nn.Module) -> Optional[str]:
    found = first_nonfinite(module.named_parameters())
    return None if found is None else f"parameter {found}"


def nonfinite_state_dict(state: Mapping[str, Any], what: str = "model") -> Optional[str]:
    """The first non-finite floating tensor of a (possibly nested) state dict, e.g. a checkpoint's model."""
    def walk(prefix: str, obj: Any) -> Iterable[tuple[str, Any]]:
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                yield from walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from walk(f"{prefix}[{i}]", v)
        elif isinstance(obj, torch.Tensor):
            yield prefix, obj
    found = first_nonfinite(walk("", state))
    return None if found is None else f"{what} {found}"


class NonFiniteGuard:
    """Counts skipped non-finite updates; ``max_in_row`` of them in a row mean the run cannot recover."""

    def __init__(self, max_in_row: int = 3):
        self.max_in_row = max_in_row
        self.in_row = 0
        self.skipped = 0
        self.first: Optional[str] = None        # the first cause of the current streak

    def ok(self) -> None:
        """An update went through: the streak is broken."""
        self.in_row, self.first = 0, None

    def skip(self, cause: str) -> bool:
        """Count one skipped update caused by ``cause``; True when the run should stop."""
        self.in_row += 1
        self.skipped += 1
        if self.first is None:
            self.first = cause
        return self.in_row >= self.max_in_row
