"""IMPALA (Espeholt et al., 2018) with V-trace: asynchronous actor processes and one learner.

Actors (``agents/impala_actor.py``) are processes, each stepping ``envs_per_actor`` environments with a
CPU copy of the policy and writing unrolls of T steps plus one bootstrap step, with the core state
at the unroll's start, into shared memory; with ``--impala.backend ray`` they are Ray actors on a local
instance or a cluster returning the same unrolls through Ray's object store (``agents/impala_ray.py``).
The learner talks to either through one interface (``ActorBackend``, ``BACKENDS``). One learner update,
top to bottom:

  1. Wait for ``batch_size / envs_per_actor`` full unrolls (actors that died are replaced meanwhile).
  2. Copy them into one time-major batch [T + 1, B, ...] and hand the slots back to their actors.
  3. Run the policy over all T + 1 steps from each unroll's stored core state, so gradients flow
     through every step (SRWM self-modifications included); V-trace targets from the behaviour
     log-probabilities the actors stored (discounts are zero where an episode ended).
  4. Policy-gradient + baseline - entropy loss, summed over the batch as in the paper's code (its
     RMSprop epsilon and gradient clip assume sums), gradient-norm clipping, RMSprop; the new weights
     are published to the actors at once, and the policy lag of every unroll is logged.

The defaults are the paper's (48 actors x 1 env, batch 32, T = 50); on a 2-core CPU, measured best:
``--impala.num_actors 2 --impala.envs_per_actor 16 --torch_threads 2`` (BENCHMARKS.md, IMPALA).

Reward clipping and the previous reward as an input come from the environment wrappers
(``env.clip_reward``, ``policy.prev_reward``), so the actors' policy sees exactly what the learner sees.
Observation / reward normalisers (``env.normalize_*``) run inside each actor with its own running
statistics; checkpoints keep the latest an actor reported, and resumed or replacement actors start from them.

Failures are loud: a non-finite batch, loss or gradient skips the update (``max_nonfinite`` in a row stop
the run); an actor whose environment raises or returns non-finite values is printed, counted and
replaced, and too many failures in a window stop the run with the environment's error
(``agents/impala_actor.py``).

Reproducibility: the same seed gives the same run only as far as the actors' timing allows (which
actor's unroll reaches the learner first, and with which policy lag, depends on the OS scheduler).
A checkpoint holds the learner's weights, optimiser, counters, RNGs and the latest normaliser states;
it does not hold the actors' environments or core memories: resumed actors start new episodes from
seeds derived from (seed, actor, update), so a resumed run is a valid continuation but not identical
to an uninterrupted one.
"""
from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np
import torch
import torch.multiprocessing as mp

import envs
from agents.algorithm import Algorithm
from agents.impala_actor import ActorFailure, ActorPool, SharedWeights, UnrollBuffers, slots_per_actor
from srwm_rl.ops import vtrace
from srwm_rl.ops.losses import entropy_bonus, policy_gradient_loss, value_loss
from srwm_rl.run.agent import build_policy, load_agent
from srwm_rl.run.cluster import RayConfig
from srwm_rl.run.environment import make_env
from srwm_rl.run.guards import (NonFiniteError, NonFiniteGuard, nonfinite_data, nonfinite_grads, nonfinite_loss,
                                nonfinite_params)
from srwm_rl.run.harness import Run
from srwm_rl.run.optim import rmsprop
from srwm_rl.run.rollout import EpisodeStats


@dataclass(frozen=True)
class ImpalaConfig:
    """IMPALA / V-trace; the defaults are the SRWM paper's Procgen setting."""

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
    """Decay the learning rate linearly to 0 over the run's horizon: at the fraction done of total_steps or of time_limit, whichever is further."""
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
    """Stop with the environment's error when actors fail (raise, or die) this many times within the last failure_window unrolls and failures (or one actor this many times in a row)."""
    failure_window: int = 100
    """The window of max_actor_failures: the last N events (unrolls delivered or actor failures) of all actors."""
    backend: str = "mp"
    """Where the actors run: mp (processes on this machine, shared memory) or ray (Ray actors on a local instance or a cluster; see the ray section)."""

    def validate(self) -> list[str]:
        errs = []
        for name in ("num_actors", "envs_per_actor", "batch_size", "unroll_length", "actor_threads",
                     "max_nonfinite", "max_actor_failures", "failure_window"):
            if getattr(self, name) < 1:
                errs.append(f"impala.{name}={getattr(self, name)}: must be >= 1")
        if self.envs_per_actor >= 1 and self.batch_size % self.envs_per_actor:
            errs.append(f"impala.batch_size={self.batch_size} is not a multiple of impala.envs_per_actor="
                        f"{self.envs_per_actor} (the learner takes whole actor unrolls)")
        if self.backend not in BACKENDS:
            errs.append(f"impala.backend={self.backend!r}: must be one of {sorted(BACKENDS)}")
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


