"""An algorithm is a record: what the commands need to know of it to train, resume, load and evaluate.

    ALGORITHM = Algorithm(name="ppo", summary="recurrent PPO", train=train, section="ppo", config=PPOConfig)

``train(run)`` is the algorithm proper, given a prepared :class:`srwm_rl.run.harness.Run` (seeding,
device, threads, resume, run directory, logging, checkpoints, signals and time limit are the
harness's). ``agents/registry.py`` lists the records; adding an algorithm is one file with its record
and one line there.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import gymnasium as gym

from srwm_rl.run.agent import build_policy
from srwm_rl.run.config import RunConfig
from srwm_rl.run.environment import make_env
from srwm_rl.run.harness import Run


def probe_env(cfg: RunConfig):
    """Build one environment of the run and reset it (no step taken), checking that its observation fits
    its observation space; a ValueError names what is wrong with it."""
    try:
        env = make_env(cfg.env, cfg.policy, cfg.seed, num_envs=1)
    except (ValueError, KeyError, ImportError) as e:
        raise ValueError(f"env.id={cfg.env.id!r}: {e}") from None
    try:
        check_reset(env)
    except ValueError as e:
        env.close()
        raise ValueError(f"env.id={cfg.env.id!r}: {e}") from None
    except BaseException:
        env.close()
        raise
    return env


def check_reset(env) -> None:
    """Reset ``env`` once; ValueError naming the mismatch when its observation does not fit its space."""
    space = env.observation_space
    try:
        obs = env.reset(seed=0)
    except (ValueError, TypeError, IndexError) as e:
        raise ValueError(f"reset() failed: {type(e).__name__}: {e} (does the observation returned by reset() "
                         f"and step() have the shape of observation_space {space}?)") from None
    spaces = space.spaces if isinstance(space, gym.spaces.Dict) else {None: space}
    for key, sub in spaces.items():
        value = obs[key] if key is not None else obs
        shape = getattr(value, "shape", None)
        if sub.shape is not None and shape is not None and tuple(shape[1:]) != tuple(sub.shape):
            raise ValueError(f"reset() returned observations{'' if key is None else f'[{key!r}]'} of shape "
                             f"{tuple(shape[1:])} but observation_space says {tuple(sub.shape)}")


def probe_env_and_policy(cfg: RunConfig) -> None:
    """Build one environment and the actor-critic (no step taken), so that mismatches such as an image
    encoder on vector observations fail before the run directory is created. ValueError names them."""
    env = probe_env(cfg)
    try:
        build_policy(cfg, env.observation_space, env.action_space, "cpu")
    finally:
        env.close()


def probe_env_only(cfg: RunConfig) -> None:
    """The probe of algorithms that bring their own networks: the environment alone."""
    probe_env(cfg).close()


@dataclass(frozen=True)
class Algorithm:
    """One training algorithm (see the module docstring)."""

    name: str
    """The value of ``--algo``."""
    summary: str
    """One line for ``--help``."""
    train: Callable[[Run], dict[str, Any]]
    """Train in a prepared run; returns its summary (``Run.finish``)."""
    section: Optional[str] = None
    """The config section it reads (``--<section>.<field>``); algorithms may share one."""
    config: Optional[type] = None
    """The dataclass of that section."""
    extra_sections: tuple[tuple[str, type], ...] = ()
    """Further (section, dataclass) pairs it reads, e.g. IMPALA's ``ray``; checked by ``validate``."""
    validate: Callable[[Any], list[str]] = lambda cfg: []
    """Cross-field checks of a whole config, each naming the fields."""
    probe: Callable[[Any], None] = probe_env_and_policy
    """Build what the run needs once, before the run directory exists; ValueError = bad options."""
    load: Optional[Callable[..., Any]] = None
    """``load(path, device, config_cls)`` -> (config, model, checkpoint) of a run, e.g.
    :func:`srwm_rl.run.agent.load_agent`; None: its runs are not loadable here (another library's policy)."""
    evaluate: Optional[Callable[..., dict[str, Any]]] = None
    """A held-out evaluation of its own (supervised learners); None: rollouts of the loaded policy."""
    run_dir: Callable[[Any], str] = field(default=lambda cfg: cfg.default_run_dir())
    """The default run directory of a config."""


def with_section(cls_name: str, base: type, section: str, config: type) -> type:
    """``base`` plus the section ``section`` of class ``config`` (what one algorithm's runs hold), as a
    class named ``cls_name`` in the module of ``config``, where it must be bound (for pickling)."""
    cls = dataclasses.make_dataclass(cls_name, [(section, config, field(default_factory=config))],
                                     bases=(base,), frozen=True)
    cls.__module__ = config.__module__
    return cls


def train_config_class(algorithms: dict[str, Algorithm]) -> type:
    """``RunConfig`` plus one section per algorithm config, and ``algo`` restricted to the registered
    names: the whole configuration of ``srwm-rl train``, saved in every checkpoint."""
    sections: dict[str, type] = {}
    for a in algorithms.values():
        for name, config in ((a.section, a.config), *a.extra_sections):
            if name is not None and sections.setdefault(name, config) is not config:
                raise TypeError(f"section {name!r} is declared with two config classes")
    names = tuple(algorithms)

    def validate(self) -> list[str]:
        """RunConfig's checks, the algorithm's section (other sections are not used) and its cross-checks."""
        a = algorithms[self.algo]
        own = getattr(self, a.section).validate() if a.section else []
        return RunConfig.validate(self) + own + a.validate(self)

    def default_run_dir(self) -> str:
        return algorithms[self.algo].run_dir(self)

    cls = dataclasses.make_dataclass(
        "TrainConfig", [("algo", Literal[names], field(default=names[0]))]
        + [(name, c, field(default_factory=c)) for name, c in sections.items()],
        bases=(RunConfig,), frozen=True,
        namespace={"validate": validate, "default_run_dir": default_run_dir,
                   "__doc__": "A whole training run: the options every run has, and one section per algorithm."})
    cls.__module__ = "agents.registry"      # where it is bound, so that configs pickle into spawned actors
    return cls
