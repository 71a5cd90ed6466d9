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

from srwm_rl.nn.cores import CoreConfig
from srwm_rl.nn.policy import PolicyConfig

# Training algorithms: name -> "module:function" with signature train(cfg, run_dir, resume, progress) -> dict.
ALGOS: dict[str, str] = {
    "ppo": "agents.ppo:train",
    "sb3-ppo": "agents.sb3_baselines:train_ppo",
    "sb3-recurrent-ppo": "agents.sb3_baselines:train_recurrent_ppo",
    "impala": "agents.impala:train",
    "fewshot": "agents.fewshot:train",
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
    normalize_reward: bool = True
    """Scale rewards by a running estimate of the return's standard deviation (saved in checkpoints); keeps value targets near unit scale, which bounded cores (LSTM) need to learn."""
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
    learner_chunk: int = 128
    """CPU learner: run the observation encoder over at most this many images at a time (cache-sized
    activations; 2x faster for the IMPALA CNN's forward + backward on CPU); 0 = the whole batch at once."""

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
                     "clip_rho_threshold", "clip_pg_rho_threshold", "learner_chunk"):
            if getattr(self, name) < 0:
                errs.append(f"impala.{name}={getattr(self, name)}: must be >= 0")
        return errs


@dataclass(frozen=True)
class FewshotConfig:
    """Sequential N-way K-shot classification (agents/fewshot.py, srwm_rl/fewshot/); steps are examples shown."""

    num_ways: int = 5
    """N: classes per task, labelled 0..N-1 by a fresh random permutation per task (at most 10 with the digits)."""
    num_shots: int = 1
    """K: labelled examples of each class before the queries (>= 1)."""
    num_queries: int = 1
    """Query examples of each class after the K shots (>= 0); their labels are hidden unless query_labels."""
    query_labels: bool = False
    """Reveal query labels at the next step too (fully sequential protocol); false: every query is exactly K-shot."""
    source: str = "glyphs"
    """Class source for meta-training: glyphs (procedural, unlimited); the real 'digits' are held out for evaluation."""
    distortion: float = 1.0
    """Scale of the per-example glyph deformations (0 = every example of a class is its prototype)."""
    distortion_warmup: float = 0.0
    """Curriculum: fraction of training over which the distortion grows from 0 (held at 0 for its first half, then linear)."""
    loss_on: str = "all"
    """Cross-entropy on every prediction (all) or on the queries only (queries)."""
    batch_size: int = 32
    """Tasks (sequences) per update."""
    learning_rate: float = 1e-3
    """Adam learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over total_steps."""
    max_grad_norm: float = 1.0
    """Gradient-norm clipping; 0 = none."""
    encoder: str = "cnn"
    """Image encoder: cnn (two conv layers) or mlp."""
    encoder_features: int = 64
    """Features of one encoded example (fed to the core beside the previous label)."""
    pairing: str = "interleave"
    """How x_{t-1} meets its label y_{t-1}: none (the core pairs them), shift ([x_t, x_{t-1}, y_{t-1}]), interleave (a write step, then a read step)."""
    eval_every: int = 100
    """Updates between held-out evaluations (best.pt follows the val glyph classes' query accuracy)."""
    eval_tasks: int = 256
    """Tasks per held-out evaluation and source."""
    eval_sources: tuple[str, ...] = ("glyphs", "digits")
    """Sources evaluated during training: glyphs (val classes) and/or digits (the real dataset)."""

    def validate(self) -> list[str]:
        from envs.fewshot.sources import DIGITS_MIN_PER_CLASS, DIGITS_NUM_CLASSES, SOURCES
        errs = []
        if self.num_ways < 2:
            errs.append(f"fewshot.num_ways={self.num_ways}: must be >= 2")
        if self.num_shots < 1:
            errs.append(f"fewshot.num_shots={self.num_shots}: must be >= 1")
        if self.num_queries < 0:
            errs.append(f"fewshot.num_queries={self.num_queries}: must be >= 0")
        if self.source == "digits":
            errs.append("fewshot.source='digits': the real dataset is held out for evaluation only; "
                        "allowed for training: 'glyphs'")
        elif self.source not in SOURCES:
            errs.append(f"fewshot.source={self.source!r}: unknown class source; allowed for training: 'glyphs'")
        unknown = [s for s in self.eval_sources if s not in SOURCES]
        if unknown:
            errs.append(f"fewshot.eval_sources={list(self.eval_sources)}: unknown class source(s) {unknown}; "
                        f"allowed: {list(SOURCES)}")
        if "digits" in self.eval_sources and self.num_ways > DIGITS_NUM_CLASSES:
            errs.append(f"fewshot.num_ways={self.num_ways}: larger than the {DIGITS_NUM_CLASSES} classes of "
                        f"eval source 'digits'; allowed: 2..{DIGITS_NUM_CLASSES} (or drop digits from "
                        f"fewshot.eval_sources)")
        if "digits" in self.eval_sources and self.num_shots + self.num_queries > DIGITS_MIN_PER_CLASS:
            errs.append(f"fewshot.num_shots + fewshot.num_queries = {self.num_shots + self.num_queries}: "
                        f"the digits have only {DIGITS_MIN_PER_CLASS} examples of some class")
        if self.loss_on not in ("all", "queries"):
            errs.append(f"fewshot.loss_on={self.loss_on!r}: must be 'all' or 'queries'")
        if self.loss_on == "queries" and self.num_queries < 1:
            errs.append(f"fewshot.loss_on='queries' needs fewshot.num_queries >= 1 (got {self.num_queries})")
        if not self.distortion >= 0:
            errs.append(f"fewshot.distortion={self.distortion}: must be >= 0")
        if not 0 <= self.distortion_warmup <= 1:
            errs.append(f"fewshot.distortion_warmup={self.distortion_warmup}: must be in [0, 1]")
        for name in ("batch_size", "encoder_features", "eval_tasks"):
            if getattr(self, name) < 1:
                errs.append(f"fewshot.{name}={getattr(self, name)}: must be >= 1")
        if self.eval_every < 0:
            errs.append(f"fewshot.eval_every={self.eval_every}: must be >= 0")
        if not self.learning_rate > 0:
            errs.append(f"fewshot.learning_rate={self.learning_rate}: must be > 0")
        if self.max_grad_norm < 0:
            errs.append(f"fewshot.max_grad_norm={self.max_grad_norm}: must be >= 0")
        if self.encoder not in ("cnn", "mlp"):
            errs.append(f"fewshot.encoder={self.encoder!r}: must be 'cnn' or 'mlp'")
        if self.pairing not in ("none", "shift", "interleave"):
            errs.append(f"fewshot.pairing={self.pairing!r}: must be 'none', 'shift' or 'interleave'")
        return errs


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    algo: str = "ppo"
    """Algorithm: ppo (recurrent PPO), impala (IMPALA / V-trace), sb3-ppo, sb3-recurrent-ppo (Stable-Baselines3 baselines), fewshot (supervised few-shot meta-training)."""
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
    """Stop training (with a checkpoint) after this many seconds of wall time; 0 = no limit (ppo)."""
    log_every: int = 1
    """Write metrics every N updates."""
    checkpoint_every: int = 50
    """Write the latest checkpoint every N updates (also at the end and on Ctrl-C / SIGTERM)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    core: CoreConfig = field(default_factory=CoreConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    impala: ImpalaConfig = field(default_factory=ImpalaConfig)
    fewshot: FewshotConfig = field(default_factory=FewshotConfig)

    def validate(self) -> list[str]:
        """All problems, each naming the field, its value and what is allowed."""
        errs = self.env.validate() + self.policy.validate() + self.core.validate() + self.ppo.validate()
        errs += self.impala.validate()
        if self.algo == "fewshot":
            errs += self.fewshot.validate()
        if self.algo not in ALGOS:
            errs.append(f"algo={self.algo!r}: must be one of {sorted(ALGOS)}")
        if self.total_steps < 1:
            errs.append(f"total_steps={self.total_steps}: must be >= 1")
        if self.log_every < 1 or self.checkpoint_every < 1:
            errs.append(f"log_every={self.log_every}, checkpoint_every={self.checkpoint_every}: must be >= 1")
        if self.time_limit < 0:
            errs.append(f"time_limit={self.time_limit}: must be >= 0 (0 = no limit)")
        if self.torch_threads < 0:
            errs.append(f"torch_threads={self.torch_threads}: must be >= 0")
        if self.algo == "ppo" and self.env.num_envs % self.ppo.num_minibatches:
            errs.append(f"env.num_envs={self.env.num_envs} is not divisible by ppo.num_minibatches="
                        f"{self.ppo.num_minibatches} (minibatches hold whole environments' sequences)")
        try:
            resolve_device(self.device)
        except ValueError as e:
            errs.append(str(e))
        return errs

    def default_run_dir(self) -> str:
        if self.algo == "fewshot":
            f = self.fewshot
            return f"runs/fewshot-{f.num_ways}w{f.num_shots}s-{self.core.kind}-s{self.seed}"
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


@lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """The string literal under each field of a dataclass (its attribute docstring)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body, docs = tree.body[0].body, {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs
