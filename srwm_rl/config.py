"""Typed run configuration: frozen dataclasses, one docstring per field, validated in one place.

The same object drives the command line (flags are generated from the fields and their
docstrings), is written to ``config.json`` in the run directory and is saved inside every
checkpoint, so a checkpoint alone rebuilds the agent.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch

from .cores import CoreConfig
from .policy import PolicyConfig

# Training algorithms: name -> "module:function" with signature train(cfg, run_dir, resume, progress) -> dict.
ALGOS: dict[str, str] = {
    "ppo": "agents.ppo:train",
    "sb3-ppo": "agents.sb3_baselines:train_ppo",
    "sb3-recurrent-ppo": "agents.sb3_baselines:train_recurrent_ppo",
    "impala": "agents.impala:train",
}


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
    normalize_reward: bool = False
    """Scale rewards by a running estimate of the return's standard deviation (saved in checkpoints)."""
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
        return errs


@dataclass(frozen=True)
class PPOConfig:
    """Recurrent PPO hyper-parameters."""

    num_steps: int = 128
    """Rollout length T per environment between updates (the unroll the core is trained on)."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    num_minibatches: int = 4
    """Minibatches per epoch; each holds whole sequences of num_envs / num_minibatches environments."""
    update_epochs: int = 4
    """Passes over each rollout."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    clip_coef: float = 0.2
    """PPO ratio clipping."""
    clip_vloss: bool = False
    """Clip the value loss around the rollout's values (PPO2 style)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient-norm clipping."""
    target_kl: float = 0.0
    """Stop the epochs of an update early when the approximate KL exceeds this; 0 = never."""

    def validate(self) -> list[str]:
        errs = []
        for name in ("num_steps", "num_minibatches", "update_epochs"):
            if getattr(self, name) < 1:
                errs.append(f"ppo.{name}={getattr(self, name)}: must be >= 1")
        if not self.learning_rate > 0:
            errs.append(f"ppo.learning_rate={self.learning_rate}: must be > 0")
        if not 0 < self.gamma <= 1:
            errs.append(f"ppo.gamma={self.gamma}: must be in (0, 1]")
        if not 0 <= self.gae_lambda <= 1:
            errs.append(f"ppo.gae_lambda={self.gae_lambda}: must be in [0, 1]")
        for name in ("clip_coef", "ent_coef", "vf_coef", "max_grad_norm", "target_kl"):
            if getattr(self, name) < 0:
                errs.append(f"ppo.{name}={getattr(self, name)}: must be >= 0")
        return errs


