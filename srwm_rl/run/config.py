"""Typed run configuration: frozen dataclasses, one docstring per field, validated in one place.

``RunConfig`` is what every training run has (seed, budget, device, environment, policy, core); each
algorithm adds its own section (``agents/<algo>.py``), and ``agents.registry.TrainConfig`` is the
whole. The same object drives the command line (``srwm-rl train --section.field value``), is written
to ``config.json`` in the run directory and is saved inside every checkpoint, so a checkpoint alone
rebuilds the agent.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from srwm_rl.nn.cores import CoreConfig
from srwm_rl.nn.policy import PolicyConfig

# Options that were renamed: old dotted name -> new dotted name. Config files and checkpoints written
# with the old name load, and the old flag still works on the command line.
RENAMED: dict[str, str] = {"impala.learner_chunk": "policy.encoder_chunk"}

# Defaults that changed: dotted name -> the default before the change. A saved config (config.json, a
# checkpoint) whose section lacks the option was written when the old default applied, so it loads with
# the old value. (Configs written by srwm-rl are complete, so this is a guard for hand-made or trimmed ones.)
OLD_DEFAULTS: dict[str, Any] = {"core.input_softmax": True, "core.norm": "none", "core.short_conv": 0}


@dataclass(frozen=True)
class EnvConfig:
    """Which environment to train on, and how it is wrapped."""

    id: str = "srwm_rl/Bandit-v0"
    """Environment id: a Gymnasium id (also 'module:Env-v0'), 'procgen:<game>[+<game>...]', or an in-context task 'srwm_rl/...'."""
    num_envs: int = 16
    """Environments stepped together in one batch."""
    task_split: str = "train"
    """In-context tasks: which task set to sample (train, or test for held-out tasks)."""
    trial_episodes: int = 0
    """Episodes per trial on one task or level (memory is reset only at the trial start); 0 = no trials."""
    clip_reward: float = 0.0
    """Clip rewards to [-c, c] (the paper uses 1); 0 = no clipping."""
    normalize_obs: bool = False
    """Normalise vector observations with running statistics (saved in checkpoints)."""
    novelty_bonus: float = 0.0
    """Training reward only: add this on every step that arrives on an observation not yet seen in the episode (the trial, with trials) - a goal-agnostic exploration bonus for discrete-state tasks (the grids); the policy's previous-reward input and every reported return exclude it. 0 = off."""
    novelty_rarity: float = 0.0
    """With novelty_bonus: scale each bonus by sqrt(mean first-visit count / this observation's) over the run so far, capped at this value (rarely covered states pay more); 0 = off."""
    normalize_reward: bool = True
    """Scale rewards by a running estimate of the standard deviation of the return, discounted with the algorithm's own gamma (saved in checkpoints); keeps value targets near unit scale, which bounded cores (LSTM) need to learn."""
    num_levels: int = 200
    """Procgen: number of training levels (0 = the full distribution)."""
    start_level: int = 0
    """Procgen: first level seed."""
    distribution_mode: str = "easy"
    """Procgen: easy, hard, extreme, memory or exploration."""
    use_sequential_levels: bool = False
    """Procgen: go to the next level on success instead of a random one."""
    vectorization: str = "sync"
    """Gymnasium ids: sync (in-process, fastest for cheap envs) or async (subprocesses)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the environment's constructor, as JSON (e.g. '{"size": 5}')."""

    def validate(self) -> list[str]:
        errs = []
        if self.num_envs < 1:
            errs.append(f"env.num_envs={self.num_envs}: must be >= 1")
        if self.task_split not in ("train", "test"):
            errs.append(f"env.task_split={self.task_split!r}: must be 'train' or 'test'")
        if self.trial_episodes < 0:
            errs.append(f"env.trial_episodes={self.trial_episodes}: must be >= 0")
        if self.clip_reward < 0:
            errs.append(f"env.clip_reward={self.clip_reward}: must be >= 0")
        if self.num_levels < 0 or self.start_level < 0:
            errs.append(f"env.num_levels={self.num_levels}, env.start_level={self.start_level}: must be >= 0")
        if self.vectorization not in ("sync", "async"):
            errs.append(f"env.vectorization={self.vectorization!r}: must be 'sync' or 'async'")
        if self.novelty_bonus < 0:
            errs.append(f"env.novelty_bonus={self.novelty_bonus}: must be >= 0 (0 = off)")
        if self.novelty_rarity < 0:
            errs.append(f"env.novelty_rarity={self.novelty_rarity}: must be >= 0 (0 = off)")
        if self.novelty_rarity > 0 and self.novelty_bonus == 0:
            errs.append(f"env.novelty_rarity={self.novelty_rarity} with env.novelty_bonus=0: rarity scales the bonus, "
                        f"which is off; allowed: env.novelty_bonus > 0, or env.novelty_rarity 0")
        if self.novelty_bonus > 0 and self.normalize_obs:
            errs.append(f"env.novelty_bonus={self.novelty_bonus} with env.normalize_obs=True: the bonus compares "
                        f"observations exactly, which running normalisation changes; allowed: one of them")
        return errs


