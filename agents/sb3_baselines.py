"""Baselines on exactly our environments: Stable-Baselines3 PPO and sb3-contrib RecurrentPPO.

They train through the SB3 adapter of our batched environments, read the ``ppo`` section, and run
in the same harness as our algorithms (run directory, metrics, best/latest checkpoints, resume,
signals, time limit), so a comparison with our agents is one command each. The checkpoint holds
SB3's policy state dict and optimizer state in our atomic format; their policies are SB3's, so
``srwm-rl evaluate`` does not load them.
"""
from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym

from agents.algorithm import Algorithm, probe_env_only
from agents.ppo import PPOConfig
from srwm_rl.run.environment import make_env
from srwm_rl.run.harness import Run
from srwm_rl.run.rollout import EpisodeStats



def _ppo() -> type:
    from stable_baselines3 import PPO
    return PPO


def _recurrent_ppo() -> type:
    from sb3_contrib import RecurrentPPO
    return RecurrentPPO


def _sb3_kwargs(p: PPOConfig, n_envs: int, seed: int, device) -> dict[str, Any]:
    lr = (lambda frac: p.learning_rate * frac) if p.anneal_lr else p.learning_rate
    return dict(n_steps=p.num_steps, batch_size=max(1, p.num_steps * n_envs // p.num_minibatches),
                n_epochs=p.update_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_coef,
                ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm, learning_rate=lr,
                normalize_advantage=p.norm_adv, target_kl=p.target_kl or None, seed=seed, device=device, verbose=0)


def _callback(run: Run, episodes: EpisodeStats):
    """An SB3 callback that feeds the harness: episodes after each step, one update per rollout."""
    from stable_baselines3.common.callbacks import BaseCallback

    class RunCallback(BaseCallback):
        def _on_training_start(self) -> None:
            self.counted = self.model.num_timesteps

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                ep = info.get("episode")
                if ep is not None:
                    episodes.add([float(ep["r"])], [float(ep["l"])])
            return not run.done

        def _on_rollout_end(self) -> None:
            steps, self.counted = self.model.num_timesteps - self.counted, self.model.num_timesteps
            train = {k.replace("train/", "loss/" if "loss" in k else ""): v
                     for k, v in self.model.logger.name_to_value.items() if k.startswith("train/")}
            run.end_update(steps, score=episodes.score, metrics=lambda: {
                "episode_return": episodes.mean_return, "episode_length": episodes.mean_length, **train})

    return RunCallback()


def _train(run: Run, model_class: Callable[[], type], policies: dict[str, str]) -> dict[str, Any]:
    """Train ``model_class()`` with the SB3 policy ``policies[kind of observation]``."""
    from envs.sb3 import SB3VecEnvAdapter      # imports Stable-Baselines3: only when it is used
    cfg, p = run.cfg, run.cfg.ppo
    env = make_env(cfg.env, cfg.policy, cfg.seed, discount=p.gamma)
    run.set_threads(env.observation_space)
    space = env.observation_space
    obs_kind = "dict" if isinstance(space, gym.spaces.Dict) else "image" if len(getattr(space, "shape", ())) == 3 \
        else "vector"
    vec = SB3VecEnvAdapter(env)
    kwargs = _sb3_kwargs(p, env.num_envs, cfg.seed, run.device)
    if p.anneal_lr:                              # the run's horizon (time limit included), not SB3's own
        kwargs["learning_rate"] = lambda _: run.annealed(p.learning_rate)
    model = model_class()(policies[obs_kind], vec, **kwargs)
    # SB3's default logger makes an empty SB3-<date> folder in the system temp dir on every learn(); the
    # harness logs, so the model gets a logger without outputs (its values still reach the callback)
    from stable_baselines3.common.logger import Logger
    model.set_logger(Logger(folder=None, output_formats=[]))
    run.track(model.policy, model.policy.optimizer, env.observation_space, env.action_space, env=env)
    episodes = EpisodeStats(env.num_envs)
    run.start(total=cfg.total_steps)
    try:
        model.learn(total_timesteps=max(cfg.total_steps - run.global_step, 1), callback=_callback(run, episodes))
        return run.finish(episode_return=episodes.mean_return, model=model)
    finally:
        vec.close()


SB3_PPO = Algorithm(
    name="sb3-ppo", summary="Stable-Baselines3 PPO (feed-forward baseline)", section="ppo", config=PPOConfig,
    probe=probe_env_only, train=lambda run: _train(run, _ppo, {"dict": "MultiInputPolicy", "image": "CnnPolicy",
                                                          "vector": "MlpPolicy"}))
SB3_RECURRENT_PPO = Algorithm(
    name="sb3-recurrent-ppo", summary="sb3-contrib RecurrentPPO (LSTM baseline)", section="ppo", config=PPOConfig,
    probe=probe_env_only, train=lambda run: _train(run, _recurrent_ppo, {"dict": "MultiInputLstmPolicy",
                                                                    "image": "CnnLstmPolicy",
                                                                    "vector": "MlpLstmPolicy"}))
