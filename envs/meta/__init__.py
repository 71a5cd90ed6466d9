"""In-context tasks, registered with Gymnasium under ``srwm_rl/...`` on import.

``import envs`` (or ``envs.meta``) first; then ``gymnasium.make("srwm_rl/Bandit-v0")`` works, as does
``gymnasium.make("envs.meta:srwm_rl/Bandit-v0")`` without a prior import.
"""

from __future__ import annotations

import gymnasium

from envs.meta.bandit import BernoulliBandit
from envs.meta.base import TASK_SPLITS, MetaEnv
from envs.meta.cartpole import CartPoleNoVel
from envs.meta.darkroom import DarkKeyToDoor, DarkRoom
from envs.meta.tmaze import TMaze

# id -> (entry point, max_episode_steps or None, one-line description)
META_ENVS: dict[str, tuple[str, int | None, str]] = {
    "srwm_rl/Bandit-v0": ("envs.meta.bandit:BernoulliBandit", None,
                          "Bernoulli bandit, k=5 arms, 100 pulls per episode (RL^2)"),
    "srwm_rl/DarkRoom-v0": ("envs.meta.darkroom:DarkRoom", None,
                            "9x9 dark room, hidden goal, 20-step episodes (Algorithm Distillation)"),
    "srwm_rl/DarkKeyToDoor-v0": ("envs.meta.darkroom:DarkKeyToDoor", None,
                                 "9x9 dark room, hidden key then door, 50-step episodes"),
    "srwm_rl/TMaze-v0": ("envs.meta.tmaze:TMaze", None, "T-maze, cue at the start, decision at the end"),
    "srwm_rl/CartPoleNoVel-v0": ("envs.meta.cartpole:CartPoleNoVel", 500,
                                 "CartPole observing position and angle only (memory task)"),
    "srwm_rl/FewShot5Way1Shot-v0": ("envs.meta.fewshot:FewShotClassification", None,
                                    "5-way 1-shot glyph classification, delayed labels, action = label"),
    "srwm_rl/FewShot5Way5Shot-v0": ("envs.meta.fewshot:FewShot5Way5Shot", None,
                                    "5-way 5-shot glyph classification, delayed labels, action = label"),
    "srwm_rl/FewShotDigits5Way1Shot-v0": ("envs.meta.fewshot:FewShotDigits5Way1Shot", None,
                                          "5-way 1-shot on the real 8x8 digits (evaluation only, test split)"),
}


def register_all() -> None:
    """Register every in-context task with Gymnasium (idempotent)."""
    for env_id, (entry_point, max_steps, _) in META_ENVS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=max_steps)


register_all()

__all__ = ["META_ENVS", "TASK_SPLITS", "BernoulliBandit", "CartPoleNoVel", "DarkKeyToDoor", "DarkRoom",
           "MetaEnv", "TMaze", "register_all"]
