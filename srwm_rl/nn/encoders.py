"""Observation encoders: IMPALA CNN, Nature CNN, MLP, and a tree encoder for Dict / Tuple spaces.
All map a batch [N, ...] (for Dict / Tuple: the same structure of such batches) to features [N, F].

Dict and Tuple observations get an encoder per leaf: each image leaf its own CNN, the other leaves
(Box flattened, Discrete and MultiDiscrete one-hot, MultiBinary as 0/1) concatenated into one MLP;
the features are concatenated.

Images arrive as uint8 channels-last [N, H, W, C], the layout environments produce. They are
permuted to NCHW *without a copy*, which leaves the memory in the channels-last format; the CNNs
are converted to channels-last too, so convolutions run on NHWC memory (1.85x faster on CPU than
channels-first input, measured on 2 CPU cores).
"""
from __future__ import annotations

from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def is_image_space(space: gym.Space) -> bool:
    """A uint8 Box of rank 3 with 1, 3 or 4 channels last."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8 \
        and space.shape[-1] in (1, 3, 4)


def flat_size(space: gym.Space) -> int:
    """Width of the float vector a non-image space becomes (Discrete spaces become one-hot)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, (gym.spaces.Box, gym.spaces.MultiBinary)):
        return int(np.prod(space.shape))
    raise ValueError(f"observation space {space} is not supported (Box, Discrete, MultiDiscrete, MultiBinary)")


def to_float_vector(x: Tensor, space: gym.Space) -> Tensor:
    """A batch of observations [N, ...] of ``space`` -> float [N, flat_size(space)]."""
    if isinstance(space, gym.spaces.Discrete):
        return F.one_hot(x.long() - int(space.start), int(space.n)).float()
    if isinstance(space, gym.spaces.MultiDiscrete):
        x = x.reshape(x.shape[0], -1).long() - torch.as_tensor(np.asarray(space.start).reshape(-1), device=x.device)
        return torch.cat([F.one_hot(x[:, i], int(n)) for i, n in enumerate(space.nvec.reshape(-1))], -1).float()
    return x.reshape(x.shape[0], -1).float()


class MLPEncoder(nn.Module):
    """Vector observations: Linear + tanh layers. [N, ...] -> [N, hidden[-1]]."""

    def __init__(self, space: gym.Space, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.space = space
        sizes = [flat_size(space), *hidden]
        self.net = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.Tanh())])
        self.output_size = sizes[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(to_float_vector(x, self.space))


def _image_to_nchw(x: Tensor) -> Tensor:
    """uint8 [N, H, W, C] -> float [N, C, H, W] in [0, 1], channels-last memory (no layout copy)."""
    return x.permute(0, 3, 1, 2).float().div_(255.0)


class _ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv0 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class ImpalaCNN(nn.Module):
    """IMPALA CNN (Espeholt et al. 2018): per stage conv3x3, maxpool 3/2, two residual blocks.

    uint8 [N, H, W, C] -> [N, out_features] (ReLU), channels [16, 32, 32] and 256 features by default.
    """

    def __init__(self, space: gym.Space, channels: Sequence[int] = (16, 32, 32), out_features: int = 256):
        super().__init__()
        h, w, c = space.shape
        stages = []
        for ch in channels:
            stages += [nn.Conv2d(c, ch, 3, padding=1), nn.MaxPool2d(3, 2, padding=1),
                       _ResidualBlock(ch), _ResidualBlock(ch)]
            c, h, w = ch, (h + 1) // 2, (w + 1) // 2
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c * h * w, out_features)
        self.output_size = out_features
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        z = F.relu(self.stages(_image_to_nchw(x)))
        return F.relu(self.fc(z.flatten(1)))


class NatureCNN(nn.Module):
    """DQN Nature CNN: conv 8/4 32, 4/2 64, 3/1 64, Linear -> 512. uint8 [N, H, W, C] -> [N, 512]."""

    def __init__(self, space: gym.Space, out_features: int = 512):
        super().__init__()
        h, w, c = space.shape
        self.convs = nn.Sequential(nn.Conv2d(c, 32, 8, 4), nn.ReLU(), nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
                                   nn.Conv2d(64, 64, 3, 1), nn.ReLU())
        with torch.no_grad():
            n = self.convs(torch.zeros(1, c, h, w)).numel()
        self.fc = nn.Linear(n, out_features)
        self.output_size = out_features
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc(self.convs(_image_to_nchw(x)).flatten(1)))


def _check_image(name: str, space: gym.Space) -> None:
    if not is_image_space(space):
        raise ValueError(f"policy.encoder={name!r} needs image observations (uint8 [H, W, C]), "
                         f"but the environment's observation space is {space}; use policy.encoder='mlp'")


def _impala(space, cfg):
    _check_image("impala", space)
    return ImpalaCNN(space, cfg.cnn_channels, cfg.cnn_features)


def _nature(space, cfg):
    _check_image("nature", space)
    return NatureCNN(space)


def _mlp(space, cfg):
    if is_image_space(space):
        raise ValueError(f"policy.encoder='mlp' on image observations {space.shape}; use 'impala' or 'nature'")
    return MLPEncoder(space, cfg.mlp_hidden)


ENCODERS: dict[str, Callable[[gym.Space, object], nn.Module]] = {"impala": _impala, "nature": _nature, "mlp": _mlp}
TREE_SPACES = (gym.spaces.Dict, gym.spaces.Tuple)


def space_leaves(space: gym.Space, path: tuple = ()) -> list[tuple[tuple, gym.Space]]:
    """(path, leaf space) for every leaf of a (nested) Dict / Tuple space, in the space's order."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for k, s in space.spaces.items() for leaf in space_leaves(s, (*path, k))]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, s in enumerate(space.spaces) for leaf in space_leaves(s, (*path, i))]
    return [(path, space)]


def _get(x, path: tuple):
    for p in path:
        x = x[p]
    return x


class TreeEncoder(nn.Module):
    """Dict / Tuple observations: one encoder per image leaf, one MLP over the other leaves (module
    docstring). A structure of batches [N, ...] -> [N, F]."""

    def __init__(self, space: gym.Space, name: str, cfg):
        super().__init__()
        leaves = space_leaves(space)
        self.image_paths = [p for p, s in leaves if is_image_space(s)]
        self.vector_leaves = [(p, s) for p, s in leaves if not is_image_space(s)]
        self.images = nn.ModuleList([make_encoder("auto" if name == "mlp" else name, s, cfg)
                                     for p, s in leaves if is_image_space(s)])
        self.mlp = None
        size = sum(e.output_size for e in self.images)
        if self.vector_leaves:
            sizes = [sum(flat_size(s) for _, s in self.vector_leaves), *cfg.mlp_hidden]
            self.mlp = nn.Sequential(*[m for a, b in zip(sizes, sizes[1:]) for m in (nn.Linear(a, b), nn.Tanh())])
            size += sizes[-1]
        self.output_size = size

    def forward(self, x) -> Tensor:
        feats = [enc(_get(x, p)) for p, enc in zip(self.image_paths, self.images)]
        if self.mlp is not None:
            feats.append(self.mlp(torch.cat([to_float_vector(_get(x, p), s) for p, s in self.vector_leaves], -1)))
        return torch.cat(feats, -1) if len(feats) > 1 else feats[0]


def make_encoder(name: str, space: gym.Space, cfg) -> nn.Module:
    """Build encoder ``name`` ('auto': impala for images, mlp otherwise) for one observation space
    (Dict / Tuple: a :class:`TreeEncoder`, ``name`` applying to its image leaves)."""
    if isinstance(space, TREE_SPACES):
        return TreeEncoder(space, name, cfg)
    if name == "auto":
        name = "impala" if is_image_space(space) else "mlp"
    if name not in ENCODERS:
        raise ValueError(f"policy.encoder={name!r}: must be one of {['auto', *ENCODERS]}")
    return ENCODERS[name](space, cfg)
