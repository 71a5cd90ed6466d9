"""A deterministic counting VecEnv for tests: ``first`` falls at known steps, observations say where.

``CountingEnv(episode_lengths=[3, 5])``: env i's episodes last ``episode_lengths[i]`` steps. The obs of
env i is float32 ``[t, i, k]``: ``t`` the step index within its current episode (0 at the first obs),
``i`` the env index, ``k`` the number of steps since ``reset()``. So after the k-th ``step()``
(k = 1, 2, ...), ``obs[i] == [k % L_i, i, k]`` and ``first[i] == (k % L_i == 0)``. The reward of a step is ``float(action) + 0.01 * t_before`` (t before
the step), which lets a test check that actions reach the right env at the right time. An episode
ends by ``terminated`` unless ``truncate=True``. ``final_obs`` holds ``[L_i, i, k]`` for ended episodes.
Tasks are counted too: ``keep_task_on_reset`` is honoured and ``info["task"]`` int64 [N] is the
number of new tasks env i has started (so trial tests can check when tasks change).
"""

from __future__ import annotations

from typing import Sequence

import gymnasium
import numpy as np

from envs.api import EpisodeTracker, StepResult, VecEnv, validate_actions


class CountingEnv(VecEnv):
    """Counting env (see the module docstring). ``num_actions`` discrete actions; obs float32 [N, 3]."""

    def __init__(self, episode_lengths: Sequence[int], num_actions: int = 4, truncate: bool = False) -> None:
        lengths = np.asarray(episode_lengths, np.int64)
        if lengths.ndim != 1 or lengths.size == 0 or np.any(lengths < 1):
            raise ValueError(f"episode_lengths={list(episode_lengths)} is not valid; expected integers >= 1")
        self.lengths = lengths
        self.num_envs = len(lengths)
        self.truncate = bool(truncate)
        self.observation_space = gymnasium.spaces.Box(0.0, np.inf, (3,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(num_actions)
        self._t = np.zeros(self.num_envs, np.int64)
        self._k = 0
        self._task = np.zeros(self.num_envs, np.int64)
        self._keep = np.zeros(self.num_envs, bool)
        self._first = np.ones(self.num_envs, bool)
        self._tracker = EpisodeTracker(self.num_envs)

    def _obs(self, t: np.ndarray) -> np.ndarray:
        k = np.full(self.num_envs, self._k)
        return np.stack([t, np.arange(self.num_envs), k], axis=1).astype(np.float32)

    @property
    def first(self) -> np.ndarray:
        return self._first.copy()

    def keep_task_on_reset(self, keep: np.ndarray) -> None:
        self._keep = np.asarray(keep, bool).copy()

    def reset(self, seed: int | None = None) -> np.ndarray:
        self._t[:] = 0
        self._k = 0
        self._task += 1
        self._first[:] = True
        self._tracker.reset()
        return self._obs(self._t)

    def step(self, actions: np.ndarray) -> StepResult:
        actions = validate_actions(actions, self.action_space, self.num_envs)
        rew = (actions + 0.01 * self._t).astype(np.float32)
        self._t += 1
        self._k += 1
        done = self._t >= self.lengths
        final = self._obs(self._t)
        self._task += done & ~self._keep
        self._t[done] = 0
        self._first = done
        info = self._tracker.update(rew, done)
        info.update(final_obs=final, task=self._task.copy())
        no = np.zeros(self.num_envs, bool)
        return self._obs(self._t), rew, (no if self.truncate else done.copy()), (done.copy() if self.truncate else no), info

    def close(self) -> None:
        pass


# ---- every observation and action space, on one small task ------------------------------------------

OBS_KINDS = ("box", "discrete", "multidiscrete", "multibinary", "dict", "tuple")
ACTION_KINDS = ("discrete", "multidiscrete", "multibinary", "box")


class SpacesEnv(gymnasium.Env):
    """Match a hidden 2-digit target (digits in 0..2; binary kinds: bits), shown in the observation.

    ``obs``: how the target is shown - box (float32 [2]), discrete (one index of 9), multidiscrete
    ([3, 3]), multibinary (6 bits, one-hot per digit), dict ({"digits": MultiDiscrete, "pos": Box
    [1]}), tuple ((Discrete(3), Discrete(3)))). ``action``: discrete (index of 9), multidiscrete
    ([3, 3]), multibinary (2 bits: the digits' parities), box ([-1, 1]^2, digit d at -1 + d). Reward
    per step: the fraction of digits matched (box: 1 - mean |a - target| / 2). A new target every
    step; ``episode_length`` steps per episode. Registered as ``envs.testing:SpacesTest-v0``.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, obs: str = "box", action: str = "discrete", episode_length: int = 8,
                 render_mode: str | None = None) -> None:
        if obs not in OBS_KINDS or action not in ACTION_KINDS:
            raise ValueError(f"obs={obs!r} must be one of {OBS_KINDS}, action={action!r} one of {ACTION_KINDS}")
        self.obs_kind, self.action_kind, self.episode_length = obs, action, int(episode_length)
        self.render_mode = render_mode
        d3 = gymnasium.spaces.Discrete(3)
        self.observation_space = {
            "box": gymnasium.spaces.Box(0.0, 2.0, (2,), np.float32), "discrete": gymnasium.spaces.Discrete(9),
            "multidiscrete": gymnasium.spaces.MultiDiscrete([3, 3]), "multibinary": gymnasium.spaces.MultiBinary(6),
            "dict": gymnasium.spaces.Dict({"digits": gymnasium.spaces.MultiDiscrete([3, 3]),
                                           "pos": gymnasium.spaces.Box(0.0, 1.0, (1,), np.float32)}),
            "tuple": gymnasium.spaces.Tuple((d3, d3))}[obs]
        self.action_space = {
            "discrete": gymnasium.spaces.Discrete(9), "multidiscrete": gymnasium.spaces.MultiDiscrete([3, 3]),
            "multibinary": gymnasium.spaces.MultiBinary(2),
            "box": gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)}[action]
        self._target = np.zeros(2, np.int64)
        self._t = 0

    def _obs(self):
        g = self._target
        return {"box": g.astype(np.float32), "discrete": int(g[0] * 3 + g[1]), "multidiscrete": g.copy(),
                "multibinary": np.eye(3, dtype=np.int8)[g].reshape(-1),
                "dict": {"digits": g.copy(), "pos": np.array([self._t / self.episode_length], np.float32)},
                "tuple": (int(g[0]), int(g[1]))}[self.obs_kind]

    def _reward(self, a) -> float:
        g = self._target
        if self.action_kind == "discrete":
            return float(np.mean([int(a) // 3, int(a) % 3] == g))
        if self.action_kind == "multidiscrete":
            return float(np.mean(np.asarray(a) == g))
        if self.action_kind == "multibinary":
            return float(np.mean(np.asarray(a) == g % 2))
        return float(1.0 - np.mean(np.abs(np.asarray(a, np.float64) - (g - 1.0))) / 2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._target = self.np_random.integers(0, 3, 2)
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(np.asarray(action, self.action_space.dtype)
                                          if self.action_kind != "discrete" else int(action)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        reward = self._reward(action)
        self._t += 1
        self._target = self.np_random.integers(0, 3, 2)
        return self._obs(), reward, False, self._t >= self.episode_length, {}

    def render(self):
        img = np.zeros((24, 48, 3), np.uint8)
        img[:, :24, 0] = 120 * self._target[0]
        img[:, 24:, 1] = 120 * self._target[1]
        return img


if "SpacesTest-v0" not in gymnasium.registry:
    gymnasium.register("SpacesTest-v0", entry_point=SpacesEnv)
