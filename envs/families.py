"""Environment families: everything the rest of the project needs to know about a kind of env id.

    PROCGEN    procgen:<game>[+<game>...]   level ranges, distribution modes, several games per batch
    TASKS      srwm_rl/<Task>-v0            in-context tasks with disjoint train and test task sets
    GYMNASIUM  any other Gymnasium id       also module:Env-v0; in-process or subprocess vectorisation

Each family declares
* ``options``: the names of the run-configuration fields its constructor takes (the library passes
  exactly these, by name, from the run's env configuration);
* ``eval_targets``: which environments a held-out evaluation runs on (training levels or unseen ones,
  train or test tasks), with a description of what was evaluated;
* ``shard``: the env id one actor of a distributed learner runs.
Adding a family is one record here and one entry in ``envs.registry.FAMILIES``.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import gymnasium

from envs.api import VecEnv
from envs.gymnasium_env import make_gymnasium
from envs.meta import META_ENVS, MetaEnv
from envs.procgen_env import GAMES, ProcgenVecEnv, check_game, valid_modes
from envs.trials import TrialVecEnv

PAPER_TEST_START = 1000     # the SRWM paper's unseen levels: blocks of 200 starting at 1000, 1200 and 1400
PAPER_TEST_LEVELS = 200
ALL_LEVELS = 2**31
SPLITS = ("train", "test")

# (env id, the family options that differ from training) per evaluated environment, and a description.
EvalTargets = tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]


@dataclass(frozen=True)
class EnvFamily:
    """What one family of env ids declares (see the module docstring)."""

    name: str
    summary: str
    claims: Callable[[str], bool]
    """Whether an env id belongs to this family."""
    make: Callable[..., VecEnv]
    """``make(env_id, num_envs, seed, trial_episodes=None, **options) -> VecEnv``."""
    options: tuple[str, ...]
    """Constructor options a run configuration provides, by field name."""
    eval_targets: Callable[..., EvalTargets]
    """``eval_targets(env_id, trained: dict of options, split, **overrides) -> (targets, description)``."""
    eval_overrides: tuple[str, ...] = ()
    """Keyword overrides ``eval_targets`` accepts (e.g. other games or level ranges)."""
    has_splits: bool = True
    """Whether its environments have training and held-out tasks or levels (``--split`` means something)."""
    shard: Callable[[str, int, int], str] = field(default=lambda env_id, actor, envs_per_actor: env_id)
    """``shard(env_id, actor, envs_per_actor)``: the env id that actor runs."""

    def targets(self, env_id: str, trained: dict[str, Any], split: str, **overrides: Any) -> EvalTargets:
        """``eval_targets`` with the split and the override names checked (ValueError naming them)."""
        if split not in SPLITS:
            raise ValueError(f"split={split!r}: must be 'train' or 'test'")
        given = sorted(k for k, v in overrides.items() if v is not None and v != [] and v != ())
        extra = [k for k in given if k not in self.eval_overrides]
        if extra:
            raise ValueError(f"{', '.join(extra)} apply to Procgen only; the checkpoint was trained on {env_id!r}")
        return self.eval_targets(env_id, trained, split, **{k: overrides[k] for k in given})


# ---- Procgen -------------------------------------------------------------------------------------

def _procgen_games(env_id: str) -> list[str]:
    return env_id.split(":", 1)[1].split("+")


def _make_procgen(env_id: str, num_envs: int, seed: Optional[int], trial_episodes: Optional[int] = None,
                  **options: Any) -> VecEnv:
    games = _procgen_games(env_id)
    for game in games:
        check_game(game)
    if trial_episodes is None:
        return ProcgenVecEnv(games, num_envs, seed, **options)
    from envs.procgen_levels import ProcgenLevelVecEnv

    return TrialVecEnv(ProcgenLevelVecEnv(games, num_envs, seed, **options), trial_episodes)


def _check_count(name: str, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        raise ValueError(f"{name}={v!r}: must be an integer >= 0")


def _level_range(start: int, num: int) -> tuple[int, int]:
    return (0, ALL_LEVELS) if num == 0 else (start, start + num)


def level_overlap(train: tuple[int, int], evaluated: tuple[int, int]) -> int:
    """How many levels of Procgen range (start, num_levels) ``evaluated`` are in ``train`` (num 0 = all)."""
    (a0, a1), (b0, b1) = _level_range(*train), _level_range(*evaluated)
    return max(0, min(a1, b1) - max(a0, b0))


def _procgen_targets(env_id: str, trained: dict[str, Any], split: str, games: Optional[Sequence[str]] = None,
                     start_level: Optional[int] = None, num_levels: Optional[int] = None,
                     distribution_mode: Optional[str] = None) -> EvalTargets:
    """``split="train"``: the training levels; ``"test"``: the 200 levels starting at 1000 (the paper's
    first unseen block). ``start_level``/``num_levels`` override either; ``games`` and
    ``distribution_mode`` default to the trained ones."""
    _check_count("start_level", start_level)
    _check_count("num_levels", num_levels)
    names = list(games) if games else _procgen_games(env_id)
    for g in names:
        check_game(g)
    mode = distribution_mode or trained["distribution_mode"]
    for g in names:
        if mode not in valid_modes(g):
            raise ValueError(f"distribution_mode={mode!r} is not valid for procgen game {g!r}; "
                             f"allowed: {', '.join(valid_modes(g))}")
    train_range = (trained["start_level"], trained["num_levels"])
    start, num = train_range if split == "train" else (PAPER_TEST_START, PAPER_TEST_LEVELS)
    start = start if start_level is None else int(start_level)
    num = num if num_levels is None else int(num_levels)
    if start + (num or 1) > ALL_LEVELS:
        raise ValueError(f"start_level={start}, num_levels={num}: levels must lie in [0, 2^31)")
    overlap = level_overlap(train_range, (start, num)) if mode == trained["distribution_mode"] else 0
    desc = {"env_id": env_id, "games": names, "start_level": start, "num_levels": num, "distribution_mode": mode,
            "train_levels": list(train_range), "overlap_levels": overlap}
    options = {"start_level": start, "num_levels": num, "distribution_mode": mode}
    return [(f"procgen:{g}", options) for g in names], desc


def _procgen_shard(env_id: str, actor: int, envs_per_actor: int) -> str:
    """A multi-game id with fewer envs per actor than games is dealt out round-robin over all
    environments (global env j plays game j mod G), so every game gets its share even with one env per
    actor (the paper's 48 x 1)."""
    games = _procgen_games(env_id)
    if len(games) == 1 or envs_per_actor >= len(games):
        return env_id
    mine = [games[(actor * envs_per_actor + e) % len(games)] for e in range(envs_per_actor)]
    return "procgen:" + "+".join(mine)


PROCGEN = EnvFamily(
    name="procgen", summary=f"procgen:<game>[+<game>...]   games: {', '.join(GAMES)}",
    claims=lambda env_id: env_id.startswith("procgen:"), make=_make_procgen,
    options=("num_levels", "start_level", "distribution_mode", "use_sequential_levels"),
    eval_targets=_procgen_targets, eval_overrides=("games", "start_level", "num_levels", "distribution_mode"),
    shard=_procgen_shard)


# ---- Gymnasium ids, and the in-context tasks among them ------------------------------------------

def import_env_module(module: str) -> None:
    """Import the ``module`` of a ``module:Env-v0`` id (it registers the env), from the installed packages
    and PYTHONPATH only: the current directory is left out of the search even where Python would put it
    in (``python -m``, a script run from it), so that an env id in a checkpoint from elsewhere never runs
    a file that happens to lie in the directory a command is started from."""
    here = {"", ".", os.getcwd()}
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in here and os.path.abspath(p) != os.getcwd()]
    try:
        importlib.import_module(module)
    finally:
        sys.path[:] = saved


