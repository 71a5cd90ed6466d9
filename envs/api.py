"""The batched environment protocol every agent sees, and the helpers its implementations share.

Conventions (all arrays batch-first, N = ``num_envs``):

* ``reset(seed) -> obs``; afterwards ``first`` is all True.
* ``step(actions) -> (obs, reward, terminated, truncated, info)`` with **same-step autoreset**: where an
  episode ends, ``reward``/``terminated``/``truncated`` belong to the ended episode's last transition,
  but ``obs`` is already the first observation of the next episode and ``first`` is True there.
  ``info["final_obs"]`` holds the ended episode's last observation in those rows.
* ``info`` is a dict of batch-first numpy arrays, never a list of dicts. Always present:
  ``episode_done`` bool [N], ``episode_return`` float64 [N] (NaN where not done), ``episode_length``
  int64 [N] (0 where not done). ``final_obs`` is present whenever ``(terminated | truncated).any()``
  for every env family that can observe it; Procgen cannot (gym3 drops the last frame), never
  truncates, and so never sets it. Rely on it only in rows where ``truncated`` (what bootstrapping
  needs); other rows are arbitrary.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol, Union, runtime_checkable

import gymnasium
import numpy as np

Obs = Union[np.ndarray, dict[str, Any], tuple]
StepResult = tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


class VecEnv(abc.ABC):
    """A batch of ``num_envs`` environments stepped together (see the module docstring for the rules).

    ``observation_space`` and ``action_space`` describe ONE environment. Observations are numpy arrays
    ``[N, *obs_shape]`` (images uint8 channels-last ``[N, H, W, C]``) or dicts of such arrays.
    Actions are int ``[N]`` for Discrete spaces, int ``[N, K]`` for MultiDiscrete and MultiBinary
    spaces and float ``[N, A]`` for Box spaces.
    """

    num_envs: int
    observation_space: gymnasium.spaces.Space
    action_space: gymnasium.spaces.Space

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> Obs:
        """Start a new episode in every env; returns obs ``[N, ...]``. ``seed`` makes it reproducible."""

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> StepResult:
        """Step every env: returns (obs [N,...], reward float32 [N], terminated bool [N],
        truncated bool [N], info dict of [N,...] arrays), with same-step autoreset."""

    @property
    @abc.abstractmethod
    def first(self) -> np.ndarray:
        """bool [N]: True where the obs last returned is the first of a new episode (memory reset)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release every resource (subprocesses, C environments). Idempotent."""

    def get_frames(self) -> np.ndarray | None:
        """uint8 RGB ``[N, H, W, 3]`` of the current state for video, or None if unsupported."""
        return None

    def action_names(self) -> list[str] | None:
        """A name per Discrete action (for video overlays), or None when the env has none."""
        return None

    @property
    def unwrapped(self) -> VecEnv:
        """The innermost VecEnv (wrappers override this)."""
        return self

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@runtime_checkable
class SupportsKeepTask(Protocol):
    """A VecEnv whose envs can keep their task (bandit arms, goal cell, Procgen level) across resets."""

    def keep_task_on_reset(self, keep: np.ndarray) -> None:
        """bool [N]: at the next automatic reset of env i, keep its current task where ``keep[i]``."""


def validate_actions(actions: Any, space: gymnasium.spaces.Space, num_envs: int) -> np.ndarray:
    """Check a batch of actions against one env's action space; returns it as a numpy array.

    Discrete: integer ``[N]`` in ``[start, start + n)``. Box: float ``[N, *shape]`` within bounds.
    Raises ValueError naming the expected shape/range and the offending values.
    """
    actions = np.asarray(actions)
    if isinstance(space, gymnasium.spaces.Discrete):
        if actions.shape != (num_envs,):
            raise ValueError(
                f"actions: expected shape ({num_envs},) for Discrete({space.n}) with {num_envs} envs, "
                f"got shape {actions.shape}"
            )
        if not np.issubdtype(actions.dtype, np.integer):
            if np.issubdtype(actions.dtype, np.floating) and np.all(np.mod(actions, 1) == 0):
                actions = actions.astype(np.int64)
            else:
                raise ValueError(f"actions: expected integers for Discrete({space.n}), got dtype {actions.dtype}")
        lo, hi = int(space.start), int(space.start + space.n)
        if actions.size and (actions.min() < lo or actions.max() >= hi):
            bad = actions[(actions < lo) | (actions >= hi)]
            raise ValueError(f"actions: Discrete({space.n}) allows [{lo}, {hi - 1}], got {bad[:8].tolist()}")
        return actions
    if isinstance(space, gymnasium.spaces.Box):
        want = (num_envs, *space.shape)
        if actions.shape != want:
            raise ValueError(f"actions: expected shape {want} for Box{space.shape} with {num_envs} envs, got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError("actions: Box actions must be finite, got NaN or inf")
        if np.any(actions < space.low) or np.any(actions > space.high):
            raise ValueError(
                f"actions: Box allows [{space.low.min()}, {space.high.max()}] per component "
                f"(clip before stepping), got min {actions.min()} max {actions.max()}"
            )
        return actions.astype(space.dtype, copy=False)
    if isinstance(space, (gymnasium.spaces.MultiDiscrete, gymnasium.spaces.MultiBinary)):
        want = (num_envs, *space.shape)
        if actions.shape != want:
            raise ValueError(f"actions: expected shape {want} for {space} with {num_envs} envs, got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.integer):
            if not (np.issubdtype(actions.dtype, np.floating) and np.all(np.mod(actions, 1) == 0)):
                raise ValueError(f"actions: expected integers for {space}, got dtype {actions.dtype}")
        if isinstance(space, gymnasium.spaces.MultiBinary):
            lo, hi = np.zeros(space.shape, np.int64), np.full(space.shape, 2, np.int64)
        else:
            lo = np.asarray(getattr(space, "start", 0)) + np.zeros(space.shape, np.int64)
            hi = lo + space.nvec
        if actions.size and (np.any(actions < lo) or np.any(actions >= hi)):
            raise ValueError(f"actions: {space} allows components in [start, start + nvec), got "
                             f"{actions[np.any((actions < lo) | (actions >= hi), axis=tuple(range(1, actions.ndim)))][:4].tolist()}")
        return actions.astype(space.dtype, copy=False)
    raise ValueError(f"action_space: only {', '.join(s.__name__ for s in ACTION_SPACES)} are supported, got {space}")


ACTION_SPACES = (gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete, gymnasium.spaces.MultiBinary,
                 gymnasium.spaces.Box)


class EpisodeTracker:
    """Running return and length per env; reports them where an episode ends. All vectorised."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs, np.float64)
        self.lengths = np.zeros(num_envs, np.int64)

    def reset(self) -> None:
        """Forget the episodes in progress (after a full reset)."""
        self.returns[:] = 0.0
        self.lengths[:] = 0

    def update(self, rewards: np.ndarray, done: np.ndarray) -> dict[str, np.ndarray]:
        """Add one step's rewards [N]; where ``done`` [N] close the episode.

        Returns ``episode_done`` bool [N], ``episode_return`` float64 [N] (NaN elsewhere) and
        ``episode_length`` int64 [N] (0 elsewhere).
        """
        self.returns += rewards
        self.lengths += 1
        ep_return = np.where(done, self.returns, np.nan)
        ep_length = np.where(done, self.lengths, 0)
        self.returns[done] = 0.0
        self.lengths[done] = 0
        return {"episode_done": done.copy(), "episode_return": ep_return, "episode_length": ep_length}


