"""IMPALA (Espeholt et al., 2018) with V-trace: asynchronous actor processes and one learner.

Actors (``agents/impala_actor.py``) are processes, each stepping ``envs_per_actor`` environments with a
CPU copy of the policy and writing unrolls of T steps plus one bootstrap step, with the core state
at the unroll's start, into shared memory. One learner update, top to bottom:

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
"""
from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.multiprocessing as mp
from tqdm import tqdm

from srwm_rl.run.common import StopSignal, build_policy, checkpoint_payload, make_env, save, seed_everything
from agents.impala_actor import ActorPool, SharedWeights, UnrollBuffers, actor_env_id, slots_per_actor
from srwm_rl.ops import vtrace
from srwm_rl.run.checkpoint import set_rng_state
from srwm_rl.run.config import ImpalaConfig, TrainConfig, resolve_device
from srwm_rl.ops.losses import entropy_bonus, policy_gradient_loss, value_loss
from srwm_rl.run.runlog import RunLogger, recent_mean


class NonFiniteLossError(RuntimeError):
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
        stats = {"loss/policy": float(pg), "loss/value": float(v_loss), "loss/entropy": float(ent),
                 "loss/total": float(loss), "vtrace/rho_mean": float(rho.mean()),
                 "vtrace/rho_clip_frac": float((rho > (ic.clip_rho_threshold or math.inf)).float().mean()),
                 "vtrace/vs_mean": float(vt.vs.mean()), "value_mean": float(values[:T].mean())}
    return loss, stats, tuple(x.detach() for x in state)


def chunk_encoder(policy, chunk: int) -> None:
    """Make ``policy.encoder`` process at most ``chunk`` observations at a time (same weights, same
    state-dict keys). On CPU the IMPALA CNN's forward + backward over one learner batch (~1,600 images)
    runs 2x faster in chunks of ~100-200, whose activations stay in cache."""
    enc = policy.encoder
    whole = enc.forward

    def forward(x):
        return whole(x) if x.shape[0] <= chunk else torch.cat([whole(c) for c in x.split(chunk)])

    enc.forward = forward


def start_method(device: torch.device) -> str:
    """fork is fast and safe for a CPU learner (actors run one thread each); a CUDA learner needs spawn."""
    return "fork" if device.type == "cpu" else "spawn"


