"""Learning benchmarks of recurrent PPO. Prints numbers; the thresholds are targets, not tests.

    .venv/bin/python benchmarks/ppo_learning.py cartpole [--seeds 1 2 3] [--budget 300000] [--minutes 20]
        [--lr R] [--epochs E] [--short-conv K]
        SRWM-PPO, LSTM-PPO and sb3-contrib RecurrentPPO (MlpLstmPolicy, rl-zoo's settings for this task)
        on CartPole without velocity: env steps and wall time until the mean return of 20 greedy
        evaluation episodes reaches 475 (evaluated every --eval-every steps).
    .venv/bin/python benchmarks/ppo_learning.py bandit [--budget 2000000]
        SRWM-PPO on the 5-armed, 100-pull Bernoulli bandit; mean cumulative regret on held-out tasks
        next to Thompson sampling and UCB1 on the same tasks (target: within 10% of Thompson sampling).
    .venv/bin/python benchmarks/ppo_learning.py darkroom [--cores srwm lstm] [--budget 600000]
        Dark Room (5x5 preset of the demo, or --preset darkroom for 9x9), 4 episodes per trial: return
        of each episode of a trial on held-out goals (target: last episode clearly above the first).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.registry import TrainConfig, train  # noqa: E402
from srwm_rl.app.presets import get_preset  # noqa: E402
from srwm_rl.nn.cores import SHORT_CONV_CORES  # noqa: E402
from srwm_rl.eval.rollout import run_episodes  # noqa: E402
from srwm_rl.eval.stats import adaptation_curve  # noqa: E402
from srwm_rl.run.config import from_dict, merge, to_dict  # noqa: E402
from srwm_rl.run.environment import load_normalizer_state, make_env  # noqa: E402


def preset_config(name: str, **top) -> TrainConfig:
    return replace(from_dict(TrainConfig, merge(to_dict(TrainConfig()), get_preset(name))), **top)


def eval_env(cfg: TrainConfig, norm_states, n: int, seed: int, **overrides):
    """An evaluation env using the training normalisers' statistics, frozen."""
    env = make_env(cfg.env, cfg.policy, seed, num_envs=n, **overrides)
    load_normalizer_state(env, norm_states, update=False)
    return env


# ---- CartPole without velocity -------------------------------------------------------------------

def cartpole_ours(core: str, seed: int, budget: int, minutes: float, eval_every: int,
                  lr: float | None = None, epochs: int | None = None, short_conv: int | None = None) -> dict:
    base = preset_config("cartpole-novel")
    if short_conv is not None:
        base = replace(base, core=replace(base.core, short_conv=short_conv))
    ppo = replace(base.ppo, learning_rate=lr or base.ppo.learning_rate,
                  update_epochs=epochs or base.ppo.update_epochs)
    cfg = replace(base, seed=seed, total_steps=budget, time_limit=minutes * 60, ppo=ppo,
                  core=replace(base.core, kind=core), checkpoint_every=10**9)
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-cp-{core}-"))
    (run_dir / "checkpoints").mkdir()
    t0, hit, last = time.time(), {}, [0]

    def on_update(run) -> bool:
        step = run.global_step
        if step - last[0] < eval_every:
            return False
        last[0] = step
        env = eval_env(cfg, run.normalizer_states(), 10, seed + 999)
        recs = run_episodes(run.model, env, 20, deterministic=True, seed=seed)
        env.close()
        mean = float(np.mean([r.ret for r in recs]))
        print(f"  {core} seed {seed}: {step:>8} steps {time.time() - t0:6.0f} s  eval mean {mean:6.1f}", flush=True)
        hit["best_eval"] = max(hit.get("best_eval", 0.0), mean)
        if mean >= 475:
            hit.update(steps=step, seconds=time.time() - t0, eval=mean)
            return True
        return False

    res = train(cfg, run_dir, progress=False, callback=on_update)
    return {"algo": f"{core}-ppo", "seed": seed, "lr": ppo.learning_rate, "epochs": ppo.update_epochs,
            "short_conv": cfg.core.short_conv if core in SHORT_CONV_CORES else 0,   # lstm: none
            "reached": "steps" in hit, **hit, "total_steps": res["global_step"], "wall_s": time.time() - t0}


