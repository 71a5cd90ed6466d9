"""The supervised few-shot learner: image encoder -> [example features, previous label] -> core -> logits.

Input per step is the task vector of :func:`envs.fewshot.tasks.task_inputs` ([64 pixels, one-hot
previous label of width N]), the same vector the RL form of the task observes. The core is any
registered core (srwm, lstm, delta, fake_sr, none); gradients flow through the whole sequence,
self-modifications included.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from envs.fewshot.sources import IMAGE_SIZE
from envs.fewshot.tasks import PIXELS
from srwm_rl.nn.cores import CoreConfig, State, make_core

ENCODERS = ("cnn", "mlp")


class GlyphCNN(nn.Module):
    """8x8 grey image -> features: conv3x3(32) relu pool2, conv3x3(64) relu pool2, Linear(256 -> F) relu."""

    def __init__(self, features: int):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(64 * (IMAGE_SIZE // 4) ** 2, features)

    def forward(self, x: Tensor) -> Tensor:
        """x [M, 64] pixels -> [M, F]."""
        return F.relu(self.fc(self.convs(x.view(-1, 1, IMAGE_SIZE, IMAGE_SIZE)).flatten(1)))


def _mlp(features: int) -> nn.Module:
    return nn.Sequential(nn.Linear(PIXELS, 128), nn.ReLU(), nn.Linear(128, features), nn.ReLU())


PAIRINGS = ("none", "shift", "interleave")


class FewshotModel(nn.Module):
    """N-way sequential classifier. ``forward(x [T, B, 64 + N], state, first) -> (logits [T, B, N], state)``.

    ``pairing`` says how the previous example meets its label (which arrives one step later):
      none        the core gets [z_t, y_{t-1}] and must pair z_{t-1} with y_{t-1} through its memory;
      shift       the core gets [z_t, z_{t-1}, y_{t-1}] (a one-step token shift);
      interleave  the core runs two steps per input: a write step [z_{t-1}, y_{t-1}], then a read step
                  [z_t, no label] whose output is the prediction, so an example enters the core through
                  the same inputs when it is stored (with its label) and when it is queried.
    All three see only x_{<=t} and y_{<t} at step t (no leak); shift and interleave carry z_{t-1} in the
    state (its last tensor, [B, F]) so that step-by-step calls equal one call on the whole sequence.
    """

    def __init__(self, num_ways: int, core_cfg: CoreConfig, encoder: str = "cnn", features: int = 64,
                 pairing: str = "none"):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"fewshot.encoder={encoder!r}: must be one of {list(ENCODERS)}")
        if pairing not in PAIRINGS:
            raise ValueError(f"fewshot.pairing={pairing!r}: must be one of {list(PAIRINGS)}")
        self.num_ways, self.features, self.pairing = num_ways, features, pairing
        self.input_size = PIXELS + num_ways
        self.encoder = GlyphCNN(features) if encoder == "cnn" else _mlp(features)
        self.core = make_core(features * (2 if pairing == "shift" else 1) + num_ways, core_cfg)
        self.head = nn.Linear(self.core.output_size, num_ways)

    def initial_state(self, batch_size: int, device=None) -> State:
        state = self.core.initial_state(batch_size, device)
        if self.pairing != "none":
            p = next(self.parameters())
            state = (*state, torch.zeros(batch_size, self.features, device=device or p.device, dtype=p.dtype))
        return state

    def forward(self, x: Tensor, state: Optional[State] = None,
                first: Optional[Tensor] = None) -> tuple[Tensor, State]:
        """x [T, B, 64 + N] task inputs; state None = a fresh task; first bool [T, B] or None."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x has shape {list(x.shape)}, expected [T, B, {self.input_size}] "
                             f"(64 pixels + one-hot previous label of {self.num_ways} ways)")
        T, B, _ = x.shape
        z = self.encoder(x[..., :PIXELS].reshape(T * B, PIXELS)).view(T, B, -1)
        y_prev = x[..., PIXELS:]
        state = self.initial_state(B, x.device) if state is None else state
        if self.pairing == "none":
            h, state = self.core(torch.cat([z, y_prev], -1), state, first)
            return self.head(h), state
        state, z_last = state[:-1], state[-1]
        z_prev = torch.cat([z_last.unsqueeze(0), z[:-1]])
        if first is not None:                                   # no previous example at a task start
            z_prev = z_prev * (~first).unsqueeze(-1).to(z.dtype)
        if self.pairing == "shift":
            h, state = self.core(torch.cat([z, z_prev, y_prev], -1), state, first)
        else:
            write = torch.cat([z_prev, y_prev], -1)
            read = torch.cat([z, torch.zeros_like(y_prev)], -1)
            steps = torch.stack([write, read], 1).flatten(0, 1)               # [2T, B, F + N]
            f2 = None if first is None else torch.stack([first, torch.zeros_like(first)], 1).flatten(0, 1)
            h, state = self.core(steps, state, f2)
            h = h[1::2]
        return self.head(h), (*state, z[-1])
