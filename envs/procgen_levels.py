"""Procgen with a level chosen per env and kept for as long as asked: the base of Procgen trials.

Each env is its own ``ProcgenGym3Env(num=1, num_levels=1, start_level=level)`` so that gym3's
autoreset replays the same level. When an episode ends and the env was not told to keep its task
(``keep_task_on_reset``), a new level is drawn uniformly from ``[start_level, start_level +
num_levels)`` (``num_levels=0``: any level in ``[0, 2^31)``) and that env is re-created (about 1 ms).
Stepping N single envs costs N Python calls: ~20k steps/s for 64 envs here, against ~65k for one
batched env, acceptable because trials are for evaluation and in-context studies, not the hot path.

Same info keys and end conventions as ``envs.procgen_env.ProcgenVecEnv``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.api import EpisodeTracker, StepResult, VecEnv, spawn_seeds, validate_actions
from envs.procgen_env import (ACTION_NAMES, ACTION_SPACE, OBSERVATION_SPACE, check_options, procgen_env_class,
                              read_info, split_counts)


class ProcgenLevelVecEnv(VecEnv):
    """N single-level Procgen envs; a new level per env only when its task is not kept."""

    observation_space = OBSERVATION_SPACE
    action_space = ACTION_SPACE

    def action_names(self) -> list[str] | None:
        return list(ACTION_NAMES)

    def __init__(self, games: str | list[str], num_envs: int, seed: int | None = None, **options: Any) -> None:
        self.games = [games] if isinstance(games, str) else list(games)
        self.options = check_options(self.games, options)
        if self.options["distribution_mode"] == "exploration" or self.options["use_sequential_levels"]:
            raise ValueError("procgen trials need a fixed level: distribution_mode='exploration' and "
                             "use_sequential_levels=True are not valid here")
        self._cls = procgen_env_class()
        self.num_envs = int(num_envs)
        self.game = np.repeat(np.array(self.games), split_counts(self.num_envs, len(self.games)))
        self._gym3_kwargs = {k: v for k, v in self.options.items()
                             if k not in ("num_levels", "start_level", "num_threads", "use_sequential_levels")}
        self._seed = seed
        self._envs: list[Any] = [None] * self.num_envs
        self._keep = np.zeros(self.num_envs, bool)
        self._started = False
        self._obs = np.zeros((self.num_envs, *OBSERVATION_SPACE.shape), np.uint8)

    def _draw_level(self) -> int:
        lo, n = self.options["start_level"], self.options["num_levels"]
        return int(self._rng.integers(lo, lo + n)) if n > 0 else int(self._rng.integers(0, 2**31 - 1))

    def _new_level(self, i: int) -> None:
        """Re-create env i on a freshly drawn level; its first observation goes to ``self._obs[i]``."""
        if self._envs[i] is not None:
            self._envs[i].close()
        self._level[i] = self._draw_level()
        env = self._cls(num=1, env_name=self.game[i], num_levels=1, start_level=int(self._level[i]),
                        rand_seed=int(self._rng.integers(2**31 - 1)), num_threads=0, **self._gym3_kwargs)
        self._obs[i] = env.observe()[1]["rgb"][0]
        self._envs[i] = env

    @property
    def first(self) -> np.ndarray:
        return self._first.copy()

    def keep_task_on_reset(self, keep: np.ndarray) -> None:
        """bool [N]: where True, env i replays its level after its current episode ends."""
        keep = np.asarray(keep, bool)
        if keep.shape != (self.num_envs,):
            raise ValueError(f"keep: expected shape ({self.num_envs},), got {keep.shape}")
        self._keep = keep.copy()

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is None and not self._started:
            seed = self._seed
        self._started = True
        self._rng = np.random.default_rng(spawn_seeds(seed, 1)[0])
        self._level = np.zeros(self.num_envs, np.int64)
        for i in range(self.num_envs):
            self._new_level(i)
        self._first = np.ones(self.num_envs, bool)
        self._tracker = EpisodeTracker(self.num_envs)
        return self._obs.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        if not self._started or self._envs[0] is None:
            raise RuntimeError("step() called before reset() or after close()")
        actions = validate_actions(actions, self.action_space, self.num_envs).astype(np.int32)
        for i, env in enumerate(self._envs):
            env.act(actions[i:i + 1])
        rew = np.zeros(self.num_envs, np.float32)
        done = np.zeros(self.num_envs, bool)
        complete = np.zeros(self.num_envs, bool)
        prev_level = self._level.copy()
        for i, env in enumerate(self._envs):
            r, ob, f = env.observe()
            rew[i], done[i] = r[0], f[0]
            self._obs[i] = ob["rgb"][0]
            if f[0]:
                complete[i] = bool(read_info(env)["prev_level_complete"][0])
                if not self._keep[i]:
                    self._new_level(i)
        self._first = done
        info = self._tracker.update(rew, done)
        info.update(level_seed=self._level.copy(), prev_level_seed=prev_level, level_complete=complete,
                    game=self.game)
        return self._obs.copy(), rew, done.copy(), np.zeros(self.num_envs, bool), info

    def get_frames(self) -> np.ndarray:
        return self._obs.copy()

    def close(self) -> None:
        for env in self._envs:
            if env is not None:
                env.close()
        self._envs = [None] * self.num_envs