class NonFiniteLossError(NonFiniteError):
    """The learner saw a non-finite loss or gradient in too many updates in a row."""


def impala_loss(policy, batch: dict[str, Any], ic: ImpalaConfig) -> tuple[torch.Tensor, dict[str, float], tuple]:
    """The summed IMPALA loss of one batch (see step 3-4 above), its statistics, and the core state
    after the batch. ``batch``: obs [T + 1, B, ...], first [T + 1, B], action [T, B(, A)], logp, reward,
    done [T, B], state (the core state before row 0)."""
    T, B = batch["reward"].shape
    dist, values, state = policy(batch["obs"], batch["state"], batch["first"])
    a = batch["action"]
    a = torch.cat([a, torch.zeros_like(a[:1])])          # row T is the bootstrap step: no action taken
    logp, entropy = dist.log_prob(a)[:T], dist.entropy()[:T]
    discounts = (~batch["done"]).float() * ic.gamma
    vt = vtrace.from_action_log_probs(batch["logp"], logp, discounts, batch["reward"], values[:T], values[T],
                                      ic.clip_rho_threshold or None, ic.clip_pg_rho_threshold or None)
    pg = policy_gradient_loss(logp, vt.pg_advantages)
    v_loss = value_loss(values[:T], vt.vs)
    ent = entropy_bonus(entropy)
    loss = T * B * (pg + ic.baseline_cost * v_loss - ic.entropy_cost * ent)
    with torch.no_grad():
        rho = vt.log_rhos.exp()
        values_ = torch.stack([pg, v_loss, ent, loss, rho.mean(),
                               (rho > (ic.clip_rho_threshold or math.inf)).float().mean(), vt.vs.mean(),
                               values[:T].mean()]).tolist()             # one device sync, not one per value
        stats = dict(zip(("loss/policy", "loss/value", "loss/entropy", "loss/total", "vtrace/rho_mean",
                          "vtrace/rho_clip_frac", "vtrace/vs_mean", "value_mean"), values_))
    return loss, stats, tuple(x.detach() for x in state)


def start_method(device: torch.device) -> str:
    """fork is fast and safe for a CPU learner (actors run one thread each); a CUDA learner needs spawn."""
    return "fork" if device.type == "cpu" else "spawn"


def observation_spaces(cfg) -> tuple[Any, Any]:
    """(observation space, action space) of one actor's wrapped environment."""
    ic = cfg.impala
    env = make_env(cfg.env, cfg.policy, cfg.seed, num_envs=ic.envs_per_actor, discount=ic.gamma,
                   id=envs.family_of(cfg.env.id).shard(cfg.env.id, 0, ic.envs_per_actor))
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


class ActorBackend(Protocol):
    """What the learner needs of its actors, whichever backend runs them (``BACKENDS``)."""

    normalizers: list
    """The latest observation / reward normaliser states an actor reported (checkpoints keep them)."""
    restarts: int

    def start(self) -> None: ...

    def gather(self, n: int, stop, on_episodes: Callable[..., None]) -> Optional[list[tuple]]:
        """The next ``n`` unrolls as (actor, key, weights version, (episode returns, episode lengths, trial
        returns)), each delivery's also passed to ``on_episodes(returns, lengths, trial_returns)``; None on
        ``stop``."""

    def batch(self, items: list[tuple], device) -> dict[str, Any]:
        """Those unrolls as one time-major batch (``impala_loss``); their actors may go on."""

    @property
    def version(self) -> int: ...

    def publish(self, policy: torch.nn.Module) -> int: ...

    def stats(self) -> dict[str, float]: ...

    def close(self) -> None: ...


def mp_backend(cfg, policy, obs_space, action_space, device, k: int, start_update: int, normalizers: list, warn):
    """Actor processes on this machine, unrolls and weights in shared memory (``agents/impala_actor.py``)."""
    ic = cfg.impala
    ctx = mp.get_context(start_method(device))
    buffers = UnrollBuffers(ic.num_actors * k, ic.unroll_length, ic.envs_per_actor, obs_space, action_space,
                            policy.initial_state(ic.envs_per_actor, torch.device("cpu")))
    return ActorPool(cfg, buffers, SharedWeights(policy, ctx), ctx, k, start_update=start_update,
                     normalizers=normalizers, warn=warn)


def ray_backend(cfg, policy, obs_space, action_space, device, k: int, start_update: int, normalizers: list, warn):
    """Ray actors on a local instance or a cluster (``agents/impala_ray.py``; needs srwm-rl[ray])."""
    from agents.impala_ray import RayActorPool
    return RayActorPool(cfg, policy, k, start_update=start_update, normalizers=normalizers, warn=warn)


BACKENDS: dict[str, Callable[..., ActorBackend]] = {"mp": mp_backend, "ray": ray_backend}
"""``--impala.backend``: name -> factory of the actor pool the learner talks to (``ActorBackend``)."""


def train(run: Run) -> dict[str, Any]:
    """IMPALA in a prepared run (see the module docstring)."""
    cfg, ic, device = run.cfg, run.cfg.impala, run.device
    obs_space, action_space = observation_spaces(cfg)
    run.set_threads(obs_space)
    policy = build_policy(cfg, obs_space, action_space, device)
    optimizer = rmsprop(policy.parameters(), lr=ic.learning_rate, alpha=ic.rmsprop_alpha,
                        eps=ic.rmsprop_eps, momentum=ic.rmsprop_momentum)
    T, E = ic.unroll_length, ic.envs_per_actor
    batch_slots, steps_per_batch = ic.batch_size // E, T * ic.batch_size
    run.track(policy, optimizer, obs_space, action_space, normalizers=lambda: pool.normalizers)
    pool = BACKENDS[ic.backend](cfg, policy, obs_space, action_space, device,
                                slots_per_actor(ic.num_actors, batch_slots), run.update, run.resumed_normalizers,
                                run.warn)
    episodes = EpisodeStats(ic.num_actors * E)
    guard = NonFiniteGuard(ic.max_nonfinite)
    window = {"lag": [], "wait": 0.0, "busy": 0.0}
    try:
        pool.start()                                  # fork before the logger starts its threads
        run.start(total=cfg.total_steps, show={"ret": "episode_return", "lag": "policy_lag"})
        while not run.done:
            # ---- 1-2. gather a batch of unrolls -------------------------------------------------
            t0 = time.time()
            try:
                items = pool.gather(batch_slots, run.halt, episodes.add)
            except ActorFailure as e:                     # the learner is sound (checked every update):
                run.checkpoint("latest")                   # keep its progress, then stop with the env's error
                raise ActorFailure(run.failure_message(str(e))) from None
            if items is None:
                break
            batch = pool.batch(items, device)
            window["lag"] += [pool.version - it[2] for it in items]
            t1 = time.time()
            window["wait"] += t1 - t0
            # ---- 3-4. learn -------------------------------------------------------------------------
            lr = run.annealed(ic.learning_rate) if ic.anneal_lr else ic.learning_rate
            optimizer.param_groups[0]["lr"] = lr
            bad = nonfinite_data(observation=batch["obs"], reward=batch["reward"])
            grad_norm = torch.tensor(math.nan)
            if bad is None:
                loss, stats, state = impala_loss(policy, batch, ic)
                optimizer.zero_grad(set_to_none=True)
                bad = nonfinite_loss(loss)
            if bad is None:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), ic.max_grad_norm)
                if not torch.isfinite(grad_norm):
                    bad = nonfinite_grads(policy) or "the gradient norm"
            if bad is not None:                          # skip the update, keep the weights
                optimizer.zero_grad(set_to_none=True)
                try:
                    run.skip_nonfinite(guard, bad, steps_per_batch, hint=_HINT)
                except NonFiniteError as e:
                    raise NonFiniteLossError(str(e)) from None
                continue
            guard.ok()
            optimizer.step()
            bad = nonfinite_params(policy)
            if bad is not None:                          # a step cannot be undone: stop before anything is saved
                raise NonFiniteLossError(run.failure_message(f"{bad} after the optimiser step", _HINT))
            pool.publish(policy)
            window["busy"] += time.time() - t1

            def metrics() -> dict[str, float]:
                lag = window["lag"]
                out = {**episodes.metrics(), "learning_rate": lr, "grad_norm": float(grad_norm), **stats,
                       "policy_lag": float(np.mean(lag)), "policy_lag_max": float(np.max(lag)),
                       "learner_wait_frac": window["wait"] / max(window["wait"] + window["busy"], 1e-9),
                       **pool.stats(),
                       "nonfinite_skipped": guard.skipped,
                       **{k: float(v.mean()) for k, v in policy.core.introspect(state).items()}}
                window.update(lag=[], wait=0.0, busy=0.0)
                return out
            run.end_update(steps_per_batch, score=episodes.score, metrics=metrics)
        return run.finish(episode_return=episodes.mean_return, policy=policy, actor_restarts=pool.restarts)
    finally:
        pool.close()


_HINT = "Try a lower --impala.learning_rate, --env.clip_reward 1, or a smaller --impala.max_grad_norm."


def _validate(cfg) -> list[str]:
    """The ray section, when the actors run on Ray (and Ray is installed)."""
    if cfg.impala.backend != "ray":
        return []
    if importlib.util.find_spec("ray") is None:
        return ["impala.backend='ray' needs Ray, an optional dependency: pip install 'srwm-rl[ray]' "
                "(or --impala.backend mp: actor processes on this machine)"]
    return cfg.ray.validate()


ALGORITHM = Algorithm(name="impala", summary="IMPALA / V-trace with asynchronous actor processes", train=train,
                      section="impala", config=ImpalaConfig, load=load_agent, validate=_validate,
                      extra_sections=(("ray", RayConfig),))
