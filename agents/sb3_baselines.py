"""Baselines on exactly our environments: Stable-Baselines3 PPO and sb3-contrib RecurrentPPO.

They train through the SB3 adapter of our batched environments and write the same run directory
(config.json, metrics.csv, TensorBoard, checkpoints/latest.pt and best.pt, learning_curve.png), so a
comparison with our agents is one command each. The checkpoint holds SB3's policy state dict and
optimizer state in our atomic format; ``--resume`` continues the run.
"""
from __future__ import annotations

import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import gymnasium as gym
import torch
from stable_baselines3.common.callbacks import BaseCallback

from srwm_rl.run.common import StopSignal, load_normalizer_state, make_env, normalizer_state, save, seed_everything
from envs.sb3 import SB3VecEnvAdapter as SB3VecEnv
from srwm_rl.run.checkpoint import rng_state, set_rng_state, space_to_dict
from srwm_rl.run.config import TrainConfig, resolve_device, to_dict
from srwm_rl.run.runlog import RunLogger, recent_mean


class _RunCallback(BaseCallback):
    """Feeds our run directory: metrics after each rollout, best/latest checkpoints, Ctrl-C handling."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, env, stop: StopSignal, start_step: int, best: float,
                 progress: bool):
        super().__init__()
        self.cfg, self.run_dir, self.venv, self.stop = cfg, run_dir, env, stop
        self.logger_ = RunLogger(run_dir)
        self.returns, self.lengths = deque(maxlen=100), deque(maxlen=100)
        self.start_step, self.best, self.rollouts = start_step, best, 0
        self.t0 = time.time()
        self.bar = None
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=cfg.total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            ep = info.get("episode")
            if ep is not None:
                self.returns.append(float(ep["r"]))
                self.lengths.append(float(ep["l"]))
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return not self.stop

    def _on_rollout_end(self) -> None:
        self.rollouts += 1
        step = self.start_step + self.model.num_timesteps - self._offset
        mean_ret = recent_mean(list(self.returns))
        if len(self.returns) >= 10 and mean_ret > self.best:
            self.best = mean_ret
            save(self.run_dir, "best", self.payload())
        if self.rollouts % self.cfg.log_every == 0:
            sps = (self.model.num_timesteps - self._offset) / max(time.time() - self.t0, 1e-9)
            train = {k.replace("train/", "loss/" if "loss" in k else ""): v
                     for k, v in self.model.logger.name_to_value.items() if k.startswith("train/")}
            self.logger_.log(step, {"episode_return": mean_ret, "episode_length": recent_mean(list(self.lengths)),
                                    "sps": sps, **train})
            if self.bar is not None:
                self.bar.set_postfix(sps=f"{sps:.0f}", ret=f"{mean_ret:.2f}")
        if self.rollouts % self.cfg.checkpoint_every == 0:
            save(self.run_dir, "latest", self.payload())

    def _on_training_start(self) -> None:
        self._offset = self.model.num_timesteps

    def payload(self) -> dict[str, Any]:
        pol = self.model.policy
        return {"config": to_dict(self.cfg), "obs_space": space_to_dict(self.venv.observation_space),
                "action_space": space_to_dict(self.venv.action_space), "model": pol.state_dict(),
                "optimizer": pol.optimizer.state_dict(), "normalizers": normalizer_state(self.venv),
                "global_step": self.start_step + self.model.num_timesteps - self._offset,
                "update": self.rollouts, "rng": rng_state(), "best_return": self.best}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.logger_.close()


def _sb3_kwargs(cfg: TrainConfig, n_envs: int) -> dict[str, Any]:
    p = cfg.ppo
    lr = (lambda frac: p.learning_rate * frac) if p.anneal_lr else p.learning_rate
    return dict(n_steps=p.num_steps, batch_size=max(1, p.num_steps * n_envs // p.num_minibatches),
                n_epochs=p.update_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_coef,
                ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm, learning_rate=lr,
                normalize_advantage=p.norm_adv, target_kl=p.target_kl or None, seed=cfg.seed,
                device=resolve_device(cfg.device), verbose=0)


def _train(cls, policy_kinds: dict[str, str], cfg: TrainConfig, run_dir: Path, resume: Optional[dict],
           progress: bool, **extra) -> dict[str, Any]:
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    env = make_env(cfg.env, cfg.policy, cfg.seed)
    vec = SB3VecEnv(env)
    space = env.observation_space
    kind = "dict" if isinstance(space, gym.spaces.Dict) else "image" if len(getattr(space, "shape", ())) == 3 else "vector"
    model = cls(policy_kinds[kind], vec, **_sb3_kwargs(cfg, env.num_envs), **extra)
    start, best = 0, -math.inf
    if resume is not None:
        model.policy.load_state_dict(resume["model"])
        model.policy.optimizer.load_state_dict(resume["optimizer"])
        load_normalizer_state(env, resume["normalizers"])
        set_rng_state(resume["rng"])
        start, best = resume["global_step"], resume.get("best_return", -math.inf)
    with StopSignal() as stop:
        cb = _RunCallback(cfg, run_dir, env, stop, start, best, progress)
        model.learn(total_timesteps=max(cfg.total_steps - start, 1), callback=cb)
        save(run_dir, "latest", cb.payload())
        cb.close()
    vec.close()
    return {"global_step": cb.payload()["global_step"], "episode_return": recent_mean(list(cb.returns)),
            "best_return": cb.best, "interrupted": stop.received, "model": model}


def train_ppo(cfg: TrainConfig, run_dir: Path, resume: Optional[dict] = None, progress: bool = True, **extra):
    """Stable-Baselines3 PPO (feed-forward) on our environment."""
    from stable_baselines3 import PPO
    return _train(PPO, {"dict": "MultiInputPolicy", "image": "CnnPolicy", "vector": "MlpPolicy"},
                  cfg, run_dir, resume, progress, **extra)


def train_recurrent_ppo(cfg: TrainConfig, run_dir: Path, resume: Optional[dict] = None, progress: bool = True,
                        **extra):
    """sb3-contrib RecurrentPPO (LSTM policy) on our environment."""
    from sb3_contrib import RecurrentPPO
    return _train(RecurrentPPO, {"dict": "MultiInputLstmPolicy", "image": "CnnLstmPolicy", "vector": "MlpLstmPolicy"},
                  cfg, run_dir, resume, progress, **extra)
