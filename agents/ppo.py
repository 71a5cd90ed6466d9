"""Recurrent PPO (Schulman et al., 2017) for policies with any registered core.

One update, top to bottom:
  1. Roll out T steps from N environments with the policy in no-grad mode, keeping the core
     state at the rollout start. A truncated episode's last reward gets gamma * V(final obs).
  2. GAE over the rollout (dones = terminated or truncated; memory resets where ``first``).
  3. For each epoch, split the *environments* into minibatches; re-run each minibatch's whole
     sequences through the core from the stored start state with the episode masks, so gradients
     flow through every step of the unroll (SRWM self-modifications included).
  4. Clipped surrogate + value loss - entropy bonus, gradient-norm clipping, Adam.
"""
from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from srwm_rl.run.common import (StopSignal, build_policy, checkpoint_payload, configure_threads, load_normalizer_state, make_env,
                           normalizer_state, save, seed_everything)
from srwm_rl.run.checkpoint import set_rng_state
from srwm_rl.run.config import TrainConfig, resolve_device
from srwm_rl.ops.losses import entropy_bonus, ppo_clip_loss, value_loss
from srwm_rl.nn.policy import obs_to_torch
from srwm_rl.ops.returns import gae
from srwm_rl.run.runlog import RunLogger, recent_mean


def _map(obs, fn):
    """Apply ``fn`` to an observation tensor or to each tensor of a dict observation."""
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)


def _select(state, idx):
    return tuple(s[idx] for s in state)


class Rollout:
    """Time-major storage for one rollout of T steps from N environments, on the learner's device."""

    def __init__(self, T: int, N: int, obs_example, action_shape, device):
        self.obs = _map(obs_example, lambda v: torch.zeros((T, *v.shape), dtype=v.dtype, device=device))
        self.first = torch.zeros(T, N, dtype=torch.bool, device=device)
        self.actions = torch.zeros((T, N, *action_shape), device=device)
        self.logp, self.values, self.rewards = (torch.zeros(T, N, device=device) for _ in range(3))
        self.dones = torch.zeros(T, N, dtype=torch.bool, device=device)

    def put_obs(self, t: int, obs) -> None:
        if isinstance(obs, dict):
            for k, v in obs.items():
                self.obs[k][t] = v
        else:
            self.obs[t] = obs


@torch.no_grad()
def collect(policy, env, buf: Rollout, obs, first, state, gamma: float, on_info=None, stop=None):
    """Fill ``buf`` with T steps from ``env`` starting at (obs, first, state); returns the carry
    (obs, first, state) for the next rollout and the value of its first observation [N].

    A truncated episode's last reward gets ``gamma * V(final obs)``, the value computed from the
    memory before the reset. Stops early (buffer partly filled) when ``stop`` becomes true.
    """
    T, device = buf.first.shape[0], buf.first.device
    for t in range(T):
        buf.put_obs(t, obs)
        buf.first[t] = first
        dist, value, state = policy(_map(obs, lambda v: v.unsqueeze(0)), state, first.unsqueeze(0))
        action = dist.sample()[0]
        buf.actions[t] = action.reshape(buf.actions[t].shape)
        buf.logp[t], buf.values[t] = dist.log_prob(action.unsqueeze(0))[0], value[0]
        obs_np, reward, term, trunc, info = env.step(action.cpu().numpy())
        reward = torch.as_tensor(reward, device=device, dtype=torch.float32)
        if trunc.any():
            idx = np.flatnonzero(trunc)
            fin = obs_to_torch(_map(info["final_obs"], lambda v: v[idx]), device)
            _, v_fin, _ = policy(_map(fin, lambda v: v.unsqueeze(0)), _select(state, idx),
                                 torch.zeros(1, len(idx), dtype=torch.bool, device=device))
            reward[idx] += gamma * v_fin[0]
        buf.rewards[t] = reward
        buf.dones[t] = torch.as_tensor(term | trunc, device=device)
        obs, first = obs_to_torch(obs_np, device), torch.as_tensor(env.first, device=device)
        if on_info is not None:
            on_info(info)
        if stop:
            return obs, first, state, None
    _, next_value, _ = policy(_map(obs, lambda v: v.unsqueeze(0)), state, first.unsqueeze(0))
    return obs, first, state, next_value[0]


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = target.var()
    return float("nan") if var == 0 else float(1 - (target - pred).var() / var)


