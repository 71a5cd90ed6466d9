"""CartPole without velocities: the observation keeps cart position and pole angle only (float32 [2]).

The classic memory benchmark (sb3-contrib's RecurrentPPO test): a policy must infer the velocities
from successive observations. Dynamics, reward and termination are Gymnasium's ``CartPoleEnv``;
registered with ``max_episode_steps=500`` (truncated at 500, as CartPole-v1).

It has no task distribution: it is a memory task, not an in-context one. ``task_split`` is accepted
(and checked) so that every ``srwm_rl/`` id takes the same options, but both splits are the same
single task; ``reset(options=...)`` ignores ``keep_task``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from envs.meta.base import TASK_SPLITS, check_choice

KEPT = np.array([0, 2])  # cart position, pole angle


class CartPoleNoVel(gymnasium.Env):
    """CartPole whose observation is ``[x, theta]`` (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, task_split: str = "train", render_mode: str | None = None) -> None:
        self.task_split = check_choice("task_split", task_split, TASK_SPLITS)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={render_mode!r} is not valid; allowed: None, 'rgb_array'")
        self.render_mode = render_mode
        self._env = CartPoleEnv()
        full = self._env.observation_space
        self.observation_space = gymnasium.spaces.Box(full.low[KEPT], full.high[KEPT], dtype=np.float32)
        self.action_space = self._env.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed)
        return obs[KEPT], info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self._env.step(action)
        return obs[KEPT], reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """uint8 RGB [100, 200, 3]: cart (white) and pole (tan); drawn with numpy (no pygame)."""
        if self.render_mode != "rgb_array":
            return None
        x, _, theta, _ = self._env.state
        height, width, scale = 100, 200, 200 / (2 * self._env.x_threshold)
        img = np.full((height, width, 3), 40, np.uint8)
        cx, cy = int(width / 2 + x * scale), 80
        img[cy - 5:cy + 5, max(cx - 12, 0):max(cx + 12, 0)] = 255
        pole = 2 * self._env.length * scale
        for s in np.linspace(0.0, 1.0, 50):
            r, c = int(cy - s * pole * np.cos(theta)), int(cx + s * pole * np.sin(theta))
            if 0 <= r < height and 0 <= c < width:
                img[r, max(c - 1, 0):c + 2] = (202, 152, 101)
        return img

    def close(self) -> None:
        self._env.close()
