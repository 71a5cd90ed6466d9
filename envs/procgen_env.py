"""Procgen through gym3 directly (``procgen.ProcgenGym3Env``), one game or several in one batch.

gym3 already autoresets on the same step and marks the new episode's first observation with
``first``, which is exactly our convention, so the adapter adds little: action checks, episode
statistics, level seeds and game names as arrays.

* Observations: uint8 ``[N, 64, 64, 3]`` (the ``rgb`` key); ``get_frames()`` returns them (no
  ``render_mode`` on the training env, which would cost ~10x).
* Ends: Procgen does not tell a time-out (1000 steps in most games) from a death or a success, and the
  last frame of an ended episode is not observable, so every end is ``terminated``, ``truncated`` is
  always False and ``info["final_obs"]`` is never set (as in the Procgen paper's PPO baselines).
* ``info``: ``level_seed`` int64 [N], the level of the episode the RETURNED obs belongs to;
  ``prev_level_seed`` int64 [N], the level of the episode that just ended where ``episode_done``
  (equal to ``level_seed`` elsewhere); ``level_complete`` bool [N], whether the ended episode reached
  its goal (False where not done); ``game`` str [N].
* Several games: one ``ProcgenGym3Env`` per game, envs split as evenly as possible (the first games get
  one more when N is not a multiple), concatenated in the order given.
"""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium
import numpy as np

from envs.api import EpisodeTracker, StepResult, VecEnv, spawn_seeds, validate_actions

INSTALL_HINT = "pip install procgen2  (the Python 3.11 build of procgen 0.10.7; needs numpy<2, gym<1.0, gym3)"
GAMES = ("bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
         "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot")
# Modes beyond easy/hard, per game: checked in the C++ (game.cpp) and procgen.env.EXPLORATION_LEVEL_SEEDS.
_SPECIAL_MODES = {
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
    "exploration": ("caveflyer", "climber", "coinrun", "heist", "jumper", "leaper", "maze", "ninja"),
}
OPTIONS: dict[str, Any] = {  # ProcgenGym3Env options we pass through, with procgen's defaults
    "num_levels": 0, "start_level": 0, "distribution_mode": "hard", "use_sequential_levels": False,
    "center_agent": True, "use_backgrounds": True, "use_monochrome_assets": False,
    "restrict_themes": False, "use_generated_assets": False, "paint_vel_info": False, "num_threads": 4,
}
OBSERVATION_SPACE = gymnasium.spaces.Box(0, 255, (64, 64, 3), np.uint8)
ACTION_SPACE = gymnasium.spaces.Discrete(15)


def procgen_env_class() -> type:
    """``procgen.ProcgenGym3Env``, or an ImportError that says how to install it."""
    import contextlib
    import io
    import sys

    captured = io.StringIO()
    try:
        # procgen imports the old ``gym``, which prints a 4-line "Gym has been unmaintained" notice to
        # stderr on import; we use Gymnasium, so that notice is dropped (anything else is passed on)
        with contextlib.redirect_stderr(captured):
            from procgen import ProcgenGym3Env
    except ImportError as err:
        raise ImportError(f"Procgen is not installed: {INSTALL_HINT}") from err
    finally:
        rest = captured.getvalue()
        if "Gym has been unmaintained" in rest:
            rest = "\n".join(line for line in rest.splitlines()
                             if not _is_gym_notice(line)).strip("\n")
        if rest:
            print(rest, file=sys.stderr)
    return ProcgenGym3Env


def _is_gym_notice(line: str) -> bool:
    return any(part in line for part in ("Gym has been unmaintained", "Please upgrade to Gymnasium",
                                         "simply replace 'import gym'", "gymnasium.farama.org/introduction/migration"))


def valid_modes(game: str) -> list[str]:
    """The distribution modes ``game`` supports."""
    return ["easy", "hard"] + [mode for mode, games in _SPECIAL_MODES.items() if game in games]


def check_game(game: str) -> str:
    """ValueError naming the valid games (and the closest ones) unless ``game`` is a Procgen game."""
    if game not in GAMES:
        close = difflib.get_close_matches(game, GAMES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"procgen game {game!r} is not valid.{hint} Valid games: {', '.join(GAMES)}")
    return game


