"""Recurrent cores behind one protocol, and their registry.

Protocol (every core):
    initial_state(batch_size, device=None, dtype=None) -> state   a tuple of tensors, batch first
    forward(x [T, B, input_size], state, first [T, B] bool or None) -> (out [T, B, output_size], state)
    introspect(state) -> dict[str, Tensor [B, ...]]                 cheap statistics for analysis

State is a value, never a module attribute. Each state tensor is [B, ...], so selecting a subset of
environments is `tuple(s[idx] for s in state)`. A reset (``first[t, b]`` true) zeroes sample b's
state before step t; every core applies it itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from srwm_rl.nn.layers import NORMS, SRWM_IMPLS, DeltaLayer, FakeSRLayer, FeedForward, ShortConv, SRWMLayer
from srwm_rl.ops.srwm import check_first

State = tuple[Tensor, ...]


def select_state(state: State, idx) -> State:
    """The state of the samples ``idx`` (an index or mask over the batch dimension)."""
    return tuple(s[idx] for s in state)


@dataclass(frozen=True)
class CoreConfig:
    """Options of the recurrent core (shared by all cores; each uses the ones that apply)."""

    kind: str = "srwm"
    """Core: srwm, lstm, delta (Delta Net), fake_sr (SRWM without self-modification), none (feed-forward)."""
    hidden_size: int = 128
    """Width D of the core (= heads * head size for srwm, delta and fake_sr)."""
    num_layers: int = 2
    """Memory layers (each followed by a feed-forward block), or LSTM layers."""
    num_heads: int = 8
    """Heads per SRWM / Delta Net / Fake SR layer; head size = hidden_size / num_heads."""
    ff_mult: int = 4
    """Feed-forward block width as a multiple of hidden_size."""
    input_softmax: bool = False
    """SRWM: apply softmax (phi) to each head's input, as in the paper's RL code (preset srwm-paper); off by default: with it the self-modification barely reacts to the input and RL learned little (BENCHMARKS.md, "Defaults by measurement")."""
    norm: str = "pre"
    """SRWM / Fake SR layer norm placement: pre (LayerNorm on the layer input; default, chosen by the ablation in BENCHMARKS.md), none (the paper's RL code: h + proj(y)), post."""
    beta_init: float = 0.0
    """SRWM: mean of the initial w_b, i.e. the initial bias of the learning-rate logits (negative = slow)."""
    w0_scale: float = 1.0
    """SRWM: standard deviation of the initial slow weights W0 (W_y, W_q, W_k, w_b) in units of 1/sqrt(head size)."""
    impl: str = "auto"
    """SRWM recurrence path: auto (fastest measured on the device), pure, lean (memory-lean backward), fused (CPU kernel), triton (GPU kernel, needs the gpu extra)."""
    detach_every_step: bool = False
    """SRWM ablation: detach the state after every step, as the authors' RL code (no gradient through self-modification)."""
    reset_every_unroll: bool = False
    """Ablation: start every forward call (unroll) from a zero state instead of the carried one."""
    short_conv: int = 2
    """srwm, delta, fake_sr: width K of a causal depthwise convolution over time on the memory layers' input (each channel mixes the current and K - 1 previous steps, cleared at episode starts); 0 = none (the paper's core). The lstm and none cores have none (the feed-forward baseline stays memoryless). 2 was chosen by measurement (BENCHMARKS.md, "Wave 6: a short convolution")."""

    def validate(self) -> list[str]:
        """Problems as 'field=value: what is allowed' strings (empty when valid)."""
        errs = []
        if self.kind not in CORES:
            errs.append(f"core.kind={self.kind!r}: must be one of {sorted(CORES)}")
        if not 0 < self.w0_scale < float("inf"):
            errs.append(f"core.w0_scale={self.w0_scale}: must be a finite number > 0")
        for name in ("hidden_size", "num_layers", "num_heads", "ff_mult"):
            if getattr(self, name) < 1:
                errs.append(f"core.{name}={getattr(self, name)}: must be >= 1")
        if self.num_heads >= 1 and self.hidden_size % self.num_heads and self.kind in ("srwm", "delta", "fake_sr"):
            errs.append(f"core.hidden_size={self.hidden_size}: must be divisible by core.num_heads={self.num_heads}")
        if self.norm not in NORMS:
            errs.append(f"core.norm={self.norm!r}: must be one of {list(NORMS)}")
        if self.short_conv < 0 or self.short_conv == 1:
            errs.append(f"core.short_conv={self.short_conv}: must be 0 (none) or a width >= 2")
        if self.impl not in ("auto", *SRWM_IMPLS):
            errs.append(f"core.impl={self.impl!r}: must be one of {['auto', *SRWM_IMPLS]}")
        return errs


class Core(nn.Module):
    """Base class: subclasses define ``state_shapes`` and ``_forward``; checks and resets live here."""

    input_size: int
    output_size: int

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes of the state tensors (the state is [B, *shape] for each)."""
        return []

    def initial_state(self, batch_size: int, device=None, dtype=None) -> State:
        p = next(self.parameters())
        device, dtype = device or p.device, dtype or p.dtype
        return tuple(torch.zeros((batch_size, *s), device=device, dtype=dtype) for s in self.state_shapes())

    def forward(self, x: Tensor, state: State, first: Optional[Tensor] = None) -> tuple[Tensor, State]:
        check_core_inputs(self, x, state, first)
        if self.reset_every_unroll:
            state = tuple(torch.zeros_like(s) for s in state)
        return self._forward(x, tuple(state), first)

    def _forward(self, x: Tensor, state: State, first: Optional[Tensor]) -> tuple[Tensor, State]:
        raise NotImplementedError

    def introspect(self, state: State) -> dict[str, Tensor]:
        """Norm of each state tensor per sample (and per head where the state has heads)."""
        return {f"state_norm/{i}": s.flatten(2).norm(dim=-1) if s.dim() > 3 else s.flatten(1).norm(dim=-1)
                for i, s in enumerate(state)}


def check_core_inputs(core: Core, x: Tensor, state: State, first: Optional[Tensor]) -> None:
    """Raise ValueError naming the tensor when x, state or first do not fit the core."""
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != core.input_size:
        shape = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x has shape {shape}, expected [T, B, {core.input_size}]")
    T, B, _ = x.shape
    shapes = core.state_shapes()
    if not isinstance(state, (tuple, list)) or len(state) != len(shapes):
        raise ValueError(f"state must be a tuple of {len(shapes)} tensors (from initial_state), "
                         f"got {type(state).__name__} of length {len(state) if isinstance(state, (tuple, list)) else '-'}")
    for i, (s, shp) in enumerate(zip(state, shapes)):
        if tuple(s.shape) != (B, *shp):
            raise ValueError(f"state[{i}] has shape {list(s.shape)}, expected {[B, *shp]}")
        if s.dtype != x.dtype:
            raise ValueError(f"state[{i}] has dtype {s.dtype}, expected {x.dtype} (the dtype of x)")
    check_first(first, T, B)


CORES: dict[str, Callable[[int, CoreConfig], Core]] = {}


def register_core(name: str):
    """Class decorator adding a core to the registry under ``name``."""
    def add(cls):
        CORES[name] = cls
        return cls
    return add


def make_core(input_size: int, cfg: CoreConfig) -> Core:
    """Build the core ``cfg.kind`` for inputs of width ``input_size``."""
    errs = cfg.validate()
    if errs:
        raise ValueError("; ".join(errs))
    core = CORES[cfg.kind](input_size, cfg)
    core.reset_every_unroll = cfg.reset_every_unroll
    return core


class _Stacked(Core):
    """Input projection (Linear + ReLU), an optional short convolution over time, then
    N x [memory layer + feed-forward block]. State: the memory layers' states, then the
    convolution's history [B, K - 1, D] when ``core.short_conv`` is set."""

    takes_short_conv = True
    """Whether ``core.short_conv`` applies (False for the memoryless feed-forward core)."""

    def __init__(self, input_size: int, cfg: CoreConfig, layers: list[nn.Module]):
        super().__init__()
        self.input_size, self.output_size = input_size, cfg.hidden_size
        self.in_proj = nn.Linear(input_size, cfg.hidden_size)
        width = cfg.short_conv if self.takes_short_conv else 0
        self.conv = ShortConv(cfg.hidden_size, width) if width else None
        self.layers = nn.ModuleList(layers)
        self.ffs = nn.ModuleList(FeedForward(cfg.hidden_size, cfg.ff_mult) for _ in layers)

    def state_shapes(self) -> list[tuple[int, ...]]:
        extra = [self.conv] if self.conv is not None else []
        return [m.state_shape() for m in [*self.layers, *extra] if hasattr(m, "state_shape")]

    def _forward(self, x, state, first):
        h, new = F.relu(self.in_proj(x)), []
        if self.conv is not None:
            h, hist = self.conv(h, state[-1], first)
            state = state[:-1]
        states = iter(state)
        for layer, ff in zip(self.layers, self.ffs):
            if hasattr(layer, "state_shape"):
                h, s = layer(h, next(states), first)
                new.append(s)
            else:
                h = layer(h)
            h = ff(h)
        return h, tuple(new) + ((hist,) if self.conv is not None else ())


@register_core("srwm")
class SRWMCore(_Stacked):
    """N x [SRWM layer + feed-forward]. State: per layer delta [B, H, d, 3d + 4]."""

    def __init__(self, input_size: int, cfg: CoreConfig):
        super().__init__(input_size, cfg, [
            SRWMLayer(cfg.hidden_size, cfg.num_heads, input_softmax=cfg.input_softmax, norm=cfg.norm,
                      beta_init=cfg.beta_init, w0_scale=cfg.w0_scale, impl=cfg.impl,
                      detach_every_step=cfg.detach_every_step)
            for _ in range(cfg.num_layers)])

    def introspect(self, state):
        """Norm of the self-modification Delta per layer and head: 'delta_norm/layer{i}' [B, H]."""
        return {f"delta_norm/layer{i}": s.flatten(2).norm(dim=-1) for i, s in enumerate(state[:len(self.layers)])}


@register_core("delta")
class DeltaCore(_Stacked):
    """N x [Delta Net layer + feed-forward]. State: per layer W [B, H, d, d]."""

    def __init__(self, input_size: int, cfg: CoreConfig):
        super().__init__(input_size, cfg, [DeltaLayer(cfg.hidden_size, cfg.num_heads)
                                           for _ in range(cfg.num_layers)])

    def introspect(self, state):
        return {f"fast_weight_norm/layer{i}": s.flatten(2).norm(dim=-1) for i, s in enumerate(state[:len(self.layers)])}


@register_core("fake_sr")
class FakeSRCore(_Stacked):
    """The SRWM stack with W_y fixed (no self-modification, no state)."""

    def __init__(self, input_size: int, cfg: CoreConfig):
        super().__init__(input_size, cfg, [FakeSRLayer(cfg.hidden_size, cfg.num_heads,
                                                       input_softmax=cfg.input_softmax, norm=cfg.norm)
                                           for _ in range(cfg.num_layers)])


@register_core("none")
class FeedForwardCore(_Stacked):
    """No memory: input projection and N feed-forward blocks."""

    takes_short_conv = False     # a convolution over time would give the memoryless baseline a memory

    def __init__(self, input_size: int, cfg: CoreConfig):
        super().__init__(input_size, cfg, [nn.Identity() for _ in range(cfg.num_layers)])


@register_core("lstm")
class LSTMCore(Core):
    """nn.LSTM. State: (h [B, L, D], c [B, L, D]); whole-sequence calls between resets."""

    def __init__(self, input_size: int, cfg: CoreConfig):
        super().__init__()
        self.input_size, self.output_size, self.num_layers = input_size, cfg.hidden_size, cfg.num_layers
        self.lstm = nn.LSTM(input_size, cfg.hidden_size, cfg.num_layers)

    def state_shapes(self):
        return [(self.num_layers, self.output_size)] * 2

    def _forward(self, x, state, first):
        h, c = (s.transpose(0, 1).contiguous() for s in state)     # [L, B, D]
        T = x.shape[0]
        # Split time at every step where some sample resets; run each segment in one call.
        cuts = [0] if first is None else sorted({0, *first.any(dim=1).nonzero().flatten().tolist()})
        outs = []
        for a, b in zip(cuts, cuts[1:] + [T]):
            if first is not None:
                keep = (~first[a]).to(x.dtype).view(1, -1, 1)
                h, c = h * keep, c * keep
            out, (h, c) = self.lstm(x[a:b], (h, c))
            outs.append(out)
        return torch.cat(outs), (h.transpose(0, 1), c.transpose(0, 1))

    def introspect(self, state):
        return {"cell_norm": state[1].norm(dim=-1)}


# The cores that use ``core.short_conv``: the fast-weight ones (the LSTM has its own gates and no
# convolution; the feed-forward core stays memoryless).
SHORT_CONV_CORES = tuple(k for k, c in CORES.items() if getattr(c, "takes_short_conv", False))
