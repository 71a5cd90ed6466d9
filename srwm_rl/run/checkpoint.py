"""Checkpoints: one file with config, spaces, model, optimizer, normaliser statistics, counters, RNG.

Written atomically (a temporary file in the same directory, flushed and fsynced, then renamed),
so a crash never leaves a half-written checkpoint in place of a good one. Loaded with
``torch.load(weights_only=True)``: only tensors and plain containers, no pickled code is executed.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from srwm_rl.run.guards import nonfinite_state_dict

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, or does not fit the agent."""


# ---- plain, weights_only-safe representations of numpy values, RNG states and spaces ----------

def to_safe(obj: Any) -> Any:
    """numpy arrays and scalars -> tensors and Python numbers, recursively (weights_only-loadable)."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.array(obj, order="C"))   # not ascontiguousarray: it makes 0-d arrays 1-d
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_safe(v) for v in obj)
    return obj


def from_safe(obj: Any) -> Any:
    """Inverse of :func:`to_safe`: tensors -> numpy arrays, recursively."""
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: from_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(from_safe(v) for v in obj)
    return obj


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) global RNG states."""
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """Describe a space with plain values (enough to rebuild a policy without the environment)."""
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(s) for s in space.spaces]}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": np.asarray(space.start).tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "n": [int(n) for n in space.shape]}
    if isinstance(space, gym.spaces.Box):
        def bound(b):
            return float(b.flat[0]) if np.all(b == b.flat[0]) else torch.from_numpy(b.astype(np.float64))
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": bound(space.low), "high": bound(space.high)}
    raise CheckpointError(f"cannot store observation/action space {space}")


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    kind = d["type"]
    if kind == "Dict":
        return gym.spaces.Dict({k: space_from_dict(v) for k, v in d["spaces"].items()})
    if kind == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d["start"])
    if kind == "Tuple":
        return gym.spaces.Tuple([space_from_dict(s) for s in d["spaces"]])
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(d["nvec"], start=d.get("start"))
    if kind == "MultiBinary":
        return gym.spaces.MultiBinary(d["n"] if len(d["n"]) > 1 else d["n"][0])
    if kind == "Box":
        dtype = np.dtype(d["dtype"])

        def bound(b):   # in the space's own dtype (float64 bounds in a float32 Box make Gymnasium warn)
            b = b.numpy() if isinstance(b, torch.Tensor) else b
            if not np.issubdtype(dtype, np.floating):
                return b
            return np.broadcast_to(np.asarray(b, dtype), tuple(d["shape"])).copy()
        return gym.spaces.Box(bound(d["low"]), bound(d["high"]), shape=tuple(d["shape"]), dtype=dtype)
    raise CheckpointError(f"unknown space type {kind!r} in checkpoint")


# ---- save / load ------------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus the format version) to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **to_safe(payload)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; clear errors (CheckpointError) for missing,
    corrupt, foreign or non-finite files, and ValueError for a CUDA ``map_location`` without CUDA."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "latest.pt"
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if torch.device(map_location).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(map_location)!r}: CUDA is not available on this machine (use cpu)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":                       # torch.save writes a zip archive
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (srwm-rl checkpoints are the .pt files in "
                              f"RUN_DIR/checkpoints/){_other_checkpoint(path)}")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        text = str(e)
        if "Weights only load failed" in text:       # never pass on PyTorch's advice to load it unsafely
            why = ("it holds objects other than tensors and plain containers, which srwm-rl refuses to load "
                   "(loading them could run code from the file)")
        else:
            why = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated and cannot be read ({why})"
                              f"{_other_checkpoint(path)}") from None
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not an srwm-rl checkpoint of format {FORMAT_VERSION}")
    missing = {"config", "model", "obs_space", "action_space"} - set(data)
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}")
    bad = nonfinite_state_dict(data["model"]) if isinstance(data["model"], dict) else None
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({bad}) and is refused"
                              f"{_other_checkpoint(path)}")
    return data


def _other_checkpoint(path: Path) -> str:
    """'; the run's other checkpoint X exists: ...' for latest.pt <-> best.pt, else ''."""
    other = {"latest.pt": "best.pt", "best.pt": "latest.pt"}.get(path.name)
    if other is None or not (path.parent / other).exists():
        return ""
    return (f". The run's other checkpoint, {path.parent / other}, exists: evaluate it directly, or copy it "
            f"over {path.name} to resume from it")
