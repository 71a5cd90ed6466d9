"""Action distributions over the last dimension of the policy head's output, for any batch shape.

Every distribution has ``sample``, ``mode``, ``log_prob`` and ``entropy`` over the batch shape
``[...]``. The action a distribution samples is the action the environment executes, and
``log_prob`` is the log-probability (or log-density) of that executed action, so PPO's ratios and
V-trace's importance weights are computed for what was actually done.

* ``Categorical(logits [..., A])``: Discrete actions, int64 [...].
* ``MultiCategorical(logits [..., sum(nvec)], nvec)``: MultiDiscrete actions, int64 [..., K]
  (independent categoricals; log-probabilities and entropies add up).
* ``Bernoullis(logits [..., K])``: MultiBinary actions, int64 [..., K] of 0/1.
* ``DiagGaussian(mean [..., A], log_std [A])``: unbounded Box actions, float [..., A].
* ``ClippedGaussian(mean, log_std, low, high)``: Box actions; a Gaussian sample clipped to the box.
  Its law is a *censored* normal: inside the box the normal density, at a bound the normal's
  probability mass beyond it (``log Phi``), so an executed action at the bound has the right
  probability. Entropy: the unclipped Gaussian's (an upper bound, as an exploration bonus).
* ``TanhGaussian(mean, log_std, low, high)``: Box actions ``low + (tanh(u) + 1) / 2 * (high - low)``
  with u Gaussian; log-density with the change-of-variables term. Entropy: the Gaussian's of u
  (the squashed one has no closed form; SAC-style estimators use the same).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Categorical:
    """Categorical over the last dim of ``logits`` [..., A]; actions are int64 [...]."""

    def __init__(self, logits: Tensor):
        self.logits = logits - logits.logsumexp(-1, keepdim=True)

    def sample(self) -> Tensor:
        return torch.multinomial(self.logits.exp().reshape(-1, self.logits.shape[-1]), 1).view(self.logits.shape[:-1])

    def mode(self) -> Tensor:
        return self.logits.argmax(-1)

    def log_prob(self, a: Tensor) -> Tensor:
        return self.logits.gather(-1, a.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> Tensor:
        return -(self.logits.exp() * self.logits).sum(-1)

    @property
    def probs(self) -> Tensor:
        return self.logits.exp()


class MultiCategorical:
    """Independent categoricals with ``nvec`` choices each; logits [..., sum(nvec)], actions int64 [..., K]."""

    def __init__(self, logits: Tensor, nvec: tuple[int, ...]):
        self.parts = [Categorical(x) for x in logits.split(list(nvec), -1)]

    def sample(self) -> Tensor:
        return torch.stack([p.sample() for p in self.parts], -1)

    def mode(self) -> Tensor:
        return torch.stack([p.mode() for p in self.parts], -1)

    def log_prob(self, a: Tensor) -> Tensor:
        return sum(p.log_prob(a[..., i]) for i, p in enumerate(self.parts))

    def entropy(self) -> Tensor:
        return sum(p.entropy() for p in self.parts)


class Bernoullis:
    """Independent Bernoullis over the last dim of ``logits`` [..., K]; actions int64 [..., K] of 0/1."""

    def __init__(self, logits: Tensor):
        self.logits = logits

    def sample(self) -> Tensor:
        return torch.bernoulli(torch.sigmoid(self.logits)).long()

    def mode(self) -> Tensor:
        return (self.logits > 0).long()

    def log_prob(self, a: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(self.logits, a.to(self.logits.dtype), reduction="none").sum(-1)

    def entropy(self) -> Tensor:
        p = torch.sigmoid(self.logits)
        return F.binary_cross_entropy_with_logits(self.logits, p, reduction="none").sum(-1)


class DiagGaussian:
    """Independent normals over the last dim; actions are float [..., A]."""

    def __init__(self, mean: Tensor, log_std: Tensor):
        self.mean, self.log_std = mean, log_std.expand_as(mean)

    def sample(self) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def mode(self) -> Tensor:
        return self.mean

    def log_prob(self, a: Tensor) -> Tensor:
        z = (a - self.mean) / self.log_std.exp()
        return (-0.5 * z.square() - self.log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> Tensor:
        return (self.log_std + 0.5 + _LOG_SQRT_2PI).sum(-1)


def _log_ndtr(x: Tensor) -> Tensor:
    """log Phi(x), the standard normal's log-CDF, stable in both tails."""
    return torch.special.log_ndtr(x)


class ClippedGaussian(DiagGaussian):
    """A Gaussian sample clipped to ``[low, high]`` (float [A] each), with the censored normal's
    log-probability of the clipped action (module docstring)."""

    def __init__(self, mean: Tensor, log_std: Tensor, low: Tensor, high: Tensor):
        super().__init__(mean, log_std)
        self.low, self.high = low, high

    def sample(self) -> Tensor:
        return torch.clamp(super().sample(), self.low, self.high)

    def mode(self) -> Tensor:
        return torch.clamp(self.mean, self.low, self.high)

    def log_prob(self, a: Tensor) -> Tensor:
        std = self.log_std.exp()
        z = (a - self.mean) / std
        inside = -0.5 * z.square() - self.log_std - _LOG_SQRT_2PI
        below = _log_ndtr((self.low - self.mean) / std)          # P(u <= low)
        above = _log_ndtr((self.mean - self.high) / std)         # P(u >= high)
        return torch.where(a <= self.low, below, torch.where(a >= self.high, above, inside)).sum(-1)


class TanhGaussian(DiagGaussian):
    """``low + (tanh(u) + 1) / 2 * (high - low)`` with u ~ N(mean, std) (module docstring)."""

    EPS = 1e-6

    def __init__(self, mean: Tensor, log_std: Tensor, low: Tensor, high: Tensor):
        super().__init__(mean, log_std)
        self.low, self.high, self.half = low, high, (high - low) / 2

    def _squash(self, u: Tensor) -> Tensor:
        return torch.clamp(self.low + (torch.tanh(u) + 1) * self.half, self.low, self.high)  # rounding

    def sample(self) -> Tensor:
        return self._squash(super().sample())

    def mode(self) -> Tensor:
        return self._squash(self.mean)

    def log_prob(self, a: Tensor) -> Tensor:
        t = ((a - self.low) / self.half - 1).clamp(-1 + self.EPS, 1 - self.EPS)
        u = torch.atanh(t)
        # da/du = half * (1 - tanh(u)^2)
        return super().log_prob(u) - (torch.log(self.half) + torch.log1p(-t.square())).sum(-1)