def check_gymnasium_id(env_id: str) -> None:
    """Import ``module:`` prefixes (:func:`import_env_module`), then ValueError with close matches unless
    the id is registered."""
    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            import_env_module(module)
        except ImportError as err:
            raise ValueError(f"env_id={env_id!r}: cannot import module {module!r} ({err}); env modules are "
                             f"imported from the installed packages and PYTHONPATH, never from the current "
                             f"directory (add its directory to PYTHONPATH)") from err
    if name not in gymnasium.registry:
        close = difflib.get_close_matches(name, list(gymnasium.registry), n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(f"env_id={env_id!r} is not a registered environment.{hint} "
                         f"See envs.known_env_ids() for the full list.")


def _make_gymnasium(env_id: str, num_envs: int, seed: Optional[int], trial_episodes: Optional[int] = None,
                    **kwargs: Any) -> VecEnv:
    check_gymnasium_id(env_id)
    env = make_gymnasium(env_id, num_envs, seed, **kwargs)
    return env if trial_episodes is None else TrialVecEnv(env, trial_episodes)


def env_class(env_id: str) -> Optional[type]:
    """The class behind one of our registered tasks (``META_ENVS``), else None."""
    if env_id not in META_ENVS:
        return None
    module, cls = META_ENVS[env_id][0].split(":")
    return getattr(importlib.import_module(module), cls)


def draws_headless(env: gymnasium.Env) -> bool:
    """Whether ``env`` (unwrapped) is one of our registered envs, which draw their ``rgb_array`` frames
    with numpy (no display or pygame needed, unlike many other Gymnasium envs)."""
    ours = tuple(c for c in map(env_class, META_ENVS) if c is not None)
    return isinstance(env, ours) and "rgb_array" in env.metadata.get("render_modes", ())


def _is_task(env_id: str) -> bool:
    cls = env_class(env_id)
    return cls is not None and issubclass(cls, MetaEnv)


TASKS = EnvFamily(
    name="tasks", summary="srwm_rl/<Task>-v0   in-context tasks with disjoint train and test task sets",
    claims=_is_task, make=_make_gymnasium, options=("task_split",),
    eval_targets=lambda env_id, trained, split: ([(env_id, {"task_split": split})],
                                                 {"env_id": env_id, "task_split": split}))

GYMNASIUM = EnvFamily(
    name="gymnasium", summary="<gymnasium id> or module:Env-v0   any registered Gymnasium environment",
    claims=lambda env_id: True, make=_make_gymnasium, options=("vectorization",), has_splits=False,
    eval_targets=lambda env_id, trained, split: ([(env_id, {})], {"env_id": env_id, "task_split": None}))
