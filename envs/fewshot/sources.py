"""Where few-shot classes come from: procedural glyphs (meta-training) and scikit-learn's 8x8 digits.

Every source yields 8x8 grey images as float32 in [0, 1], quantised to 17 levels, in the format of
scikit-learn's digits (UCI "optdigits": 32x32 binary bitmaps counted in 4x4 blocks, values 0..16).

Glyphs: class id -> a prototype of 1-3 quadratic Bezier strokes (seeded by the id, so a class is
the same everywhere), centred and size-normalised like the digits, rendered at 32x32. Each example
is the prototype under a random affine map (rotation, scale, shear, shift) and a smooth elastic
displacement, then counted down to 8x8. Class-id ranges are disjoint per split:

    train [0, 2^30)   val [2^30, 2^31)   test [2^31, 2^32)

Digits: the 10 classes x ~180 examples of ``sklearn.datasets.load_digits`` (shipped inside the
scikit-learn wheel, no download); split "test" only - real data is used for held-out evaluation.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Protocol

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 8
SPLITS = ("train", "val", "test")
_GLYPH_VERSION = 1           # part of every prototype's seed: bump it if the glyph family changes
_RES = 32                    # rendering resolution before the 4x4 block count
_PTS = 16                    # points sampled along each stroke (then densified 8x)
_MAX_STROKES = 3


class ClassSource(Protocol):
    """A family of image classes. ``examples`` rows are tasks: images of one row are distinct draws."""

    name: str
    splits: tuple[str, ...]

    def num_classes(self, split: str) -> Optional[int]:
        """Classes in ``split`` (None = practically unlimited)."""

    def sample_classes(self, n: int, split: str, rng: np.random.Generator) -> np.ndarray:
        """``n`` distinct class ids of ``split``, int64 [n]."""

    def examples(self, class_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """class_ids int64 [B, L] -> images float32 [B, L, 8, 8]."""


def check_split(source: ClassSource, split: str) -> None:
    if split not in source.splits:
        raise ValueError(f"split={split!r} is not available for source {source.name!r}; allowed: "
                         f"{', '.join(map(repr, source.splits))}"
                         + (" (real data is held out for evaluation only)" if source.name == "digits" else ""))


# ---- glyphs ---------------------------------------------------------------------------------------

class GlyphSource:
    """Procedurally generated stroke glyphs (see the module docstring); ``distortion`` scales the
    per-example deformations (0 = every example of a class is its prototype)."""

    name = "glyphs"
    splits = SPLITS
    RANGES = {"train": (0, 2**30), "val": (2**30, 2**31), "test": (2**31, 2**32)}

    def __init__(self, distortion: float = 1.0):
        if not distortion >= 0:
            raise ValueError(f"distortion={distortion!r} is not valid; expected a number >= 0")
        self.distortion = float(distortion)

    def num_classes(self, split: str) -> Optional[int]:
        check_split(self, split)
        return None

    def split_of(self, class_id: int) -> str:
        return next(s for s, (lo, hi) in self.RANGES.items() if lo <= class_id < hi)

    def sample_classes(self, n: int, split: str, rng: np.random.Generator) -> np.ndarray:
        check_split(self, split)
        lo, hi = self.RANGES[split]
        while True:
            ids = rng.integers(lo, hi, size=n, dtype=np.int64)
            if len(np.unique(ids)) == n:
                return ids

    def examples(self, class_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        class_ids = np.asarray(class_ids, np.int64)
        uniq, inv = np.unique(class_ids, return_inverse=True)
        protos = render_prototypes(uniq)                                  # [U, 32, 32]
        flat = protos[torch.from_numpy(inv.reshape(-1))]                  # [M, 32, 32]
        imgs = distort(flat, rng, self.distortion)
        return imgs.reshape(*class_ids.shape, IMAGE_SIZE, IMAGE_SIZE)


def glyph_strokes(class_id: int) -> tuple[np.ndarray, int]:
    """The prototype of ``class_id``: points [n, 2] along its strokes in [-1, 1]^2 and the pen radius
    in pixels (1 or 2, at 32x32)."""
    rng = np.random.default_rng([_GLYPH_VERSION, int(class_id)])
    n_strokes = int(rng.integers(1, _MAX_STROKES + 1))
    s = np.linspace(0.0, 1.0, _PTS)[:, None]
    strokes = []
    for i in range(n_strokes):
        ctrl = rng.uniform(-1.0, 1.0, size=(3, 2))
        if i and rng.random() < 0.6:                 # most strokes start on an earlier one (joined glyph)
            prev = strokes[int(rng.integers(i))]
            ctrl[0] = prev[int(rng.integers(_PTS))]
        strokes.append((1 - s) ** 2 * ctrl[0] + 2 * s * (1 - s) * ctrl[1] + s ** 2 * ctrl[2])
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    pts = (pts - (lo + hi) / 2) * (1.7 / max(float((hi - lo).max()), 0.3))   # centred, fits [-0.85, 0.85]
    return pts.astype(np.float32), int(rng.integers(1, 3))


def _disk(radius: int) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1, dtype=torch.float32)
    return ((r[:, None] ** 2 + r[None] ** 2) <= radius ** 2 + radius).float().view(1, 1, 2 * radius + 1, -1)


def render_prototypes(class_ids: np.ndarray) -> torch.Tensor:
    """Binary prototype images [U, 32, 32] of the glyph classes ``class_ids``: the stroke points
    (sampled every <= 0.5 px) set their pixel, then a disk of the class's pen radius dilates them."""
    out = torch.zeros(len(class_ids), 1, _RES, _RES)
    radius = np.empty(len(class_ids), np.int64)
    for i, c in enumerate(class_ids):
        pts, radius[i] = glyph_strokes(int(c))
        seg = np.linspace(pts[:-1], pts[1:], 8, axis=1).reshape(-1, 2)      # dense along each segment
        px = np.clip(((seg + 1) / 2 * _RES).astype(np.int64), 0, _RES - 1)
        out[i, 0, px[:, 1], px[:, 0]] = 1.0
    for r in np.unique(radius):
        idx = torch.from_numpy(np.flatnonzero(radius == r))
        out[idx] = (F.conv2d(out[idx], _disk(int(r)), padding=int(r)) > 0).float()
    return out.squeeze(1)


