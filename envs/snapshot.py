"""A plain-data snapshot of a batched environment, so that a resumed run continues the very episodes a
straight run would (exact resume).

What is captured: every attribute holding plain data (numbers, strings, numpy arrays, tuples / lists /
dicts of them, and the states of numpy random generators) of every object of the environment stack
that is an environment, a wrapper or a helper of this package or of Gymnasium (reached through
attributes, e.g. ``env``, ``envs[i]``, ``_tracker``, ``rms``). Nothing executable is stored, so the
snapshot is safe inside a ``weights_only`` checkpoint.

Supported: environments stepped in this process through :class:`envs.gymnasium_env.GymnasiumVecEnv`
(Gymnasium ids, ``module:Env`` ids and the in-context tasks) whose state lives in Python attributes, as
Gymnasium's classic-control environments and this package's tasks do. Not supported (``env_state``
returns None, a resumed run re-seeds its environments instead): ``async`` vectorisation (the envs live
in subprocesses) and Procgen (its state is inside a C library).
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from envs.api import VecEnv

_WALK_MODULES = ("envs.", "gymnasium.")
_SCALARS = (type(None), bool, int, float, str, np.generic)


def _plain(v: Any) -> bool:
    if isinstance(v, _SCALARS):
        return True
    if isinstance(v, np.ndarray):
        return v.dtype.kind in "biufc"
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def _walkable(v: Any, env_module: set[str]) -> bool:
    mod = type(v).__module__ or ""
    return hasattr(v, "__dict__") and not isinstance(v, type) and (
        mod.startswith(_WALK_MODULES) or mod in env_module)


def _objects(env: VecEnv) -> dict[str, Any]:
    """path -> object of every walkable object of the stack, in a fixed order."""
    user_modules: set[str] = set()
    for e in getattr(env.unwrapped, "envs", []):            # user envs (module:Env) and their wrappers
        while e is not None:
            user_modules.add(type(e).__module__)
            e = getattr(e, "env", None)
    found: dict[str, Any] = {}
    seen: set[int] = set()

    def walk(obj: Any, path: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        found[path] = obj
        for k, v in sorted(vars(obj).items()):
            if isinstance(v, (list, tuple)) and v and all(_walkable(x, user_modules) for x in v):
                for i, x in enumerate(v):
                    walk(x, f"{path}.{k}[{i}]")
            elif _walkable(v, user_modules) and not _plain(v):
                walk(v, f"{path}.{k}")

    walk(env, "env")
    return found


def _capture(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in vars(obj).items():
        if isinstance(v, np.random.Generator):
            out[k] = {"__generator__": v.bit_generator.state}
        elif _plain(v):
            out[k] = v.copy() if isinstance(v, np.ndarray) else v
    return out


def supports_snapshot(env: VecEnv) -> bool:
    from envs.gymnasium_env import GymnasiumVecEnv
    return type(env.unwrapped) is GymnasiumVecEnv


def env_state(env: VecEnv) -> Optional[dict[str, dict[str, Any]]]:
    """The snapshot of ``env`` (path -> attribute -> plain value), or None where it is not supported."""
    if not supports_snapshot(env):
        return None
    return {path: _capture(obj) for path, obj in _objects(env).items()}


def _as_numpy(v: Any) -> Any:
    if hasattr(v, "numpy") and hasattr(v, "dtype"):           # a tensor from a checkpoint
        return v.numpy().copy()
    return v


def load_env_state(env: VecEnv, state: dict[str, dict[str, Any]]) -> None:
    """Restore a snapshot of :func:`env_state` into an environment built with the same options.
    ValueError if its structure differs (another environment or other wrappers)."""
    objects = _objects(env)
    if set(objects) != set(state):
        raise ValueError(f"the environment snapshot does not fit this environment (objects "
                         f"{sorted(set(state) ^ set(objects))[:5]} differ)")
    for path, attrs in state.items():
        obj = objects[path]
        for k, v in attrs.items():
            v = _as_numpy(v)
            cur = getattr(obj, k, None)
            if isinstance(v, dict) and "__generator__" in v:
                if not isinstance(cur, np.random.Generator):         # created lazily (e.g. a space's)
                    cur = np.random.Generator(getattr(np.random, v["__generator__"]["bit_generator"])())
                    setattr(obj, k, cur)
                cur.bit_generator.state = v["__generator__"]
            elif isinstance(cur, np.ndarray) and isinstance(v, np.ndarray) and cur.shape == v.shape \
                    and cur.flags.writeable:
                cur[...] = v                                   # in place: keeps arrays that are shared
            elif isinstance(cur, np.ndarray) and not isinstance(v, np.ndarray):
                setattr(obj, k, np.asarray(v, cur.dtype))
            else:
                setattr(obj, k, _restore_type(cur, v))


def _restore_type(cur: Any, v: Any) -> Any:
    """Checkpoints turn numpy scalars into Python numbers and arrays into tensors: turn them back."""
    if isinstance(cur, np.generic) and not isinstance(v, np.generic):
        return type(cur)(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_as_numpy(x) for x in v)
    return v
