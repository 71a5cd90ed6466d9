"""Our VecEnv as a Stable-Baselines3 ``VecEnv``, so SB3's PPO and sb3-contrib's RecurrentPPO train on
exactly our tasks (baselines).

SB3 conventions produced here: ``dones = terminated | truncated``; for every done env its info dict
holds ``TimeLimit.truncated`` (truncated and not terminated), ``terminal_observation`` (the ended
episode's last obs, when the env reports ``final_obs``; SB3 only uses it to bootstrap truncations) and
``episode = {"r", "l", "t"}`` (what SB3's Monitor would log). Image observations stay channels-last;
SB3 adds its ``VecTransposeImage`` itself for CNN policies.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv as SB3VecEnv

from envs.api import Obs, VecEnv


def _row(obs: Obs, i: int) -> Any:
    return {k: _row(v, i) for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


class SB3VecEnvAdapter(SB3VecEnv):
    """Wraps ``venv`` (our protocol) as an SB3 VecEnv. ``render_mode="rgb_array"`` if it has frames."""

    def __init__(self, venv: VecEnv, render_mode: str | None = None) -> None:
        self.venv = venv
        self._render_mode = render_mode
        super().__init__(venv.num_envs, venv.observation_space, venv.action_space)
        self._actions: np.ndarray | None = None
        self._t0 = time.time()

    def reset(self) -> Obs:
        seed = self._seeds[0]
        obs = self.venv.reset(seed)
        self._reset_seeds()
        self._reset_options()
        self._t0 = time.time()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[Obs, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, rew, term, trunc, info = self.venv.step(self._actions)
        dones = term | trunc
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        final = info.get("final_obs")
        elapsed = round(time.time() - self._t0, 6)
        for i in np.flatnonzero(dones):
            infos[i]["TimeLimit.truncated"] = bool(trunc[i] and not term[i])
            if final is not None:
                infos[i]["terminal_observation"] = _row(final, i)
        for i in np.flatnonzero(info["episode_done"]):
            infos[i]["episode"] = {"r": float(info["episode_return"][i]), "l": int(info["episode_length"][i]),
                                   "t": elapsed}
        return obs, rew.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """Attributes are shared by the whole batch: the same value for each index."""
        value = self._render_mode if attr_name == "render_mode" else getattr(self.venv, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.venv.get_frames()
        return [None] * self.num_envs if frames is None else list(frames)


SB3VecEnv = SB3VecEnvAdapter  # the short name