_LEAF_OBS = (gymnasium.spaces.Box, gymnasium.spaces.Discrete, gymnasium.spaces.MultiDiscrete,
             gymnasium.spaces.MultiBinary)


def space_is_supported_obs(space: gymnasium.spaces.Space) -> bool:
    """Box, Discrete, MultiDiscrete and MultiBinary observations, or a Dict / Tuple of them (nested)."""
    if isinstance(space, gymnasium.spaces.Dict):
        return all(space_is_supported_obs(s) for s in space.spaces.values())
    if isinstance(space, gymnasium.spaces.Tuple):
        return all(space_is_supported_obs(s) for s in space.spaces)
    return isinstance(space, _LEAF_OBS)


def empty_obs(space: gymnasium.spaces.Space, n: int) -> Obs:
    """Zeroed batch ``[n, ...]`` for one env's observation space (Discrete -> int64 [n]); Dict -> dict,
    Tuple -> tuple of such batches."""
    if isinstance(space, gymnasium.spaces.Dict):
        return {k: empty_obs(s, n) for k, s in space.spaces.items()}
    if isinstance(space, gymnasium.spaces.Tuple):
        return tuple(empty_obs(s, n) for s in space.spaces)
    if isinstance(space, gymnasium.spaces.Discrete):
        return np.zeros(n, np.int64)
    return np.zeros((n, *space.shape), space.dtype)


def obs_set_row(batch: Obs, i: int, value: Any) -> None:
    """``batch[i] = value`` for an array or a (nested) dict / tuple of arrays."""
    if isinstance(batch, dict):
        for k, v in batch.items():
            obs_set_row(v, i, value[k])
    elif isinstance(batch, tuple):
        for b, v in zip(batch, value):
            obs_set_row(b, i, v)
    else:
        batch[i] = value


def obs_copy(obs: Obs) -> Obs:
    """Deep copy of an observation batch."""
    if isinstance(obs, dict):
        return {k: obs_copy(v) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(obs_copy(v) for v in obs)
    return obs.copy()


def obs_where(mask: np.ndarray, a: Obs, b: Obs) -> Obs:
    """Rows of ``a`` where ``mask`` [N] is True, rows of ``b`` elsewhere (new arrays)."""
    if isinstance(a, dict):
        return {k: obs_where(mask, a[k], b[k]) for k in a}
    if isinstance(a, tuple):
        return tuple(obs_where(mask, x, y) for x, y in zip(a, b))
    return np.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)


def spawn_seeds(seed: int | None, n: int) -> list[int | None]:
    """``n`` independent per-env seeds derived from one seed (``[None] * n`` for None).

    Uses ``numpy.random.SeedSequence`` so that runs with seeds s and s+1 share no env stream. Seeds
    are below 2^31 (what Procgen accepts).
    """
    if seed is None:
        return [None] * n
    return [int(s) >> 1 for s in np.random.SeedSequence(int(seed)).generate_state(n, dtype=np.uint32)]