def cartpole_sb3(seed: int, budget: int, minutes: float, eval_every: int) -> dict:
    """sb3-contrib RecurrentPPO with rl-baselines3-zoo's hyper-parameters for CartPoleNoVel."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize
    import torch.nn as nn
    import envs
    from envs.sb3 import SB3VecEnvAdapter

    vec = VecNormalize(SB3VecEnvAdapter(envs.make("srwm_rl/CartPoleNoVel-v0", 8, seed)), gamma=0.999)
    model = RecurrentPPO("MlpLstmPolicy", vec, n_steps=32, batch_size=256, gae_lambda=0.98, gamma=0.999,
                         n_epochs=20, ent_coef=0.0, learning_rate=lambda f: 1e-3 * f, clip_range=lambda f: 0.2 * f,
                         policy_kwargs=dict(ortho_init=False, activation_fn=nn.ReLU, lstm_hidden_size=64,
                                            enable_critic_lstm=True, net_arch=dict(pi=[64], vf=[64])),
                         seed=seed, device="cpu", verbose=0)
    t0, hit = time.time(), {}

    class Eval(BaseCallback):
        last = 0

        def _on_step(self) -> bool:
            if time.time() - t0 > minutes * 60:
                return False
            if self.num_timesteps - self.last < eval_every:
                return True
            self.last = self.num_timesteps
            env = SB3VecEnvAdapter(envs.make("srwm_rl/CartPoleNoVel-v0", 10, seed + 999))
            ev = VecNormalize(env, training=False, norm_reward=False)
            ev.obs_rms = vec.obs_rms
            obs, state = ev.reset(), None
            starts, rets, cur = np.ones(10, bool), [], np.zeros(10)
            while len(rets) < 20:
                act, state = model.predict(obs, state=state, episode_start=starts, deterministic=True)
                obs, r, done, _ = ev.step(act)
                cur += ev.get_original_reward()
                for i in np.flatnonzero(done):
                    rets.append(cur[i])
                    cur[i] = 0
                starts = done
            ev.close()
            mean = float(np.mean(rets[:20]))
            print(f"  sb3-recurrent-ppo seed {seed}: {self.num_timesteps:>8} steps {time.time() - t0:6.0f} s  "
                  f"eval mean {mean:6.1f}", flush=True)
            hit["best_eval"] = max(hit.get("best_eval", 0.0), mean)
            if mean >= 475:
                hit.update(steps=self.num_timesteps, seconds=time.time() - t0, eval=mean)
                return False
            return True
    model.learn(total_timesteps=budget, callback=Eval())
    return {"algo": "sb3-recurrent-ppo", "seed": seed, "reached": "steps" in hit, **hit,
            "total_steps": model.num_timesteps, "wall_s": time.time() - t0}


# ---- Bandit and Dark Room ------------------------------------------------------------------------------

def train_preset(preset: str, core: str, seed: int, budget: int, minutes: float):
    base = preset_config(preset)
    cfg = replace(base, seed=seed, total_steps=budget, time_limit=minutes * 60, checkpoint_every=10**9,
                  core=replace(base.core, kind=core))
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-{core}-"))
    (run_dir / "checkpoints").mkdir()
    t0 = time.time()
    res = train(cfg, run_dir, progress=False)
    return cfg, res, time.time() - t0


def bandit(args) -> list[dict]:
    from srwm_rl.eval.analysis import RegretCollector, bandit_regret_curves
    out = []
    for seed in args.seeds:
        cfg, res, wall = train_preset("bandit", "srwm", seed, args.budget, args.minutes)
        env = eval_env(cfg, res["normalizers"], 50, 12345, task_split="test")
        col = RegretCollector()
        run_episodes(res["policy"], env, 200, deterministic=False, seed=seed, on_step=col)
        env.close()
        curves = bandit_regret_curves({"SRWM-PPO": col.results}, num_arms=5, seed=seed)
        final = {k: v[-1]["mean"] for k, v in curves.items()}
        row = {"seed": seed, "steps": res["global_step"], "wall_s": wall, "final_regret": final,
               "ratio_to_thompson": final["SRWM-PPO"] / final["Thompson sampling"]}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def darkroom(args) -> list[dict]:
    out = []
    for core in args.cores:
        for seed in args.seeds:
            cfg, res, wall = train_preset(args.preset, core, seed, args.budget, args.minutes)
            env = eval_env(cfg, res["normalizers"], 32, 4321, task_split="test")
            curve = adaptation_curve(run_episodes(res["policy"], env, 128, deterministic=False, seed=seed))
            env.close()
            row = {"core": core, "seed": seed, "steps": res["global_step"], "wall_s": round(wall),
                   "return_per_episode": [round(r["mean"], 2) for r in curve],
                   "ci95_first": curve[0]["ci95"], "ci95_last": curve[-1]["ci95"]}
            print(json.dumps(row), flush=True)
            out.append(row)
    return out


def cartpole(args) -> list[dict]:
    rows = []
    for seed in args.seeds:
        for core in args.cores:
            rows.append(cartpole_ours(core, seed, args.budget, args.minutes, args.eval_every, args.lr, args.epochs,
                                      args.short_conv))
            print(json.dumps(rows[-1]), flush=True)
        if not args.skip_sb3:
            rows.append(cartpole_sb3(seed, args.budget, args.minutes, args.eval_every))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=["cartpole", "bandit", "darkroom"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--cores", nargs="+", default=["srwm", "lstm"])
    p.add_argument("--budget", type=int, default=None, help="env steps per run")
    p.add_argument("--minutes", type=float, default=20.0, help="wall-time cap per run")
    p.add_argument("--eval-every", type=int, default=16384)
    p.add_argument("--preset", default="darkroom-small")
    p.add_argument("--skip-sb3", action="store_true")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--lr", type=float, default=None, help="cartpole: ppo.learning_rate (default: the preset's)")
    p.add_argument("--epochs", type=int, default=None, help="cartpole: ppo.update_epochs (default: the preset's)")
    p.add_argument("--short-conv", type=int, default=None,
                   help="cartpole: core.short_conv of the srwm/delta/fake_sr cores (default: the core's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.budget = args.budget or {"cartpole": 300_000, "bandit": 2_000_000, "darkroom": 600_000}[args.task]
    rows = {"cartpole": cartpole, "bandit": bandit, "darkroom": darkroom}[args.task](args)
    print(json.dumps({"task": args.task, "results": rows}, default=float))


if __name__ == "__main__":
    main()
