"""VecEnv -> VecEnv wrappers: previous action and reward as inputs, reward clipping, normalisation.

The normalisers keep running statistics that ``state_dict()`` returns as plain dicts of numpy arrays
and floats (checkpoint-friendly) and ``load_state_dict()`` restores; set ``update = False`` to freeze
them (evaluation). ``info["episode_return"]`` always reports the RAW return of the wrapped env, and
the wrappers that change rewards put the env's own reward of the step in ``info["raw_reward"]``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from envs.api import Obs, StepResult, VecEnv


class VecEnvWrapper(VecEnv):
    """Delegates everything to ``env``; attributes it does not define are looked up on ``env``."""

    def __init__(self, env: VecEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or "env" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, seed: int | None = None) -> Obs:
        return self.env.reset(seed)

    def step(self, actions: np.ndarray) -> StepResult:
        return self.env.step(actions)

    @property
    def first(self) -> np.ndarray:
        return self.env.first

    def close(self) -> None:
        self.env.close()

    def get_frames(self) -> np.ndarray | None:
        return self.env.get_frames()

    def action_names(self) -> list[str] | None:
        return self.env.action_names()

    @property
    def unwrapped(self) -> VecEnv:
        return self.env.unwrapped


class PrevActionReward(VecEnvWrapper):
    """Obs becomes ``{"obs": obs, "prev_action": a, "prev_reward": r}`` (a Dict inner obs is merged).

    ``prev_action``: int64 [N] for Discrete actions, int64 [N, K] for MultiDiscrete / MultiBinary,
    float32 [N, A] for Box; ``prev_reward``: float32
    [N, 1]. Both are zero where ``first`` (no previous step in this episode). In ``final_obs`` they
    hold the ended episode's last action and reward.
    """

    def __init__(self, env: VecEnv) -> None:
        super().__init__(env)
        inner, act = env.observation_space, env.action_space
        if isinstance(act, gymnasium.spaces.Discrete):
            self._act_space = gymnasium.spaces.Discrete(act.n, start=act.start)
            self._zero_action = np.zeros(env.num_envs, np.int64)
        elif isinstance(act, gymnasium.spaces.Box):
            self._act_space = gymnasium.spaces.Box(act.low, act.high, act.shape, np.float32)
            self._zero_action = np.zeros((env.num_envs, *act.shape), np.float32)
        elif isinstance(act, (gymnasium.spaces.MultiDiscrete, gymnasium.spaces.MultiBinary)):
            self._act_space = act
            self._zero_action = np.zeros((env.num_envs, *act.shape), np.int64)
        else:
            raise ValueError(f"action_space: PrevActionReward supports Discrete, MultiDiscrete, MultiBinary "
                             f"and Box, got {act}")
        extra = {"prev_action": self._act_space,
                 "prev_reward": gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)}
        if isinstance(inner, gymnasium.spaces.Dict):
            clash = set(inner.spaces) & set(extra)
            if clash:
                raise ValueError(f"observation_space: keys {sorted(clash)} already exist in the inner Dict")
            self.observation_space = gymnasium.spaces.Dict({**inner.spaces, **extra})
        else:
            self.observation_space = gymnasium.spaces.Dict({"obs": inner, **extra})

    def _wrap(self, obs: Obs, action: np.ndarray, reward: np.ndarray) -> dict[str, np.ndarray]:
        base = dict(obs) if isinstance(obs, dict) else {"obs": obs}
        return {**base, "prev_action": action, "prev_reward": reward.reshape(-1, 1)}

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        obs = self.env.reset(seed)
        return self._wrap(obs, self._zero_action.copy(), np.zeros(self.num_envs, np.float32))

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rew, term, trunc, info = self.env.step(actions)
        first = self.env.first
        act = np.asarray(actions).astype(self._zero_action.dtype).reshape(self._zero_action.shape)
        keep = ~first.reshape((-1,) + (1,) * (act.ndim - 1))
        wrapped = self._wrap(obs, np.where(keep, act, 0).astype(act.dtype),
                             np.where(first, 0.0, rew).astype(np.float32))
        if "final_obs" in info:
            info = {**info, "final_obs": self._wrap(info["final_obs"], act, rew.astype(np.float32))}
        return wrapped, rew, term, trunc, info


class ClipReward(VecEnvWrapper):
    """Rewards clipped to ``[low, high]`` (the info's episode returns stay raw)."""

    def __init__(self, env: VecEnv, low: float = -1.0, high: float = 1.0) -> None:
        if not low < high:
            raise ValueError(f"ClipReward: low={low} must be < high={high}")
        super().__init__(env)
        self.low, self.high = float(low), float(high)

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rew, term, trunc, info = self.env.step(actions)
        info = {"raw_reward": rew, **info}
        return obs, np.clip(rew, self.low, self.high).astype(np.float32), term, trunc, info


class RunningMeanStd:
    """Mean and variance of a stream of batches ``[B, *shape]`` (parallel update of Chan et al.)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:
        """Add a batch; rows holding a non-finite value are left out (one NaN must not poison the
        statistics for good - the training loop reports and skips it)."""
        batch = np.asarray(batch, np.float64)
        finite = np.isfinite(batch.reshape(batch.shape[0], -1)).all(axis=1)
        if not finite.all():
            batch = batch[finite]
        n = batch.shape[0]
        if n == 0:
            return
        b_mean, b_var = batch.mean(axis=0), batch.var(axis=0)
        delta, total = b_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + b_var * n + delta**2 * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("mean", "var"):
            value = np.asarray(state[key], np.float64)
            if value.shape != self.mean.shape:
                raise ValueError(f"state['{key}']: expected shape {self.mean.shape}, got {value.shape}")
            setattr(self, key, value.copy())
        self.count = float(state["count"])


class NormalizeObservation(VecEnvWrapper):
    """Box observations standardised with running statistics, clipped to ``[-clip, clip]``, float32.

    Statistics are updated (when ``update``) with every batch returned by ``reset`` and ``step``.
    """

    def __init__(self, env: VecEnv, clip: float = 10.0, epsilon: float = 1e-8, update: bool = True) -> None:
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gymnasium.spaces.Box):
            raise ValueError(f"observation_space: NormalizeObservation needs a Box, got {space}")
        self.clip, self.epsilon, self.update = float(clip), float(epsilon), bool(update)
        self.rms = RunningMeanStd(space.shape)
        self.observation_space = gymnasium.spaces.Box(-self.clip, self.clip, space.shape, np.float32)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Standardise a batch with the current statistics (no update)."""
        out = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs = self.env.reset(seed)
        if self.update:
            self.rms.update(obs)
        return self.normalize(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rew, term, trunc, info = self.env.step(actions)
        if self.update:
            self.rms.update(obs)
        if "final_obs" in info:
            info = {**info, "final_obs": self.normalize(info["final_obs"])}
        return self.normalize(obs), rew, term, trunc, info

    def state_dict(self) -> dict[str, Any]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)


class NormalizeReward(VecEnvWrapper):
    """Rewards divided by the running std of the discounted return (as SB3's VecNormalize), clipped."""

    def __init__(self, env: VecEnv, gamma: float = 0.99, clip: float = 10.0, epsilon: float = 1e-8,
                 update: bool = True) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"NormalizeReward: gamma={gamma} must be in [0, 1]")
        super().__init__(env)
        self.gamma, self.clip, self.epsilon, self.update = float(gamma), float(clip), float(epsilon), bool(update)
        self.rms = RunningMeanStd(())
        self._returns = np.zeros(env.num_envs, np.float64)

    def reset(self, seed: int | None = None) -> Obs:
        self._returns[:] = 0.0
        return self.env.reset(seed)

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rew, term, trunc, info = self.env.step(actions)
        info = {"raw_reward": rew, **info}
        self._returns = self._returns * self.gamma + rew
        if self.update:
            self.rms.update(self._returns)
        self._returns[term | trunc] = 0.0
        scaled = np.clip(rew / np.sqrt(self.rms.var + self.epsilon), -self.clip, self.clip)
        return obs, scaled.astype(np.float32), term, trunc, info

    def state_dict(self) -> dict[str, Any]:
        return self.rms.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rms.load_state_dict(state)
