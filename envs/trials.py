"""Trials: K episodes on one task (or one Procgen level), seen by the agent as ONE episode (RL^2).

* ``first`` is True only at a trial's start; ``terminated`` only at its end (after the K-th inner
  episode, whatever ended that one: the trial is over by definition, nothing is left to bootstrap),
  ``truncated`` is always False. Inner episode ends are not value cut points: the agent maximises the
  whole trial's return.
* ``info["episode_done" | "episode_return" | "episode_length"]`` report whole trials.
* ``info["trial_episode"]`` int64 [N]: index within the trial of the episode the RETURNED obs belongs to
  (0 after a trial starts).
* ``info["inner_episode_done"]`` bool [N], ``info["inner_episode_return"]`` float64 [N] (NaN elsewhere),
  ``info["inner_episode_length"]`` int64 [N] (0 elsewhere), ``info["inner_episode_index"]`` int64 [N]
  (index within its trial of the inner episode that just ended, -1 elsewhere).
* Other info keys (``final_obs``, ``level_seed``, ``regret``, ...) pass through from the inner env.

The inner env must support ``keep_task_on_reset`` (``envs.api.SupportsKeepTask``): the Gymnasium adapter
with the in-context tasks, or ``envs.procgen_levels.ProcgenLevelVecEnv``.
"""

from __future__ import annotations

import numpy as np

from envs.api import EpisodeTracker, Obs, StepResult, SupportsKeepTask, VecEnv
from envs.wrappers import VecEnvWrapper


class TrialVecEnv(VecEnvWrapper):
    """Groups ``trial_episodes`` consecutive episodes on one task into one trial (module docstring)."""

    def __init__(self, env: VecEnv, trial_episodes: int) -> None:
        if isinstance(trial_episodes, bool) or not isinstance(trial_episodes, (int, np.integer)) or trial_episodes < 1:
            raise ValueError(f"trial_episodes={trial_episodes!r} is not valid; expected an integer >= 1")
        if not isinstance(env, SupportsKeepTask):
            raise TypeError(f"trials need an env that can keep its task across resets (keep_task_on_reset); "
                            f"{type(env).__name__} cannot")
        super().__init__(env)
        self.trial_episodes = int(trial_episodes)
        self._episode = np.zeros(self.num_envs, np.int64)
        self._first = np.ones(self.num_envs, bool)
        self._tracker = EpisodeTracker(self.num_envs)

    @property
    def first(self) -> np.ndarray:
        return self._first.copy()

    def _tell_keep(self) -> None:
        self.env.keep_task_on_reset(self._episode + 1 < self.trial_episodes)

    def reset(self, seed: int | None = None) -> Obs:
        obs = self.env.reset(seed)
        self._episode[:] = 0
        self._first = np.ones(self.num_envs, bool)
        self._tracker.reset()
        self._tell_keep()
        return obs

    def step(self, actions: np.ndarray) -> StepResult:
        obs, rew, term, trunc, inner = self.env.step(actions)
        inner_done = term | trunc
        trial_done = inner_done & (self._episode + 1 >= self.trial_episodes)
        index = np.where(inner_done, self._episode, -1)
        self._episode = np.where(trial_done, 0, self._episode + inner_done)
        self._first = trial_done
        self._tell_keep()
        info = {k: v for k, v in inner.items() if not k.startswith("episode_")}
        info.update(inner_episode_done=inner["episode_done"], inner_episode_return=inner["episode_return"],
                    inner_episode_length=inner["episode_length"], inner_episode_index=index,
                    trial_episode=self._episode.copy())
        info.update(self._tracker.update(rew, trial_done))
        return obs, rew, trial_done.copy(), np.zeros(self.num_envs, bool), info
