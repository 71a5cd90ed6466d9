"""One factory for every environment: ``make(env_id, num_envs, seed, **kwargs) -> VecEnv``.

The env id picks its family (``envs.families``): ``procgen:<game>[+<game>...]``, one of our in-context
tasks ``srwm_rl/...``, or any other Gymnasium id (also ``module:Env-v0``). Common kwargs:
``trial_episodes=K`` (K episodes per trial on one task or one Procgen level, see ``envs.trials``); the
family's own options (``family_of(env_id).options``) and, for Gymnasium ids, the env's constructor
kwargs.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from envs.api import VecEnv
from envs.families import GYMNASIUM, PROCGEN, TASKS, EnvFamily
from envs.meta import META_ENVS
from envs.procgen_env import GAMES

# Looked up in order; the first family that claims an id owns it (Gymnasium claims every id).
FAMILIES: tuple[EnvFamily, ...] = (PROCGEN, TASKS, GYMNASIUM)


def family_of(env_id: str) -> EnvFamily:
    """The family that owns ``env_id``."""
    return next(f for f in FAMILIES if f.claims(env_id))


def make(env_id: str, num_envs: int, seed: int | None = None, **kwargs: Any) -> VecEnv:
    """Build ``num_envs`` envs of ``env_id`` behind the VecEnv protocol (see the module docstring)."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} is not valid; expected an integer >= 1")
    return family_of(env_id).make(env_id, num_envs, seed, **kwargs)


def known_env_ids(include_gymnasium: bool = True) -> list[str]:
    """Our in-context tasks, every ``procgen:<game>``, and (optionally) every Gymnasium id."""
    ids = list(META_ENVS) + [f"procgen:{g}" for g in GAMES]
    if include_gymnasium:
        ids += sorted(k for k in gymnasium.registry if k not in META_ENVS)
    return ids


def describe_envs() -> str:
    """A few lines for ``--help``: our tasks with one-line descriptions, then the other families."""
    lines = [f"  {env_id:28s} {desc}" for env_id, (_, _, desc) in META_ENVS.items()]
    lines += [f"  {f.summary}" for f in FAMILIES if f is not TASKS]
    return "\n".join(lines)