def distort(protos: torch.Tensor, rng: np.random.Generator, strength: float) -> np.ndarray:
    """protos [M, 32, 32] -> examples [M, 8, 8]: random affine + elastic warp, 4x4 block count."""
    M = protos.shape[0]
    r = lambda *shape: torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) * strength  # noqa: E731
    rot, log_s, shear = r(M) * 0.17, r(M, 2) * 0.08, r(M) * 0.12
    shift = r(M, 2) * 0.06
    cos, sin = torch.cos(rot), torch.sin(rot)
    sx, sy = torch.exp(log_s[:, 0]), torch.exp(log_s[:, 1])
    theta = torch.stack([torch.stack([cos * sx, -sin * sy + shear, shift[:, 0]], -1),
                         torch.stack([sin * sx, cos * sy, shift[:, 1]], -1)], 1)     # [M, 2, 3]
    grid = F.affine_grid(theta, [M, 1, _RES, _RES], align_corners=False)
    elastic = F.interpolate(r(M, 2, 4, 4) * 0.05, size=(_RES, _RES), mode="bicubic", align_corners=False)
    grid = grid + elastic.permute(0, 2, 3, 1)
    warped = F.grid_sample(protos.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    binary = (warped > 0.5).float()                                  # the digits count "on" pixels
    counts = F.avg_pool2d(binary, 4).squeeze(1)                      # [M, 8, 8] in {0, 1/16, ..., 1}
    return counts.numpy().astype(np.float32)


# ---- scikit-learn digits -------------------------------------------------------------------------

@lru_cache(maxsize=1)
def load_digits_by_class() -> tuple[np.ndarray, ...]:
    """images float32 [n_c, 8, 8] in [0, 1] for each digit class 0..9 (from the scikit-learn wheel)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("source 'digits' needs scikit-learn (pip install scikit-learn): "
                          "its 8x8 digits ship inside the wheel") from e
    d = load_digits()
    imgs = (d.images / 16.0).astype(np.float32)
    return tuple(imgs[d.target == c] for c in range(10))


class DigitsSource:
    """scikit-learn's 8x8 handwritten digits, 10 classes, held out for evaluation (split 'test')."""

    name = "digits"
    splits = ("test",)

    def num_classes(self, split: str) -> Optional[int]:
        check_split(self, split)
        return 10

    def min_examples(self) -> int:
        return min(len(x) for x in load_digits_by_class())

    def sample_classes(self, n: int, split: str, rng: np.random.Generator) -> np.ndarray:
        check_split(self, split)
        if not 1 <= n <= 10:
            raise ValueError(f"num_ways={n} is not valid for source 'digits'; allowed: 1..10")
        return rng.choice(10, size=n, replace=False).astype(np.int64)

    def examples(self, class_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        by_class = load_digits_by_class()
        class_ids = np.asarray(class_ids, np.int64)
        rows = class_ids.reshape(-1, class_ids.shape[-1])                  # one row = one task
        out = np.empty((*rows.shape, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        for b, row in enumerate(rows):
            for c in np.unique(row):                                    # distinct examples within a task
                where = np.flatnonzero(row == c)
                if len(where) > len(by_class[c]):
                    raise ValueError(f"{len(where)} examples of digit {c} asked in one task; it has {len(by_class[c])}")
                out[b, where] = by_class[c][rng.choice(len(by_class[c]), size=len(where), replace=False)]
        return out.reshape(*class_ids.shape, IMAGE_SIZE, IMAGE_SIZE)


SOURCES = {"glyphs": GlyphSource, "digits": DigitsSource}


def make_source(name: str, distortion: float = 1.0) -> ClassSource:
    """The class source ``name`` (one of :data:`SOURCES`)."""
    if name not in SOURCES:
        raise ValueError(f"source={name!r} is not a known class source; allowed: {', '.join(map(repr, SOURCES))}")
    return GlyphSource(distortion) if name == "glyphs" else DigitsSource()

# Known sizes of the digits (checked by the tests against the data), for validation without loading it.
DIGITS_NUM_CLASSES = 10
DIGITS_MIN_PER_CLASS = 174