def train(cfg: TrainConfig, run_dir: Path, resume: Optional[dict[str, Any]] = None,
          progress: bool = True, callback: Optional[Callable[[int, Any, Any], bool]] = None) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (continuing from the checkpoint dict ``resume`` if given).

    ``callback(global_step, policy, env)`` runs after every update; returning True ends training
    (the learning benchmarks use it to stop at a target evaluation return).
    """
    p, device = cfg.ppo, resolve_device(cfg.device)
    seed_everything(cfg.seed)
    env = make_env(cfg.env, cfg.policy, cfg.seed)
    configure_threads(cfg, env.observation_space, device)
    policy = build_policy(cfg, env.observation_space, env.action_space, device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=p.learning_rate, eps=1e-5)
    T, N = p.num_steps, env.num_envs
    num_updates = math.ceil(cfg.total_steps / (T * N))
    start_update, global_step, best = 0, 0, -math.inf
    if resume is not None:
        policy.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        load_normalizer_state(env, resume["normalizers"])
        set_rng_state(resume["rng"])
        start_update, global_step = resume["update"], resume["global_step"]
        best = resume.get("best_return", -math.inf)

    logger = RunLogger(run_dir)
    obs = obs_to_torch(env.reset(seed=cfg.seed + 7919 * start_update), device)
    first = torch.as_tensor(env.first, device=device)
    state = policy.initial_state(N, device)
    buf = Rollout(T, N, obs, env.action_space.shape, device)
    ep_returns, ep_lengths = deque(maxlen=100), deque(maxlen=100)

    def episodes(info) -> None:
        done = info["episode_done"]
        if done.any():
            ep_returns.extend(info["episode_return"][done].tolist())
            ep_lengths.extend(info["episode_length"][done].tolist())

    bar = tqdm(total=num_updates * T * N, initial=global_step, disable=not progress, unit="step",
               dynamic_ncols=True, smoothing=0.1)
    interrupted, completed = None, start_update
    t_start, steps_start = time.time(), global_step

    def payload(u: int) -> dict[str, Any]:
        return checkpoint_payload(cfg, policy, optimizer, env, global_step, u, best_return=best)

    with StopSignal() as stop:
        for update in range(start_update, num_updates):
            if p.anneal_lr:
                optimizer.param_groups[0]["lr"] = p.learning_rate * (1.0 - update / num_updates)
            state0 = state
            # ---- 1. rollout -----------------------------------------------------------------
            obs, first, state, next_value = collect(policy, env, buf, obs, first, state, p.gamma, episodes, stop)
            if stop:
                interrupted = stop.received
                break
            state = tuple(s.detach() for s in state)
            # ---- 2. advantages -------------------------------------------------------------------
            adv, ret = gae(buf.rewards, buf.values, buf.dones, next_value, p.gamma, p.gae_lambda)
            # ---- 3-4. optimise on whole sequences, minibatches split by environment ---------------
            stats = _optimise(policy, optimizer, buf, state0, adv, ret, cfg)
            global_step += T * N
            bar.update(T * N)
            # ---- logging and checkpoints --------------------------------------------------------
            mean_ret = recent_mean(list(ep_returns))
            if len(ep_returns) >= min(10, N) and mean_ret > best:
                best = mean_ret
                save(run_dir, "best", payload(update + 1))
            if (update + 1) % cfg.log_every == 0 or update + 1 == num_updates:
                sps = (global_step - steps_start) / max(time.time() - t_start, 1e-9)
                metrics = {"episode_return": mean_ret, "episode_length": recent_mean(list(ep_lengths)),
                           "learning_rate": optimizer.param_groups[0]["lr"], "sps": sps,
                           "explained_variance": explained_variance(buf.values.flatten(), ret.flatten()), **stats}
                metrics.update({k: float(v.mean()) for k, v in policy.core.introspect(state).items()})
                logger.log(global_step, metrics)
                bar.set_postfix(sps=f"{sps:.0f}", ret=f"{mean_ret:.2f}")
            if (update + 1) % cfg.checkpoint_every == 0:
                save(run_dir, "latest", payload(update + 1))
            completed = update + 1
            if cfg.time_limit and time.time() - t_start > cfg.time_limit:
                break
            if callback is not None and callback(global_step, policy, env):
                break
    save(run_dir, "latest", payload(completed))
    bar.close()
    logger.close()
    env.close()
    return {"global_step": global_step, "episode_return": recent_mean(list(ep_returns)),
            "best_return": best, "interrupted": interrupted, "policy": policy,
            "normalizers": normalizer_state(env)}


def _optimise(policy, optimizer, buf: Rollout, state0, adv, ret, cfg: TrainConfig) -> dict[str, float]:
    p = cfg.ppo
    N = buf.first.shape[1]
    sums: dict[str, list[float]] = {k: [] for k in ("loss/policy", "loss/value", "loss/entropy", "approx_kl",
                                                    "clip_frac", "grad_norm")}
    for _ in range(p.update_epochs):
        for mb in torch.randperm(N, device=buf.first.device).view(p.num_minibatches, -1):
            obs = _map(buf.obs, lambda v: v[:, mb])
            dist, value, _ = policy(obs, _select(state0, mb), buf.first[:, mb])
            a = buf.actions[:, mb]
            logp = dist.log_prob(a.long() if policy.n_actions is not None else a)
            mb_adv = adv[:, mb]
            if p.norm_adv and mb_adv.numel() > 1:
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
            pg = ppo_clip_loss(logp, buf.logp[:, mb], mb_adv, p.clip_coef)
            v_loss = value_loss(value, ret[:, mb], buf.values[:, mb], p.clip_coef if p.clip_vloss else None)
            ent = entropy_bonus(dist.entropy())
            loss = pg.loss + p.vf_coef * v_loss - p.ent_coef * ent
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), p.max_grad_norm)
            optimizer.step()
            for k, v in zip(sums, (pg.loss, v_loss, ent, pg.approx_kl, pg.clip_frac, grad_norm)):
                sums[k].append(float(v.detach()))
        if p.target_kl and np.mean(sums["approx_kl"][-p.num_minibatches:]) > p.target_kl:
            break
    return {k: float(np.mean(v)) for k, v in sums.items()}