def observation_spaces(cfg: TrainConfig):
    """(observation space, action space) of one actor's wrapped environment."""
    ic = cfg.impala
    env = make_env(cfg.env, cfg.policy, cfg.seed, num_envs=ic.envs_per_actor,
                   id=actor_env_id(cfg.env.id, 0, ic.envs_per_actor))
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def train(cfg: TrainConfig, run_dir: Path, resume: Optional[dict[str, Any]] = None,
          progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` with IMPALA into ``run_dir`` (continuing from the checkpoint dict ``resume``)."""
    ic, device = cfg.impala, resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    obs_space, action_space = observation_spaces(cfg)
    policy = build_policy(cfg, obs_space, action_space, device)
    if ic.learner_chunk and device.type == "cpu":
        chunk_encoder(policy, ic.learner_chunk)
    optimizer = torch.optim.RMSprop(policy.parameters(), lr=ic.learning_rate, alpha=ic.rmsprop_alpha,
                                    eps=ic.rmsprop_eps, momentum=ic.rmsprop_momentum)
    update, global_step, best = 0, 0, -math.inf
    if resume is not None:
        policy.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        set_rng_state(resume["rng"])
        update, global_step = resume["update"], resume["global_step"]
        best = resume.get("best_return", -math.inf)

    T, E = ic.unroll_length, ic.envs_per_actor
    batch_slots, steps_per_batch = ic.batch_size // E, T * ic.batch_size
    ctx = mp.get_context(start_method(device))
    k = slots_per_actor(ic.num_actors, batch_slots)
    buffers = UnrollBuffers(ic.num_actors * k, T, E, obs_space, action_space,
                            policy.initial_state(E, torch.device("cpu")))
    weights = SharedWeights(policy, ctx)
    pool = ActorPool(cfg, buffers, weights, ctx, k, start_update=update,
                     normalizers=resume.get("normalizers") if resume is not None else None)

    def payload(u: int) -> dict[str, Any]:
        return checkpoint_payload(cfg, policy, optimizer, None, global_step, u, best_return=best,
                                  normalizers=pool.normalizers)

    ep_returns, ep_lengths = deque(maxlen=100), deque(maxlen=100)
    pending: deque = deque()
    logger, bar = None, None
    interrupted, nonfinite_in_row, nonfinite_total = None, 0, 0
    window = {"lag": [], "wait": 0.0, "busy": 0.0}
    try:
        with StopSignal() as stop:
            pool.start()                                  # fork before the logger starts its threads
            logger = RunLogger(run_dir)
            bar = tqdm(total=cfg.total_steps, initial=global_step, disable=not progress, unit="step",
                       dynamic_ncols=True, smoothing=0.1)
            t_start, steps_start = time.time(), global_step
            while global_step < cfg.total_steps:
                # ---- 1-2. gather a batch of unrolls ---------------------------------------------
                t0 = time.time()
                while len(pending) < batch_slots and not stop:
                    for item in pool.collect(timeout=0.5):
                        pending.append(item)
                        ep_returns.extend(item[3])
                        ep_lengths.extend(item[4])
                if stop:
                    interrupted = stop.received
                    break
                items = [pending.popleft() for _ in range(batch_slots)]
                batch = buffers.batch([it[1] for it in items], device)
                for it in items:
                    pool.release(it[1])
                window["lag"] += [weights.version - it[2] for it in items]
                t1 = time.time()
                window["wait"] += t1 - t0
                # ---- 3-4. learn ---------------------------------------------------------------------
                lr = ic.learning_rate * max(0.0, 1.0 - global_step / cfg.total_steps) if ic.anneal_lr \
                    else ic.learning_rate
                optimizer.param_groups[0]["lr"] = lr
                loss, stats, state = impala_loss(policy, batch, ic)
                optimizer.zero_grad(set_to_none=True)
                grad_norm = torch.tensor(math.nan)
                if torch.isfinite(loss):
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), ic.max_grad_norm)
                global_step += steps_per_batch
                bar.update(steps_per_batch)
                if not torch.isfinite(grad_norm):            # skip the update, keep the weights
                    optimizer.zero_grad(set_to_none=True)
                    nonfinite_in_row, nonfinite_total = nonfinite_in_row + 1, nonfinite_total + 1
                    logger.log(global_step, {"nonfinite_skipped": nonfinite_total, "loss/total": float(loss.detach())})
                    if nonfinite_in_row >= ic.max_nonfinite:
                        raise NonFiniteLossError(_nonfinite_message(run_dir, nonfinite_in_row, global_step,
                                                                    lambda: payload(update)))
                    continue
                nonfinite_in_row = 0
                optimizer.step()
                update += 1
                weights.publish(policy)
                window["busy"] += time.time() - t1
                # ---- logging and checkpoints ------------------------------------------------------
                mean_ret = recent_mean(list(ep_returns))
                if len(ep_returns) >= min(10, ic.num_actors * E) and mean_ret > best:
                    best = mean_ret
                    save(run_dir, "best", payload(update))
                if update % cfg.log_every == 0 or global_step >= cfg.total_steps:
                    sps = (global_step - steps_start) / max(time.time() - t_start, 1e-9)
                    lag = window["lag"]
                    metrics = {"episode_return": mean_ret, "episode_length": recent_mean(list(ep_lengths)),
                               "learning_rate": lr, "sps": sps, "grad_norm": float(grad_norm), **stats,
                               "policy_lag": float(np.mean(lag)), "policy_lag_max": float(np.max(lag)),
                               "learner_wait_frac": window["wait"] / max(window["wait"] + window["busy"], 1e-9),
                               "actor_restarts": pool.restarts, "nonfinite_skipped": nonfinite_total}
                    metrics.update({k: float(v.mean()) for k, v in policy.core.introspect(state).items()})
                    logger.log(global_step, metrics)
                    bar.set_postfix(sps=f"{sps:.0f}", ret=f"{mean_ret:.2f}", lag=f"{np.mean(lag):.1f}")
                    window = {"lag": [], "wait": 0.0, "busy": 0.0}
                if update % cfg.checkpoint_every == 0:
                    save(run_dir, "latest", payload(update))
        save(run_dir, "latest", payload(update))
    finally:
        pool.close()
        if bar is not None:
            bar.close()
        if logger is not None:
            logger.close()
    return {"global_step": global_step, "episode_return": recent_mean(list(ep_returns)), "best_return": best,
            "interrupted": interrupted, "policy": policy, "actor_restarts": pool.restarts}


def _nonfinite_message(run_dir: Path, n: int, step: int, payload) -> str:
    """Keep the last good checkpoint (write the current, still finite, weights only if there is none)."""
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    if not path.exists():
        save(run_dir, "latest", payload())
    return (f"IMPALA stopped: the loss or its gradient was non-finite in {n} updates in a row (at step {step}; "
            f"each was skipped). The last good checkpoint is {path}. Try a lower --impala.learning_rate, "
            f"--env.clip_reward 1, or a smaller --impala.max_grad_norm.")