@dataclass(frozen=True)
class RunConfig:
    """A whole training run."""

    algo: str = "ppo"
    """Training algorithm: one of the registered algorithms (agents/registry.py), listed above."""
    seed: int = 1
    """Seed for environments, network initialisation and sampling."""
    total_steps: int = 1_000_000
    """Environment steps to train for (summed over environments)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)."""
    torch_threads: int = 0
    """torch.set_num_threads for the learner; 0 = auto (1 on the CPU for vector observations, where small networks run faster on one thread; PyTorch's default for images)."""
    run_dir: str = ""
    """Run directory; empty = runs/<env>-<core>-<algo>-s<seed>."""
    time_limit: float = 0.0
    """Stop training (with a checkpoint) after this many seconds of wall time; 0 = no limit."""
    log_every: int = 1
    """Write metrics every N updates."""
    checkpoint_every: int = 50
    """Write the latest checkpoint every N updates (also at the end and on Ctrl-C / SIGTERM)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    core: CoreConfig = field(default_factory=CoreConfig)

    def validate(self) -> list[str]:
        """All problems, each naming the field, its value and what is allowed."""
        errs = nonfinite_options(self) + self.env.validate() + self.policy.validate() + self.core.validate()
        if self.total_steps < 1:
            errs.append(f"total_steps={self.total_steps}: must be >= 1")
        if self.log_every < 1 or self.checkpoint_every < 1:
            errs.append(f"log_every={self.log_every}, checkpoint_every={self.checkpoint_every}: must be >= 1")
        if not (self.time_limit >= 0 and math.isfinite(self.time_limit)):
            errs.append(f"time_limit={self.time_limit}: must be a finite number >= 0 (0 = no limit)")
        if self.torch_threads < 0:
            errs.append(f"torch_threads={self.torch_threads}: must be >= 0")
        try:
            resolve_device(self.device)
        except ValueError as e:
            errs.append(str(e))
        return errs

    def default_run_dir(self) -> str:
        env = self.env.id.replace("/", "_").replace(":", "_").replace("+", "_")
        return f"runs/{env}-{self.core.kind}-{self.algo}-s{self.seed}"


def nonfinite_options(cfg, prefix: str = "") -> list[str]:
    """An error for every float option of ``cfg`` (a dataclass, walked into its sections) that is inf or
    nan: no option means "unbounded" by being infinite (zero does, where documented)."""
    errs = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            errs += nonfinite_options(v, f"{prefix}{f.name}.")
        elif isinstance(v, float) and not math.isfinite(v):
            errs.append(f"{prefix}{f.name}={v}: must be a finite number")
        elif isinstance(v, tuple) and any(isinstance(x, float) and not math.isfinite(x) for x in v):
            errs.append(f"{prefix}{f.name}={list(v)}: every value must be a finite number")
    return errs


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; a CUDA device that is not there is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device={name!r}: must be cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r}: CUDA is not available on this machine (use cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={name!r}: must be cpu, cuda, cuda:N or auto")
    return dev


# ---------------------------------------------------------------------------------------------
# Dict conversion: config.json, checkpoints, --config FILE, presets.
# ---------------------------------------------------------------------------------------------

def to_dict(cfg) -> dict[str, Any]:
    """A dataclass -> nested dict of JSON-able values (tuples become lists)."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return list(v) if isinstance(v, tuple) else v
    return conv(cfg)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict with renamed options (:data:`RENAMED`) moved to their new names, and options whose
    default changed (:data:`OLD_DEFAULTS`) set to the old default where a present section lacks them."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for old, new in RENAMED.items():
        (osec, okey), (nsec, nkey) = old.split("."), new.split(".")
        if isinstance(out.get(osec), dict) and okey in out[osec]:
            value = out[osec].pop(okey)
            if isinstance(out.get(nsec), dict) or nsec not in out:
                out.setdefault(nsec, {}).setdefault(nkey, value)
    for name, old_default in OLD_DEFAULTS.items():
        sec, key = name.split(".")
        if isinstance(out.get(sec), dict):
            out[sec].setdefault(key, old_default)
    return out


def from_dict(cls, data: dict[str, Any], where: str = ""):
    """Nested dict -> dataclass ``cls``; unknown keys and wrong types raise ValueError naming the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where.rstrip('.') or cls.__name__}: expected a mapping, got {type(data).__name__}")
    if not where:
        data = upgrade(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(where + k for k in unknown)}; known: {', '.join(where + n for n in sorted(names))}")
    return cls(**{k: _coerce(hints[k], v, where + k) for k, v in data.items()})


def _coerce(tp, v, name: str):
    if dataclasses.is_dataclass(tp):
        return v if isinstance(v, tp) else from_dict(tp, v, name + ".")
    origin = typing.get_origin(tp)
    if origin is Literal:
        if v not in typing.get_args(tp):
            raise ValueError(f"{name}={v!r}: must be one of {list(typing.get_args(tp))}")
        return v
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"{name}={v!r}: expected a list")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(inner, x, name) for x in v)
    if tp is bool:
        if not isinstance(v, bool):
            raise ValueError(f"{name}={v!r}: expected true or false")
        return v
    if tp is float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ValueError(f"{name}={v!r}: expected a number")
        return float(v)
    if origin is dict:
        if not isinstance(v, dict):
            raise ValueError(f"{name}={v!r}: expected a mapping")
        return dict(v)
    if tp in (int, str) and (not isinstance(v, tp) or isinstance(v, bool)):
        raise ValueError(f"{name}={v!r}: expected {tp.__name__}")
    return v


def merge(base: dict, override: dict) -> dict:
    """Recursive dict update (override wins) without mutating either."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