def check_options(games: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """Validate option names, the distribution mode per game, and level ranges; returns the full set."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"procgen options {unknown} are not valid; allowed: {', '.join(OPTIONS)}")
    full = {**OPTIONS, **options}
    for game in games:
        check_game(game)
        if full["distribution_mode"] not in valid_modes(game):
            raise ValueError(f"distribution_mode={full['distribution_mode']!r} is not valid for procgen game "
                             f"{game!r}; allowed: {', '.join(valid_modes(game))}")
    for name in ("num_levels", "start_level"):
        value = full[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**31:
            raise ValueError(f"{name}={value!r} is not valid; expected an integer in [0, 2^31)")
    if full["distribution_mode"] == "exploration" and ("num_levels" in options or "start_level" in options):
        raise ValueError("num_levels/start_level are not valid with distribution_mode='exploration' "
                         "(it fixes one level per game)")
    return full


def gym3_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``ProcgenGym3Env`` (exploration mode must not get a level range)."""
    if options["distribution_mode"] == "exploration":
        return {k: v for k, v in options.items() if k not in ("num_levels", "start_level")}
    return dict(options)


def split_counts(num_envs: int, num_games: int) -> list[int]:
    """Envs per game, as even as possible, the first games taking the remainder."""
    if num_envs < num_games:
        raise ValueError(f"num_envs={num_envs} is not valid for {num_games} games; need at least one env per game")
    return [len(part) for part in np.array_split(np.arange(num_envs), num_games)]


def read_info(env: Any) -> dict[str, np.ndarray]:
    """gym3's per-env info as batched arrays, read from its buffers after ``observe()``.

    ``env.get_info()`` builds a list of dicts (and observes again); the buffers hold the same values.
    """
    buffers = getattr(env, "_info", None)
    if isinstance(buffers, dict) and "level_seed" in buffers:
        return {k: np.array(v) for k, v in buffers.items()}
    infos = env.get_info()
    return {k: np.array([d[k] for d in infos]) for k in infos[0]}


# Procgen's 15 actions: its key combinations (procgen.env.ProcgenGym3Env.get_combos), named
ACTION_NAMES = ["LEFT+DOWN", "LEFT", "LEFT+UP", "DOWN", "NOOP", "UP", "RIGHT+DOWN", "RIGHT", "RIGHT+UP",
                "D", "A", "W", "S", "Q", "E"]


class ProcgenVecEnv(VecEnv):
    """Procgen game(s) as a VecEnv (see the module docstring). ``games``: one name or several."""

    observation_space = OBSERVATION_SPACE
    action_space = ACTION_SPACE

    def action_names(self) -> list[str] | None:
        return list(ACTION_NAMES)

    def __init__(self, games: str | list[str], num_envs: int, seed: int | None = None, **options: Any) -> None:
        self.games = [games] if isinstance(games, str) else list(games)
        self.options = check_options(self.games, options)
        self._cls = procgen_env_class()
        self.num_envs = int(num_envs)
        self.counts = split_counts(self.num_envs, len(self.games))
        self.game = np.repeat(np.array(self.games), self.counts)
        self._seed_rng = np.random.default_rng(seed)  # seeds of later reset(None) calls: reproducible too
        self._envs: list[Any] = []
        self._create(seed)

    def _create(self, seed: int | None) -> None:
        for env in self._envs:
            env.close()
        kwargs = gym3_kwargs(self.options)
        self._envs = [self._cls(num=n, env_name=g, rand_seed=s, **kwargs)
                      for g, n, s in zip(self.games, self.counts, spawn_seeds(seed, len(self.games)))]
        if len(self._envs) > 1:
            # Several games: gym3 would copy each game's buffers and we would copy again to concatenate;
            # letting observe() return its buffers (gym3's reuse_arrays) leaves one copy, as for one game.
            for env in self._envs:
                env._reuse_arrays = True
        self._created_seed, self._fresh = seed, True
        self._tracker = EpisodeTracker(self.num_envs)
        parts = [env.observe() for env in self._envs]
        self._obs = self._cat([p[1]["rgb"] for p in parts])
        self._first = np.ones(self.num_envs, bool)
        self._level = self._cat([read_info(env)["level_seed"] for env in self._envs]).astype(np.int64)

    def _cat(self, arrays: list[np.ndarray]) -> np.ndarray:
        """One batch from the games' arrays: always a fresh array the caller may keep."""
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    @property
    def first(self) -> np.ndarray:
        return self._first.copy()

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Procgen cannot reset in place: the gym3 envs are re-created unless untouched since creation.

        ``seed=None`` re-creates them with a seed drawn from the factory seed's generator.
        """
        if not (self._fresh and (seed is None or seed == self._created_seed)):
            self._create(int(self._seed_rng.integers(2**31)) if seed is None else seed)
        self._fresh = False
        return self._obs

    def step(self, actions: np.ndarray) -> StepResult:
        if not self._envs:
            raise RuntimeError("step() called on a closed env")
        actions = validate_actions(actions, self.action_space, self.num_envs).astype(np.int32)
        self._fresh = False
        start = 0
        for env, n in zip(self._envs, self.counts):  # act on every game first: they step in parallel
            env.act(actions[start:start + n])
            start += n
        parts = [env.observe() for env in self._envs]
        infos = [read_info(env) for env in self._envs]
        rew = self._cat([p[0] for p in parts]).astype(np.float32, copy=False)
        self._obs = self._cat([p[1]["rgb"] for p in parts])
        done = self._cat([p[2] for p in parts]).astype(bool)
        self._first = done
        level = self._cat([i["level_seed"] for i in infos]).astype(np.int64)
        info = self._tracker.update(rew, done)
        info["level_seed"] = level
        info["prev_level_seed"] = np.where(done, self._level, level)
        info["level_complete"] = done & self._cat([i["prev_level_complete"] for i in infos]).astype(bool)
        info["game"] = self.game
        self._level = level
        return self._obs, rew, done.copy(), np.zeros(self.num_envs, bool), info

    def get_frames(self) -> np.ndarray:
        """The current observations, uint8 [N, 64, 64, 3]."""
        return self._obs

    def close(self) -> None:
        for env in self._envs:
            env.close()
        self._envs = []
