"""The environment of a run, built from its configuration, and the normalisers a checkpoint keeps.

    env = make_env(cfg.env, cfg.policy, seed, discount=0.99)      # what training steps
    load_normalizer_state(eval_env, ckpt["normalizers"], update=False)   # frozen, for evaluation

Wrapping order: base -> clip rewards -> normalise observations -> previous action and (clipped,
raw-scale) reward as inputs -> novelty bonus -> normalise the training reward. The policy sees the
previous reward before the bonus and the normalisation, so its input is the env's reward and does not
drift as the return statistics change.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import envs
from envs.wrappers import ClipReward, NormalizeObservation, NormalizeReward, NoveltyBonus, PrevActionReward
from srwm_rl.nn.policy import PolicyConfig
from srwm_rl.run.checkpoint import CheckpointError
from srwm_rl.run.config import EnvConfig

NORMALIZERS = (NormalizeObservation, NormalizeReward)


def env_options(cfg: EnvConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`envs.make` for ``cfg``: the options its family declares, the
    trial length, and the env's own constructor kwargs."""
    kw: dict[str, Any] = {name: getattr(cfg, name) for name in envs.family_of(cfg.id).options}
    if cfg.trial_episodes:
        kw["trial_episodes"] = cfg.trial_episodes
    kw.update(cfg.kwargs)
    return kw


def make_env(cfg: EnvConfig, policy: PolicyConfig, seed: int, num_envs: Optional[int] = None,
             discount: float = 0.99, **overrides: Any):
    """The wrapped batched environment of a run (see the module docstring).

    ``discount``: the discount of the return whose scale ``normalize_reward`` divides rewards by - the
    training algorithm's own gamma. ``overrides``: EnvConfig fields to replace (e.g. another
    ``task_split`` or level range for evaluation).
    """
    env_cfg = replace(cfg, **overrides) if overrides else cfg
    return wrap_env(envs.make(env_cfg.id, num_envs or env_cfg.num_envs, seed, **env_options(env_cfg)),
                    env_cfg, policy, discount)


def wrap_env(env, env_cfg: EnvConfig, policy: PolicyConfig, discount: float = 0.99):
    """The wrappers of :func:`make_env` around a base VecEnv (module docstring)."""
    if env_cfg.clip_reward > 0:
        env = ClipReward(env, -env_cfg.clip_reward, env_cfg.clip_reward)
    if env_cfg.normalize_obs:
        env = NormalizeObservation(env)
    if policy.prev_action or policy.prev_reward:
        env = PrevActionReward(env)
    if env_cfg.novelty_bonus > 0:
        env = NoveltyBonus(env, env_cfg.novelty_bonus, env_cfg.novelty_rarity)
    if env_cfg.normalize_reward:
        env = NormalizeReward(env, gamma=discount)
    return env


def normalizers(env) -> list:
    """The normalising wrappers inside ``env``, outermost first."""
    found = []
    while env is not None:
        if isinstance(env, NORMALIZERS):
            found.append(env)
        env = getattr(env, "env", None)
    return found


def normalizer_state(env) -> list[dict]:
    return [w.state_dict() for w in normalizers(env)]


def load_normalizer_state(env, states: list[dict], update: Optional[bool] = None) -> None:
    """Load checkpointed normaliser states into ``env``; ``update=False`` freezes them (evaluation)."""
    ws = normalizers(env)
    if len(ws) != len(states):
        raise CheckpointError(f"the checkpoint has {len(states)} normaliser states, the environment {len(ws)}")
    for w, s in zip(ws, states):
        w.load_state_dict(s)
        if update is not None:
            w.update = update
