"""Rollouts for evaluation: run a policy for a fixed number of episodes (or trials) and record each one.

    records = run_episodes(policy, env, 200, deterministic=True, seed=0)      # any wrapped VecEnv

Unbiased counting: every environment of the batch gets a fixed quota of episodes (or trials), decided
before the rollout. Collecting "the first N episodes to finish" would favour short episodes (in most
games, the failures).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from srwm_rl.nn.policy import obs_to_torch


@dataclass
class EpisodeRecord:
    """One finished episode. ``seed``: Procgen level seed or in-context task id (-1 if unknown);
    ``trial``: 0..num_episodes-1 over the whole evaluation; ``success``: NaN when undefined."""

    env_index: int
    game: str
    seed: int
    trial: int
    episode_in_trial: int
    ret: float
    length: int
    success: float


def _row(info: dict, key: str, i: int, default):
    v = info.get(key)
    return default if v is None else v[i]


def run_episodes(policy, env, num_episodes: int, *, deterministic: bool = True, seed: int = 0,
                 on_step: Optional[Callable[[Any, Any, Any, dict], None]] = None, capture_frames: bool = False,
                 env_name: str = "", max_steps: Optional[int] = None,
                 on_progress: Optional[Callable[[int], None]] = None) -> list[EpisodeRecord]:
    """Run ``policy`` on the batched ``env`` until each env has finished its quota; returns the records.

    ``num_episodes`` counts trials when ``env`` has ``trial_episodes`` (every inner episode is
    recorded, with its ``episode_in_trial``), episodes otherwise; env i's quota is
    ``num_episodes // N`` plus one for the first ``num_episodes % N`` envs. ``seed`` seeds the env
    reset and (in a forked RNG, so the caller's stream is untouched) the action sampling.
    ``on_step(obs, dist, state, info)`` is called after every step with the obs acted on, the action
    distribution over [N], the new core state and the step's info plus ``action``, ``reward`` (the
    environment's own reward, before any clipping or normalisation: what the episode returns add up),
    ``train_reward`` (what the policy was trained on), ``first``
    (of the acted-on obs), ``active`` (bool [N]: the step belongs to a counted episode) and, with
    ``capture_frames``, ``frames`` (``env.get_frames()`` before the step). ``max_steps`` stops early
    (unfinished episodes are not recorded). ``on_progress(n)``: called with the number of counted
    episodes (trials) finished so far whenever it grows (progress bars). ``env_name``: the records' ``game`` where the env reports
    none (Procgen reports its game).
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, (int, np.integer)) or num_episodes < 1:
        raise ValueError(f"num_episodes={num_episodes!r}: must be an integer >= 1")
    N = env.num_envs
    trials = int(getattr(env, "trial_episodes", 0) or 0)
    quota = num_episodes // N + (np.arange(N) < num_episodes % N)
    offset = np.cumsum(quota) - quota               # global trial number of env i's first trial
    finished = np.zeros(N, np.int64)
    device = next(policy.parameters()).device
    records: list[EpisodeRecord] = []
    was_training = policy.training
    policy.eval()
    steps = 0
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.inference_mode():
            torch.manual_seed(seed)
            obs = env.reset(seed=seed)
            first = env.first
            state = policy.initial_state(N, device)
            while (finished < quota).any() and (max_steps is None or steps < max_steps):
                active = finished < quota
                dist, _, state = policy.step(obs_to_torch(obs, device), state, torch.as_tensor(first, device=device))
                action = (dist.mode() if deterministic else dist.sample()).cpu().numpy()
                frames = env.get_frames() if capture_frames else None
                next_obs, reward, _, _, info = env.step(action)
                ends = (info["inner_episode_done"] if trials else info["episode_done"]) & active
                for i in np.flatnonzero(ends):
                    if trials:
                        k, ret, length = (int(info["inner_episode_index"][i]), info["inner_episode_return"][i],
                                          info["inner_episode_length"][i])
                    else:
                        k, ret, length = 0, info["episode_return"][i], info["episode_length"][i]
                    level = _row(info, "prev_level_seed", i, _row(info, "task_id", i, -1))
                    success = _row(info, "level_complete", i, _row(info, "success", i, math.nan))
                    records.append(EpisodeRecord(int(i), str(_row(info, "game", i, env_name)), int(level),
                                                 int(offset[i] + finished[i]), k, float(ret), int(length),
                                                 float(success)))
                if on_step is not None:
                    on_step(obs, dist, state, {**info, "action": action, "reward": info.get("raw_reward", reward),
                                               "train_reward": reward, "first": first, "active": active,
                                               "frames": frames})
                newly = info["episode_done"] & active
                finished += newly
                if on_progress is not None and newly.any():
                    on_progress(int(finished.sum()))
                obs, first = next_obs, env.first
                steps += 1
    finally:
        policy.train(was_training)
    records.sort(key=lambda r: (r.trial, r.episode_in_trial))
    return records
