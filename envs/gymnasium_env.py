"""Any Gymnasium environment as a ``VecEnv``: in-process by default, subprocesses as an option.

``GymnasiumVecEnv`` steps the envs in a plain Python loop (fastest for cheap envs on few cores);
``AsyncGymnasiumVecEnv`` runs one subprocess per env through ``gymnasium.vector.AsyncVectorEnv``
with its autoreset disabled. Both reset an env right after its episode ends (same-step autoreset, see
``envs.api``): the ended episode's last observation goes to ``info["final_obs"]`` and no transition is
ever made from it, and none from a reset observation to the old episode.

Env-specific ``info`` values that are scalars (numbers, bools) become arrays [N] taken from the step's
info (the transition just made, not the reset): floats as float64 (NaN where an env did not report the
key), ints as int64 (-1 where missing), bools as bool (False where missing). Other values are dropped.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import gymnasium
import numpy as np
from gymnasium.envs.registration import load_env_creator

from envs.api import (ACTION_SPACES, EpisodeTracker, Obs, StepResult, VecEnv, empty_obs, obs_copy, obs_set_row,
                      space_is_supported_obs, spawn_seeds, validate_actions)

EnvFn = Callable[[], gymnasium.Env]
_MAKE_KWARGS = ("render_mode", "max_episode_steps", "autoreset", "apply_api_compatibility", "disable_env_checker")
_FILL = {np.dtype(np.float64): np.nan, np.dtype(np.int64): -1, np.dtype(np.bool_): False}


def _scalar_dtype(value: Any) -> np.dtype | None:
    """float64 / int64 / bool for scalar info values, None for anything else."""
    if isinstance(value, (bool, np.bool_)):
        return np.dtype(np.bool_)
    if isinstance(value, (int, np.integer)):
        return np.dtype(np.int64)
    if isinstance(value, (float, np.floating)):
        return np.dtype(np.float64)
    return None


class _GymnasiumBase(VecEnv):
    """Shared state: spaces, seeds, the keep-task mask, episode statistics."""

    def __init__(self, num_envs: int, observation_space: gymnasium.spaces.Space,
                 action_space: gymnasium.spaces.Space, seed: int | None) -> None:
        if not space_is_supported_obs(observation_space):
            raise ValueError(f"observation_space: only Box, Discrete, MultiDiscrete, MultiBinary and Dict / "
                             f"Tuple of them are supported, got {observation_space}")
        if not isinstance(action_space, ACTION_SPACES):
            raise ValueError(f"action_space: only {', '.join(s.__name__ for s in ACTION_SPACES)} are supported, "
                             f"got {action_space}")
        self.num_envs = num_envs
        self.observation_space = observation_space
        self.action_space = action_space
        self.action_space.seed(seed)
        self._seed = seed
        self._keep = np.zeros(num_envs, bool)
        self._first = np.ones(num_envs, bool)
        self._tracker = EpisodeTracker(num_envs)
        self._started = False
        self._closed = False

    @property
    def first(self) -> np.ndarray:
        return self._first.copy()

    def keep_task_on_reset(self, keep: np.ndarray) -> None:
        """bool [N]: at the next automatic reset of env i, pass ``options={"keep_task": True}``."""
        keep = np.asarray(keep, bool)
        if keep.shape != (self.num_envs,):
            raise ValueError(f"keep: expected shape ({self.num_envs},), got {keep.shape}")
        self._keep = keep.copy()

    def _reset_seeds(self, seed: int | None) -> list[int | None]:
        if seed is None and not self._started:
            seed = self._seed  # the factory's seed applies to the first reset
        self._started = True
        self._first = np.ones(self.num_envs, bool)
        self._tracker.reset()
        return spawn_seeds(seed, self.num_envs)

    def _check_step(self, actions: Any) -> np.ndarray:
        if self._closed:
            raise RuntimeError("step() called on a closed env")
        if not self._started:
            raise RuntimeError("step() called before reset()")
        return validate_actions(actions, self.action_space, self.num_envs)

    def _finish(self, obs: Obs, rew: np.ndarray, term: np.ndarray, trunc: np.ndarray,
                extra: dict[str, np.ndarray], final: Obs | None) -> StepResult:
        done = term | trunc
        self._first = done
        info = {**extra, **self._tracker.update(rew, done)}
        if final is not None:
            info["final_obs"] = final
        return obs, rew, term, trunc, info


def _names_of(env: gymnasium.Env) -> list[str] | None:
    """``action_names`` (our tasks) or ``get_action_meanings()`` (Atari) of a Gymnasium env, if any."""
    base = env.unwrapped
    names = getattr(base, "action_names", None)
    if names is None and hasattr(base, "get_action_meanings"):
        names = base.get_action_meanings()
    return [str(n) for n in names] if names is not None else None


class GymnasiumVecEnv(_GymnasiumBase):
    """``len(env_fns)`` Gymnasium envs stepped in-process, one after the other."""

    def __init__(self, env_fns: list[EnvFn], seed: int | None = None) -> None:
        self.envs = [fn() for fn in env_fns]
        first = self.envs[0]
        for i, env in enumerate(self.envs[1:], 1):
            if env.observation_space != first.observation_space or env.action_space != first.action_space:
                raise ValueError(f"env_fns[{i}]: spaces differ from env_fns[0]'s; all envs must share them")
        super().__init__(len(self.envs), first.observation_space, first.action_space, seed)

    def reset(self, seed: int | None = None) -> Obs:
        obs = empty_obs(self.observation_space, self.num_envs)
        for i, (env, s) in enumerate(zip(self.envs, self._reset_seeds(seed))):
            obs_set_row(obs, i, env.reset(seed=s)[0])
        return obs

    def step(self, actions: np.ndarray) -> StepResult:
        actions = self._check_step(actions)
        n = self.num_envs
        obs = empty_obs(self.observation_space, n)
        rew = np.zeros(n, np.float32)
        term, trunc = np.zeros(n, bool), np.zeros(n, bool)
        extra: dict[str, np.ndarray] = {}
        final = None
        for i, env in enumerate(self.envs):
            o, r, te, tr, inf = env.step(actions[i])
            rew[i], term[i], trunc[i] = r, te, tr
            for k, v in inf.items():
                arr = extra.get(k)
                if arr is None:
                    dtype = _scalar_dtype(v)
                    if dtype is None:
                        continue
                    arr = extra[k] = np.full(n, _FILL[dtype], dtype)
                arr[i] = v
            if te or tr:
                if final is None:
                    final = empty_obs(self.observation_space, n)
                obs_set_row(final, i, o)
                o = env.reset(options={"keep_task": True} if self._keep[i] else None)[0]
            obs_set_row(obs, i, o)
        return self._finish(obs, rew, term, trunc, extra, final)

    def action_names(self) -> list[str] | None:
        return _names_of(self.envs[0])

    def get_frames(self) -> np.ndarray | None:
        if self.envs[0].render_mode != "rgb_array":
            return None
        return np.stack([env.render() for env in self.envs])

    def close(self) -> None:
        if not self._closed:
            for env in self.envs:
                env.close()
            self._closed = True


class AsyncGymnasiumVecEnv(_GymnasiumBase):
    """One subprocess per env (``gymnasium.vector.AsyncVectorEnv``, its autoreset disabled)."""

    def __init__(self, env_fns: list[EnvFn], seed: int | None = None) -> None:
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode

        self.venv = AsyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.DISABLED)
        self._render_mode = self.venv.render_mode
        super().__init__(len(env_fns), self.venv.single_observation_space,
                         self.venv.single_action_space, seed)

    def reset(self, seed: int | None = None) -> Obs:
        return self.venv.reset(seed=self._reset_seeds(seed))[0]

    def _arrays(self, infos: dict[str, Any]) -> dict[str, np.ndarray]:
        out = {}
        for k, v in infos.items():
            if k.startswith("_") or not isinstance(v, np.ndarray) or v.shape != (self.num_envs,):
                continue
            dtype = _scalar_dtype(v.dtype.type(0)) if v.dtype != object else None
            if dtype is not None:
                out[k] = np.where(infos.get("_" + k, True), v, _FILL[dtype]).astype(dtype)
        return out

    def step(self, actions: np.ndarray) -> StepResult:
        actions = self._check_step(actions)
        obs, rew, term, trunc, infos = self.venv.step(actions)
        term, trunc = np.asarray(term, bool), np.asarray(trunc, bool)
        done = term | trunc
        final = None
        if done.any():
            final = obs_copy(obs)
            for mask, options in ((done & self._keep, {"keep_task": True}), (done & ~self._keep, {})):
                if mask.any():
                    obs = self.venv.reset(options={"reset_mask": mask, **options})[0]
        return self._finish(obs, rew.astype(np.float32), term, trunc, self._arrays(infos), final)

    def get_frames(self) -> np.ndarray | None:
        if self._render_mode != "rgb_array":
            return None
        return np.stack(self.venv.call("render"))

    def close(self) -> None:
        if not self._closed:
            self.venv.close()
            self._closed = True


VECTORIZATIONS: dict[str, type[_GymnasiumBase]] = {"sync": GymnasiumVecEnv, "async": AsyncGymnasiumVecEnv}


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> None:
    """ValueError naming the env's accepted keyword arguments unless it takes all of ``env_kwargs``."""
    spec = gymnasium.spec(env_id.split(":", 1)[-1])  # "module:" prefixes are imported by then
    creator = spec.entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)
    try:
        params = inspect.signature(creator).parameters
    except (TypeError, ValueError):  # no introspectable signature: let the env decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(env_kwargs) - set(params))
    if unknown:
        allowed = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL and n != "self"]
        raise ValueError(f"{env_id} does not take {unknown}; allowed: {', '.join(allowed)} "
                         f"(and envs.make's own: vectorization, trial_episodes)")


def make_gymnasium(env_id: str, num_envs: int, seed: int | None = None, vectorization: str = "sync",
                   **env_kwargs: Any) -> VecEnv:
    """``num_envs`` copies of ``gymnasium.make(env_id, **env_kwargs)`` (env checker off, for speed)."""
    if vectorization not in VECTORIZATIONS:
        raise ValueError(f"vectorization={vectorization!r} is not valid; allowed: {', '.join(VECTORIZATIONS)}")
    check_env_kwargs(env_id, {k: v for k, v in env_kwargs.items() if k not in _MAKE_KWARGS})

    def env_fn() -> gymnasium.Env:
        import envs.meta  # noqa: F401  (registers srwm_rl/... in spawned subprocesses too)

        return gymnasium.make(env_id, disable_env_checker=True, **env_kwargs)

    return VECTORIZATIONS[vectorization]([env_fn] * num_envs, seed=seed)
