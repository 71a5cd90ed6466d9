"""Does every action head learn? PPO (feed-forward core) on SpacesTest-v0 (envs/testing.py: match a
target shown in the observation; 8 steps per episode, return 8 = every step right) for each action
space, Box actions both clipped and tanh-squashed, several seeds each. Greedy evaluation on 100
episodes per seed, next to the untrained policy of the same seed; mean and 95% CI over seeds.

    .venv/bin/python benchmarks/action_spaces.py [--steps 20000] [--seeds 3] [--obs tuple]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path[0] = str(Path(__file__).resolve().parents[1])     # the repository, not benchmarks/ (its envs.py)

import envs.testing  # noqa: F401,E402  (registers SpacesTest-v0)
from agents.ppo import PPOConfig  # noqa: E402
from agents.registry import TrainConfig, train  # noqa: E402
from srwm_rl.eval.evaluate import evaluate  # noqa: E402
from srwm_rl.eval.stats import mean_ci  # noqa: E402
from srwm_rl.nn.cores import CoreConfig  # noqa: E402
from srwm_rl.nn.policy import PolicyConfig  # noqa: E402
from srwm_rl.run.agent import build_policy, load_agent  # noqa: E402
from srwm_rl.run.config import EnvConfig  # noqa: E402

CASES = [("discrete", "clip"), ("multidiscrete", "clip"), ("multibinary", "clip"), ("box", "clip"), ("box", "tanh")]


def config(obs: str, action: str, continuous: str, seed: int, steps: int) -> TrainConfig:
    return TrainConfig(
        seed=seed, total_steps=steps, device="cpu", torch_threads=1,
        env=EnvConfig(id="envs.testing:SpacesTest-v0", num_envs=8, kwargs={"obs": obs, "action": action}),
        policy=PolicyConfig(mlp_hidden=(64,), prev_action=False, prev_reward=False, continuous_actions=continuous),
        core=CoreConfig(kind="none", hidden_size=64),
        ppo=PPOConfig(num_steps=64, num_minibatches=2, learning_rate=1e-3, ent_coef=0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--obs", default="tuple")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"| action space | Box handling | trained (greedy) | untrained (greedy) | seeds | s/run |\n|---|---|---|---|---|---|")
    for action, continuous in CASES:
        trained, untrained, secs = [], [], []
        for seed in range(1, args.seeds + 1):
            cfg = config(args.obs, action, continuous, seed, args.steps)
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.time()
                train(cfg, Path(tmp) / "run", progress=False)
                secs.append(time.time() - t0)
                agent = load_agent(Path(tmp) / "run")
                trained.append(evaluate("run", agent=agent, num_episodes=100, seed=seed)[1]["return"]["mean"])
                torch.manual_seed(seed)
                fresh = build_policy(cfg, agent.policy.obs_space, agent.policy.action_space, "cpu")
                agent0 = type(agent)(agent.config, fresh, agent.checkpoint)
                untrained.append(evaluate("run", agent=agent0, num_episodes=100, seed=seed)[1]["return"]["mean"])
        t, u = mean_ci(trained), mean_ci(untrained)
        print(f"| {action} | {continuous if action == 'box' else '-'} | {t['mean']:.2f} "
              f"[{t['ci95'][0]:.2f}, {t['ci95'][1]:.2f}] | {u['mean']:.2f} [{u['ci95'][0]:.2f}, {u['ci95'][1]:.2f}] "
              f"| {len(trained)} | {sum(secs) / len(secs):.0f} |", flush=True)


if __name__ == "__main__":
    main()
