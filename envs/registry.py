"""One factory for every environment: ``make(env_id, num_envs, seed, **kwargs) -> VecEnv``.

Env ids:
* ``procgen:<game>`` or ``procgen:<game1>+<game2>+...`` (several games in one batch);
* any Gymnasium id, including ``module:Env-v0`` and our in-context tasks ``srwm_rl/...``.

Schemes (the part before ``:``) are looked up in ``SCHEMES``; anything else goes to Gymnasium.
Common kwargs: ``trial_episodes=K`` (K episodes per trial on one task or one Procgen level, see
``envs.trials``); Gymnasium: ``vectorization="sync"|"async"`` and the env's own kwargs (e.g.
``task_split``); Procgen: the options in ``envs.procgen_env.OPTIONS``.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable

import gymnasium

from envs.api import VecEnv
from envs.gymnasium_env import make_gymnasium
from envs.meta import META_ENVS
from envs.procgen_env import GAMES, ProcgenVecEnv, check_game
from envs.trials import TrialVecEnv

Factory = Callable[..., VecEnv]


def _make_procgen(name: str, num_envs: int, seed: int | None, trial_episodes: int | None = None,
                  **options: Any) -> VecEnv:
    games = name.split("+")
    for game in games:
        check_game(game)
    if trial_episodes is None:
        return ProcgenVecEnv(games, num_envs, seed, **options)
    from envs.procgen_levels import ProcgenLevelVecEnv

    return TrialVecEnv(ProcgenLevelVecEnv(games, num_envs, seed, **options), trial_episodes)


def _check_gymnasium_id(env_id: str) -> None:
    """Import ``module:`` prefixes, then ValueError with close matches unless the id is registered."""
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"env_id={env_id!r}: cannot import module {module!r} ({err})") from err
    if name not in gymnasium.registry:
        close = difflib.get_close_matches(name, known_env_ids(), n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(f"env_id={env_id!r} is not a registered environment.{hint} "
                         f"See envs.known_env_ids() for the full list.")


def _make_gymnasium(env_id: str, num_envs: int, seed: int | None, trial_episodes: int | None = None,
                    **kwargs: Any) -> VecEnv:
    _check_gymnasium_id(env_id)
    env = make_gymnasium(env_id, num_envs, seed, **kwargs)
    return env if trial_episodes is None else TrialVecEnv(env, trial_episodes)


# scheme -> factory(name_after_scheme, num_envs, seed, **kwargs)
SCHEMES: dict[str, Factory] = {"procgen": _make_procgen}


def make(env_id: str, num_envs: int, seed: int | None = None, **kwargs: Any) -> VecEnv:
    """Build ``num_envs`` envs of ``env_id`` behind the VecEnv protocol (see the module docstring)."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs={num_envs!r} is not valid; expected an integer >= 1")
    scheme, _, rest = env_id.partition(":")
    if rest and scheme in SCHEMES:
        return SCHEMES[scheme](rest, num_envs, seed, **kwargs)
    return _make_gymnasium(env_id, num_envs, seed, **kwargs)


def known_env_ids(include_gymnasium: bool = True) -> list[str]:
    """Our in-context tasks, every ``procgen:<game>``, and (optionally) every Gymnasium id."""
    ids = list(META_ENVS) + [f"procgen:{g}" for g in GAMES]
    if include_gymnasium:
        ids += sorted(k for k in gymnasium.registry if k not in META_ENVS)
    return ids


def describe_envs() -> str:
    """A few lines for ``--help``: our tasks with one-line descriptions, Procgen, Gymnasium."""
    lines = [f"  {env_id:28s} {desc}" for env_id, (_, _, desc) in META_ENVS.items()]
    lines.append(f"  procgen:<game>[+<game>...]   games: {', '.join(GAMES)}")
    lines.append("  <gymnasium id> or module:Env-v0   any registered Gymnasium environment")
    return "\n".join(lines)
