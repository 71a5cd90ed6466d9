"""Action distributions over the last dimension of the policy head's output, for any batch shape.

``Categorical(logits [..., A])`` for Discrete actions (int64 [...]); ``DiagGaussian(mean [..., A],
log_std [A])`` for Box actions (float [..., A]). Both have ``sample``, ``mode``, ``log_prob`` and
``entropy`` over the batch shape ``[...]``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


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
        return (-0.5 * z.square() - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self) -> Tensor:
        return (self.log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)
