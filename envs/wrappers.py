"""VecEnv -> VecEnv wrappers: previous action and reward as inputs, reward clipping, normalisation, an
episodic novelty bonus.

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


PREV_KEYS = ("prev_action", "prev_reward")


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
        extra = dict(zip(PREV_KEYS, (self._act_space, gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32))))
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


class NoveltyBonus(VecEnvWrapper):
    """Training reward + ``bonus`` on every step that arrives on an observation not yet seen in the
    current episode (with trials: the trial), until the episode's first positive reward: a first-visit,
    episodic count-based bonus for the search phase of sparse-reward tasks. Once the task has paid,
    nothing is left to search: the bonus stops, so it never competes with exploiting what was found.

    Goal-agnostic: it rewards covering states, never a particular one, so an agent meta-trained with it
    is pushed to search states its training tasks never rewarded. Wrap it OUTSIDE ``PrevActionReward``
    so that the policy's previous-reward input excludes it; ``info["raw_reward"]`` keeps the env's own
    reward and the episode returns stay raw, so no reported number includes it.

    Observations are compared exactly (their bytes; a Dict's entries other than the previous action and
    reward), so this suits discrete-state envs such as the grid tasks; continuous observations are
    almost never repeated and get the bonus on nearly every step. The *arrival* observation of a step
    that ends an (inner) episode is ``info["final_obs"]`` where the env reports it, else the returned
    one (an env that cannot report it, Procgen, earns nothing on that step). The first observation of an
    episode counts as seen and earns nothing.

    ``rarity_cap`` > 0 scales each bonus by ``min(sqrt(mean count / count), rarity_cap)``, where a state's
    count is how many episodes so far earned its bonus, the mean over the states seen: states the agent
    seldom covers pay more, so a search that skips the states its training tasks never rewarded is
    pushed to cover them too. The counts live in this wrapper (one per environment process), are not
    checkpointed and rebuild within seconds of a resume.
    """

    def __init__(self, env: VecEnv, bonus: float, rarity_cap: float = 0.0) -> None:
        if not (np.isfinite(bonus) and bonus > 0):
            raise ValueError(f"NoveltyBonus: bonus={bonus!r} must be a finite number > 0")
        if not (np.isfinite(rarity_cap) and rarity_cap >= 0):
            raise ValueError(f"NoveltyBonus: rarity_cap={rarity_cap!r} must be a finite number >= 0 (0 = off)")
        super().__init__(env)
        self.bonus, self.rarity_cap = float(bonus), float(rarity_cap)
        self._seen: list[set[bytes]] = [set() for _ in range(self.num_envs)]
        self._paid = np.zeros(self.num_envs, bool)  # a positive reward in this episode already
        self._visits: dict[bytes, int] = {}
        self._total = 0

    def _weight(self, key: bytes) -> float:
        """Rarity: sqrt(mean first-visit count / this observation's), capped (1 without rarity)."""
        if self.rarity_cap <= 0:
            return 1.0
        mean = self._total / max(len(self._visits), 1)
        return min(np.sqrt(mean / self._visits.get(key, 1)), self.rarity_cap)

    def _count(self, key: bytes) -> None:
        if self.rarity_cap > 0:
            self._visits[key] = self._visits.get(key, 0) + 1
            self._total += 1

    @staticmethod
    def _key(obs: Obs, i: int) -> bytes:
        if isinstance(obs, dict):
            return b"".join(np.ascontiguousarray(obs[k][i]).tobytes() for k in sorted(obs) if k not in PREV_KEYS)
        if isinstance(obs, tuple):
            return b"".join(np.ascontiguousarray(part[i]).tobytes() for part in obs)
        return np.ascontiguousarray(obs[i]).tobytes()

    def reset(self, seed: int | None = None) -> Obs:
        obs = self.env.reset(seed)
        self._seen = [{self._key(obs, i)} for i in range(self.num_envs)]
        self._paid[:] = False
        return obs

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rew, term, trunc, info = self.env.step(actions)
        first = self.env.first
        ended = np.asarray(info.get("inner_episode_done", term | trunc), bool)
        final = info.get("final_obs")
        bonus = np.zeros(self.num_envs, np.float64)
        for i in range(self.num_envs):
            here = self._key(obs, i)
            arrival = here if not ended[i] else None if final is None else self._key(final, i)
            if arrival is not None and arrival not in self._seen[i] and not self._paid[i]:
                bonus[i] = self.bonus * self._weight(arrival)
                self._count(arrival)
            self._paid[i] = not first[i] and (self._paid[i] or rew[i] > 0)
            if first[i]:
                self._seen[i] = {here}
            else:
                self._seen[i].update((here, arrival) if arrival is not None else (here,))
        info = {"raw_reward": rew, **info}
        return obs, (rew + bonus).astype(np.float32), term, trunc, info