@dataclass(frozen=True)
class ImpalaConfig:
    """IMPALA / V-trace (agents/impala.py); the defaults are the SRWM paper's Procgen setting."""

    num_actors: int = 48
    """Actor processes; IMPALA runs num_actors x envs_per_actor environments (env.num_envs is not used)."""
    envs_per_actor: int = 1
    """Environments each actor steps together in one batch (with one CPU copy of the policy)."""
    batch_size: int = 32
    """Unrolls (one environment's sequence each) per learner update; a multiple of envs_per_actor."""
    unroll_length: int = 50
    """Steps T per unroll (the learner trains the core through all T steps, plus one bootstrap step)."""
    learning_rate: float = 6e-4
    """RMSprop learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps."""
    rmsprop_alpha: float = 0.99
    """RMSprop smoothing constant."""
    rmsprop_eps: float = 0.01
    """RMSprop epsilon (the losses are summed over the batch, as the paper's code, so it is relative to sums)."""
    rmsprop_momentum: float = 0.0
    """RMSprop momentum."""
    gamma: float = 0.99
    """Discount factor."""
    entropy_cost: float = 0.01
    """Entropy bonus coefficient."""
    baseline_cost: float = 0.5
    """Value (baseline) loss coefficient."""
    max_grad_norm: float = 40.0
    """Gradient-norm clipping."""
    clip_rho_threshold: float = 1.0
    """V-trace rho-bar: clip importance weights in the value targets; 0 = no clipping."""
    clip_pg_rho_threshold: float = 1.0
    """V-trace clip of the importance weights in the policy-gradient advantages; 0 = no clipping."""
    actor_threads: int = 1
    """torch threads per actor process."""
    max_nonfinite: int = 3
    """Stop with an error after this many non-finite losses in a row (each one's update is skipped)."""
    max_actor_failures: int = 3
    """Stop with an error when an actor dies this many times in a row before delivering an unroll."""

    def validate(self) -> list[str]:
        errs = []
        for name in ("num_actors", "envs_per_actor", "batch_size", "unroll_length", "actor_threads",
                     "max_nonfinite", "max_actor_failures"):
            if getattr(self, name) < 1:
                errs.append(f"impala.{name}={getattr(self, name)}: must be >= 1")
        if self.envs_per_actor >= 1 and self.batch_size % self.envs_per_actor:
            errs.append(f"impala.batch_size={self.batch_size} is not a multiple of impala.envs_per_actor="
                        f"{self.envs_per_actor} (the learner takes whole actor unrolls)")
        if not self.learning_rate > 0:
            errs.append(f"impala.learning_rate={self.learning_rate}: must be > 0")
        if not 0 < self.gamma <= 1:
            errs.append(f"impala.gamma={self.gamma}: must be in (0, 1]")
        if not 0 <= self.rmsprop_alpha < 1:
            errs.append(f"impala.rmsprop_alpha={self.rmsprop_alpha}: must be in [0, 1)")
        for name in ("rmsprop_eps", "rmsprop_momentum", "entropy_cost", "baseline_cost", "max_grad_norm",
                     "clip_rho_threshold", "clip_pg_rho_threshold"):
            if getattr(self, name) < 0:
                errs.append(f"impala.{name}={getattr(self, name)}: must be >= 0")
        return errs


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    algo: str = "ppo"
    """Algorithm: ppo (recurrent PPO), impala (IMPALA / V-trace), sb3-ppo, sb3-recurrent-ppo (Stable-Baselines3 baselines)."""
    seed: int = 1
    """Seed for environments, network initialisation and sampling."""
    total_steps: int = 1_000_000
    """Environment steps to train for (summed over environments)."""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)."""
    torch_threads: int = 0
    """torch.set_num_threads for the learner; 0 = PyTorch's default."""
    run_dir: str = ""
    """Run directory; empty = runs/<env>-<core>-<algo>-s<seed>."""
    log_every: int = 1
    """Write metrics every N updates."""
    checkpoint_every: int = 50
    """Write the latest checkpoint every N updates (also at the end and on Ctrl-C / SIGTERM)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    core: CoreConfig = field(default_factory=CoreConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    impala: ImpalaConfig = field(default_factory=ImpalaConfig)

    def validate(self) -> list[str]:
        """All problems, each naming the field, its value and what is allowed."""
        errs = self.env.validate() + self.policy.validate() + self.core.validate() + self.ppo.validate()
        errs += self.impala.validate()
        if self.algo not in ALGOS:
            errs.append(f"algo={self.algo!r}: must be one of {sorted(ALGOS)}")
        if self.total_steps < 1:
            errs.append(f"total_steps={self.total_steps}: must be >= 1")
        if self.log_every < 1 or self.checkpoint_every < 1:
            errs.append(f"log_every={self.log_every}, checkpoint_every={self.checkpoint_every}: must be >= 1")
        if self.torch_threads < 0:
            errs.append(f"torch_threads={self.torch_threads}: must be >= 0")
        if self.algo == "ppo" and self.env.num_envs % self.ppo.num_minibatches:
            errs.append(f"env.num_envs={self.env.num_envs} is not divisible by ppo.num_minibatches="
                        f"{self.ppo.num_minibatches} (minibatches hold whole environments' sequences)")
        if self.algo == "impala" and (self.env.normalize_obs or self.env.normalize_reward):
            errs.append("env.normalize_obs / env.normalize_reward: not supported with algo=impala "
                        "(each actor process would keep its own statistics)")
        try:
            resolve_device(self.device)
        except ValueError as e:
            errs.append(str(e))
        return errs

    def default_run_dir(self) -> str:
        env = self.env.id.replace("/", "_").replace(":", "_").replace("+", "_")
        return f"runs/{env}-{self.core.kind}-{self.algo}-s{self.seed}"


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
# Dict conversion (config.json, checkpoints, --config FILE) and field documentation (--help).
# ---------------------------------------------------------------------------------------------

def to_dict(cfg) -> dict[str, Any]:
    """A dataclass -> nested dict of JSON-able values (tuples become lists)."""
    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        return list(v) if isinstance(v, tuple) else v
    return conv(cfg)


def from_dict(cls, data: dict[str, Any], where: str = ""):
    """Nested dict -> dataclass ``cls``; unknown keys and wrong types raise ValueError naming the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(where + k for k in unknown)}; known: {', '.join(where + n for n in sorted(names))}")
    kwargs = {}
    for k, v in data.items():
        kwargs[k] = _coerce(hints[k], v, where + k)
    return cls(**kwargs)


def _coerce(tp, v, name: str):
    if dataclasses.is_dataclass(tp):
        return v if isinstance(v, tp) else from_dict(tp, v, name + ".")
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"{name}={v!r}: expected a list")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(inner, x, name) for x in v)
    if tp is bool:
        if not isinstance(v, bool):
            raise ValueError(f"{name}={v!r}: expected true or false")
        return v
    if tp is float and isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if tp in (int, str) and (not isinstance(v, tp) or isinstance(v, bool)):
        raise ValueError(f"{name}={v!r}: expected {tp.__name__}")
    return v


def merge(base: dict, override: dict) -> dict:
    """Recursive dict update (override wins) without mutating either."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """The string literal under each field of a dataclass (its attribute docstring)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body, docs = tree.body[0].body, {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs
