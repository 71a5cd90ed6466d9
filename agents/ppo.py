"""Recurrent PPO (Schulman et al., 2017) for policies with any registered core.

One update, top to bottom:
  1. Roll out T steps from N environments with the policy in no-grad mode, keeping the core
     state at the rollout start. A truncated episode's last reward gets gamma * V(final obs).
  2. GAE over the rollout (dones = terminated or truncated; memory resets where ``first``).
  3. For each epoch, split the *environments* into minibatches; re-run each minibatch's whole
     sequences through the core from the stored start state with the episode masks, so gradients
     flow through every step of the unroll (SRWM self-modifications included).
  4. Clipped surrogate + value loss - entropy bonus, gradient-norm clipping, Adam.

Guards (srwm_rl/run/guards.py): an update whose rollout holds a non-finite reward or observation is
skipped whole; one whose loss or gradients turn non-finite stops at that minibatch (its step and the
later ones are not taken; earlier minibatches' steps stay). Both are counted as skipped;
``max_nonfinite`` in a row stop the run naming the first cause. Non-finite observations are replaced
by zeros for acting, so the policy never samples from a non-finite distribution.

Exact resume: every checkpoint holds what the loop carries between updates - the observations, the
``first`` flags and the core's memory at the rollout boundary, the episode statistics and a snapshot
of the environments (envs/snapshot.py) - so N steps + --resume to 2N is bit-identical to 2N steps on
the CPU. Environments without a snapshot (Procgen, async vectorisation) are re-seeded on resume
instead, which changes the episodes (the weights, optimiser, normalisers and RNGs still continue).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from agents.algorithm import Algorithm
from envs.snapshot import env_state, load_env_state
from srwm_rl.nn.cores import select_state
from srwm_rl.nn.policy import obs_to_torch
from srwm_rl.nn.tree import tree_map
from srwm_rl.ops.losses import entropy_bonus, ppo_clip_loss, value_loss
from srwm_rl.ops.returns import gae
from srwm_rl.run.agent import build_policy, load_agent
from srwm_rl.run.environment import make_env, normalizer_state
from srwm_rl.run.guards import (NonFiniteError, NonFiniteGuard, nonfinite_data, nonfinite_grads, nonfinite_loss,
                                nonfinite_params)
from srwm_rl.run.harness import Run, StopSignal
from srwm_rl.run.optim import adam
from srwm_rl.run.rollout import EpisodeStats, bootstrap_truncated


@dataclass(frozen=True)
class PPOConfig:
    """Recurrent PPO hyper-parameters."""

    num_steps: int = 128
    """Rollout length T per environment between updates (the unroll the core is trained on)."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run's horizon: at the fraction done of total_steps or of time_limit, whichever is further."""
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
    max_nonfinite: int = 3
    """Stop with an error after this many updates in a row skipped for non-finite rewards, observations, losses or gradients."""

    def validate(self) -> list[str]:
        errs = []
        for name in ("num_steps", "num_minibatches", "update_epochs", "max_nonfinite"):
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


class Rollout:
    """Time-major storage for one rollout of T steps from N environments, on the learner's device."""

    def __init__(self, T: int, N: int, obs_example, action_shape, device, action_dtype=torch.float32):
        self.obs = tree_map(lambda v: torch.zeros((T, *v.shape), dtype=v.dtype, device=device), obs_example)
        self.first = torch.zeros(T, N, dtype=torch.bool, device=device)
        self.actions = torch.zeros((T, N, *action_shape), dtype=action_dtype, device=device)
        self.logp, self.values, self.rewards = (torch.zeros(T, N, device=device) for _ in range(3))
        self.dones = torch.zeros(T, N, dtype=torch.bool, device=device)

    def put_obs(self, t: int, obs) -> None:
        tree_map(lambda buf, v: buf[t].copy_(v), self.obs, obs)


@torch.no_grad()
def collect(policy, env, buf: Rollout, obs, first, state, gamma: float, on_info=None,
            stop: Optional[StopSignal] = None):
    """Fill ``buf`` with T steps from ``env`` starting at (obs, first, state); returns the carry
    (obs, first, state) for the next rollout and the value of its first observation [N].

    A truncated episode's last reward gets ``gamma * V(final obs)``, the value computed from the
    memory before the reset. Stops early (buffer partly filled, value None) when ``stop`` is set.
    Non-finite observations are stored as they came (the update will be skipped) but the policy acts on
    zeros in their place; a non-finite output of the policy itself raises NonFiniteError.
    """
    T, device = buf.first.shape[0], buf.first.device
    for t in range(T):
        buf.put_obs(t, obs)
        buf.first[t] = first
        dist, value, state = policy.step(_finite(obs), state, first)
        _check_output(value, t)
        action = dist.sample()
        buf.actions[t] = action.reshape(buf.actions[t].shape)
        buf.logp[t], buf.values[t] = dist.log_prob(action), value
        obs_np, reward, term, trunc, info = env.step(action.cpu().numpy())
        buf.rewards[t] = torch.as_tensor(bootstrap_truncated(policy, reward, trunc, info, state, gamma), device=device)
        buf.dones[t] = torch.as_tensor(term | trunc, device=device)
        obs, first = obs_to_torch(obs_np, device), torch.as_tensor(env.first, device=device)
        if on_info is not None:
            on_info(info)
        if stop:
            return obs, first, state, None
    _, next_value, _ = policy.step(_finite(obs), state, first)
    return obs, first, state, next_value


def _check_output(value: torch.Tensor, t: int) -> None:
    """NonFiniteError if the policy's value [N] at rollout step ``t`` is non-finite (its inputs were not)."""
    if not bool(torch.isfinite(value).all()):
        raise NonFiniteError(f"the policy's value output became non-finite at step {t} of a rollout "
                             f"although its inputs and weights were finite (the core's memory diverged)")


def _finite(obs):
    """``obs`` with non-finite entries replaced by zeros (what the policy acts on)."""
    return tree_map(lambda v: torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
                    if v.is_floating_point() and not bool(torch.isfinite(v).all()) else v, obs)


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = target.var()
    return float("nan") if var == 0 else float(1 - (target - pred).var() / var)


def train(run: Run) -> dict[str, Any]:
    """Recurrent PPO in a prepared run (see the module docstring)."""
    cfg, p, device = run.cfg, run.cfg.ppo, run.device
    env = make_env(cfg.env, cfg.policy, cfg.seed, discount=p.gamma)
    run.set_threads(env.observation_space)
    policy = build_policy(cfg, env.observation_space, env.action_space, device)
    optimizer = adam(policy.parameters(), lr=p.learning_rate, eps=1e-5)
    T, N = p.num_steps, env.num_envs
    episodes = EpisodeStats(N)
    carry: dict[str, Any] = {}                 # what the loop carries between updates (exact resume)

    def extra() -> dict[str, Any]:
        return {"obs": carry["obs"], "first": carry["first"], "state": list(carry["state"]),
                "episodes": [list(episodes.returns), list(episodes.lengths), list(episodes.trial_returns)], "env": env_state(env)}

    run.track(policy, optimizer, env.observation_space, env.action_space, env=env, extra=extra)
    num_updates = math.ceil(cfg.total_steps / (T * N))
    saved = run.resumed_extra
    if saved is not None and saved.get("env") is not None and _restored(env, saved["env"], run):
        obs = tree_map(lambda v: v.to(device), saved["obs"])
        first, state = saved["first"].to(device), tuple(s.to(device) for s in saved["state"])
        episodes.add(*saved["episodes"][:2])
        episodes.trial_returns.extend(saved["episodes"][2] if len(saved["episodes"]) > 2 else [])
    else:                                      # fresh, or an environment without a snapshot: re-seed
        obs = obs_to_torch(env.reset(seed=cfg.seed + 7919 * run.update), device)
        first = torch.as_tensor(env.first, device=device)
        state = policy.initial_state(N, device)
        if saved is not None:
            run.warn("warning: this environment cannot be snapshotted (Procgen or async vectorisation): "
                     "the resumed run re-seeds its environments, so it is not identical to an uninterrupted one")
    carry.update(obs=obs, first=first, state=state)
    buf = Rollout(T, N, obs, policy.actions.shape, device, policy.actions.dtype)
    guard = NonFiniteGuard(p.max_nonfinite)
    run.start(total=num_updates * T * N)
    try:
        while not run.done:
            if p.anneal_lr:
                optimizer.param_groups[0]["lr"] = run.annealed(p.learning_rate)
            state0 = state
            # ---- 1. rollout -----------------------------------------------------------------
            try:
                obs, first, state, next_value = collect(policy, env, buf, obs, first, state, p.gamma,
                                                        episodes.add_info, run.halt)
            except NonFiniteError as e:
                raise NonFiniteError(run.failure_message(str(e), _HINT)) from None
            state = tuple(s.detach() for s in state)
            carry.update(obs=obs, first=first, state=state)   # a stop mid-rollout: continue from there
            if next_value is None:
                break
            bad = nonfinite_data(observation=buf.obs, reward=buf.rewards)
            if bad is None:
                # ---- 2. advantages ---------------------------------------------------------------
                adv, ret = gae(buf.rewards, buf.values, buf.dones, next_value, p.gamma, p.gae_lambda)
                # ---- 3-4. optimise on whole sequences, minibatches split by environment -----------
                stats, bad = optimise(policy, optimizer, buf, state0, adv, ret, p)
            if bad is not None:
                run.skip_nonfinite(guard, bad, T * N, hint=_HINT)
                continue
            bad = nonfinite_params(policy)
            if bad is not None:                 # a step cannot be undone: stop before anything is saved
                raise NonFiniteError(run.failure_message(f"{bad} after the optimiser step", _HINT))
            guard.ok()
            run.end_update(T * N, score=episodes.score, metrics=lambda: {
                **episodes.metrics(), "learning_rate": optimizer.param_groups[0]["lr"],
                "nonfinite_skipped": guard.skipped,
                "explained_variance": explained_variance(buf.values.flatten(), ret.flatten()), **stats,
                **{k: float(v.mean()) for k, v in policy.core.introspect(state).items()}})
        return run.finish(episode_return=episodes.mean_return, policy=policy, normalizers=normalizer_state(env))
    finally:
        env.close()


def _restored(env, snapshot: dict, run: Run) -> bool:
    """Load the environments' snapshot; False (with a warning) where it does not fit them."""
    try:
        load_env_state(env, snapshot)
        return True
    except (ValueError, KeyError, AttributeError, TypeError) as e:
        run.warn(f"warning: the checkpoint's environment snapshot does not fit ({e}); re-seeding instead")
        return False


_HINT = ("If the environment produced it, fix the environment (or clip its rewards with --env.clip_reward); "
         "otherwise try a lower --ppo.learning_rate or a smaller --ppo.max_grad_norm.")


def minibatches(num_envs: int, num_minibatches: int, device) -> list[torch.Tensor] | list[slice]:
    """One epoch's minibatches: a random split of the environments into ``num_minibatches`` index sets,
    or the whole batch as a slice when there is one (every loss term is a mean, so the order of the
    environments does not matter, and a slice selects without copying the rollout)."""
    if num_minibatches == 1:
        return [slice(None)]
    return list(torch.randperm(num_envs, device=device).view(num_minibatches, -1))


def optimise(policy, optimizer, buf: Rollout, state0, adv, ret, p: PPOConfig) -> tuple[dict[str, float], Optional[str]]:
    """Steps 3-4: ``update_epochs`` passes of minibatches of whole environments' sequences. Returns the
    statistics and None, or, at the first minibatch whose loss or gradients are non-finite (its step is
    not taken, the later ones neither), ({}, the cause)."""
    N = buf.first.shape[1]
    sums: dict[str, list[torch.Tensor]] = {k: [] for k in ("loss/policy", "loss/value", "loss/entropy", "approx_kl",
                                                    "clip_frac", "grad_norm")}
    for _ in range(p.update_epochs):
        for mb in minibatches(N, p.num_minibatches, buf.first.device):
            dist, value, _ = policy(tree_map(lambda v: v[:, mb], buf.obs), select_state(state0, mb), buf.first[:, mb])
            logp = dist.log_prob(buf.actions[:, mb])
            mb_adv = adv[:, mb]
            if p.norm_adv and mb_adv.numel() > 1:
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
            pg = ppo_clip_loss(logp, buf.logp[:, mb], mb_adv, p.clip_coef)
            v_loss = value_loss(value, ret[:, mb], buf.values[:, mb], p.clip_coef if p.clip_vloss else None)
            ent = entropy_bonus(dist.entropy())
            loss = pg.loss + p.vf_coef * v_loss - p.ent_coef * ent
            optimizer.zero_grad(set_to_none=True)
            bad = nonfinite_loss(loss, {"policy loss": pg.loss, "value loss": v_loss, "entropy": ent})
            if bad is None:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), p.max_grad_norm)
                bad = None if bool(torch.isfinite(grad_norm)) else nonfinite_grads(policy) or "the gradient norm"
            if bad is not None:
                optimizer.zero_grad(set_to_none=True)
                return {}, bad
            optimizer.step()
            for k, v in zip(sums, (pg.loss, v_loss, ent, pg.approx_kl, pg.clip_frac, grad_norm)):
                sums[k].append(v.detach())             # kept on the device: no sync per minibatch
        if p.target_kl and float(torch.stack(sums["approx_kl"][-p.num_minibatches:]).mean()) > p.target_kl:
            break
    means = torch.stack([torch.stack(v).double().mean() for v in sums.values()]).tolist()  # one sync
    return dict(zip(sums, means)), None


def _validate(cfg) -> list[str]:
    if cfg.env.num_envs % cfg.ppo.num_minibatches:
        return [f"env.num_envs={cfg.env.num_envs} is not divisible by ppo.num_minibatches="
                f"{cfg.ppo.num_minibatches} (minibatches hold whole environments' sequences)"]
    return []


ALGORITHM = Algorithm(name="ppo", summary="recurrent PPO", train=train, section="ppo", config=PPOConfig,
                      validate=_validate, load=load_agent)
