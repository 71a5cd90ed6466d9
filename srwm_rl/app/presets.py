"""Named presets: partial configs merged over the defaults (`srwm-rl train --preset NAME`).

Several presets combine, left to right: ``--preset cartpole-novel,srwm-paper`` is the task preset with
the paper's SRWM core choices on top. ``LEARNING_RATES`` holds each core's measured learning rate per
algorithm (benchmarks/core_ablation.py; BENCHMARKS.md "Defaults by measurement"), for comparisons that
give every core its own tuned rate (``learning_rate_for``).
"""
from __future__ import annotations

from typing import Any

from srwm_rl.run.config import merge

SIX_GAMES = "procgen:bigfish+fruitbot+maze+leaper+plunder+starpilot"

# name -> (one-line description, nested overrides of TrainConfig)
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # The SRWM core as in the paper's RL code (Irie et al. 2022): softmax on each head's input, no layer
    # norm. CoreConfig's defaults differ where the ablation (BENCHMARKS.md) measured better learning.
    "srwm-paper": ("The paper's RL SRWM core choices (input softmax, no norm, beta bias 0, no short "
                   "convolution); combine: --preset TASK,srwm-paper", {
        "core": {"kind": "srwm", "input_softmax": True, "norm": "none", "beta_init": 0.0, "short_conv": 0},
    }),
    "bandit": ("Bernoulli bandit, 5 arms, 100 pulls per trial (RL^2 protocol), IMPALA", {
        # IMPALA: at 1M env steps, 3 seeds, held-out greedy return SRWM 55.7 [52.3, 59.0], LSTM 51.4 (random
        # 49.8), where PPO had not left random play after 0.8M (benchmarks/incontext_tasks.py, BENCHMARKS.md).
        "algo": "impala", "total_steps": 2_000_000,
        "env": {"id": "srwm_rl/Bandit-v0", "num_envs": 32},
        # ~50k env steps/s alone against PPO's ~2k on 2 cores; IMPALA-SRWM reached 67.7 after 7.5M steps (one
        # seed, BENCHMARKS.md, IMPALA). PPO stays one flag away: --algo ppo.
        # entropy_cost 1e-3 (IMPALA's default 0.01 kept the policy random: at 2M steps, 3 seeds, held-out
        # return with sampled actions 70.6 [69.3, 71.9] against 64.3 [57.3, 71.4]; BENCHMARKS.md "Wave 4").
        "impala": {"num_actors": 2, "envs_per_actor": 16, "batch_size": 32, "unroll_length": 50,
                   "learning_rate": 1e-3, "gamma": 0.99, "entropy_cost": 0.001},
        "ppo": {"num_steps": 100, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.3,
                "ent_coef": 0.01, "num_minibatches": 4},
    }),
    "bandit-trials": ("Bernoulli bandit, 5 arms, trials of 5 episodes of 10 pulls on the same arms (the demo task)", {
        "total_steps": 600_000,
        "env": {"id": "srwm_rl/Bandit-v0", "num_envs": 32, "trial_episodes": 5, "kwargs": {"num_pulls": 10}},
        "core": {"hidden_size": 64, "num_heads": 4, "num_layers": 1},
        "ppo": {"num_steps": 50, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.3, "ent_coef": 0.01},
    }),
    "darkroom": ("Dark Room 9x9, hidden goal, 4 episodes of 20 steps per trial, IMPALA", {
        # IMPALA: ~14k env steps/s against PPO's ~1-3k (BENCHMARKS.md); PPO stays one flag away: --algo ppo.
        # 10M env steps (~12 min on 2 cores): at 2M no core searches; at 10M the SRWM adapts on held-out
        # goals in 3 of 3 seeds (last episode 6.6-11.8x the first; BENCHMARKS.md "Dark Room 9x9 at 10M").
        "algo": "impala", "total_steps": 10_000_000,
        "env": {"id": "srwm_rl/DarkRoom-v0", "num_envs": 32, "trial_episodes": 4},
        "ppo": {"num_steps": 80, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.9, "ent_coef": 0.02},
        # The unroll covers a whole trial (4 x 20 steps); benchmarks/incontext_tasks.py.
        "impala": {"num_actors": 2, "envs_per_actor": 16, "batch_size": 32, "unroll_length": 80,
                   "learning_rate": 1e-3, "gamma": 0.99, "entropy_cost": 0.01},
    }),
    "darkroom-small": ("Dark Room 5x5, hidden goal, 4 episodes of 12 steps per trial (the demo task)", {
        "total_steps": 600_000,
        "env": {"id": "srwm_rl/DarkRoom-v0", "num_envs": 32, "trial_episodes": 4,
                "kwargs": {"size": 5, "episode_length": 12}},
        "core": {"hidden_size": 64, "num_heads": 4, "num_layers": 1},
        # ent_coef 0.05 (was 0.02): same training-goal return, and back on a held-out goal it found in
        # 99-100% of trials instead of 71-93% (3M steps, 3 seeds; BENCHMARKS.md "Wave 8").
        "ppo": {"num_steps": 48, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.9, "ent_coef": 0.05},
    }),
    "darkkey": ("Dark Key-to-Door 9x9, hidden key and door, 4 episodes per trial", {
        "total_steps": 5_000_000,
        "env": {"id": "srwm_rl/DarkKeyToDoor-v0", "num_envs": 32, "trial_episodes": 4},
        "ppo": {"num_steps": 100, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.9, "ent_coef": 0.02},
    }),
    "tmaze": ("T-Maze: a cue at the start, the decision at the end", {
        "total_steps": 500_000,
        "env": {"id": "srwm_rl/TMaze-v0", "num_envs": 32},
        "ppo": {"num_steps": 32, "learning_rate": 1e-3, "gamma": 0.99, "gae_lambda": 0.95},
    }),
    "cartpole-novel": ("CartPole without velocity (needs memory), target return 475+", {
        "total_steps": 500_000,
        "env": {"id": "srwm_rl/CartPoleNoVel-v0", "num_envs": 8, "normalize_obs": True},
        "policy": {"prev_action": False, "prev_reward": False},
        "core": {"hidden_size": 64, "num_heads": 4, "num_layers": 1},
        # rl-baselines3-zoo's tuned RecurrentPPO settings for this task, with whole-sequence minibatches,
        # except the rate: 3e-4 was the best of 1e-4 / 3e-4 / 1e-3 / 3e-3 x 3 seeds for both SRWM and LSTM
        # (rl-zoo's 1e-3: SRWM 0/3 seeds at 475 in 500k; BENCHMARKS.md, "PPO learning rate per core"), and
        # target_kl 0.02: without it the SRWM's policy passed 475 and fell back (final greedy 123-500 at
        # 250k); with it 497-500 in 5 of 5 seeds, the LSTM 500 in 3 of 3 ("Reaching 475 is not keeping it").
        "ppo": {"num_steps": 32, "learning_rate": 3e-4, "gamma": 0.999, "gae_lambda": 0.98, "ent_coef": 0.0,
                "num_minibatches": 1, "update_epochs": 20, "target_kl": 0.02},
        # With --algo impala: the setting of benchmarks/core_ablation.py (~10x PPO's env steps/s); lr 1e-3
        # was the best of 3e-4 / 1e-3 / 3e-3 for SRWM and LSTM (BENCHMARKS.md, "Defaults by measurement").
        "impala": {"num_actors": 2, "envs_per_actor": 8, "batch_size": 16, "unroll_length": 32,
                   "learning_rate": 1e-3, "entropy_cost": 0.001},
    }),
    "procgen": ("Procgen bigfish, easy, 200 levels, IMPALA CNN (the paper's network)", {
        "total_steps": 25_000_000,
        "env": {"id": "procgen:bigfish", "num_envs": 64, "num_levels": 200, "distribution_mode": "easy",
                "clip_reward": 1.0},
        "policy": {"encoder": "impala", "prev_action": False, "prev_reward": True},
        "ppo": {"num_steps": 256, "learning_rate": 5e-4, "gamma": 0.999, "gae_lambda": 0.95, "ent_coef": 0.01,
                "num_minibatches": 8, "update_epochs": 3, "max_grad_norm": 0.5},
    }),
    "procgen-six": ("The paper's six Procgen games trained jointly (easy, 200 levels)", {
        "total_steps": 300_000_000,
        "env": {"id": SIX_GAMES, "num_envs": 48, "num_levels": 200, "distribution_mode": "easy", "clip_reward": 1.0},
        "policy": {"encoder": "impala", "prev_action": False, "prev_reward": True},
        "ppo": {"num_steps": 256, "learning_rate": 5e-4, "gamma": 0.999, "gae_lambda": 0.95, "ent_coef": 0.01,
                "num_minibatches": 8, "update_epochs": 3},
    }),
    # Supervised few-shot meta-training, the recipe of benchmarks/fewshot.py (BENCHMARKS.md); SRWM in
    # the paper's supervised variant (pre-LayerNorm, no input softmax), 2500 / 2000 updates of 16 tasks.
    "fewshot-5w1s": ("Few-shot 5-way 1-shot glyph classification, delayed labels (supervised, algo fewshot)", {
        "algo": "fewshot", "total_steps": 800_000, "torch_threads": 1,
        "core": {"hidden_size": 64, "num_heads": 4, "num_layers": 1, "norm": "pre", "input_softmax": False,
                 "short_conv": 0},
        "fewshot": {"num_ways": 5, "num_shots": 1, "num_queries": 3, "batch_size": 16, "learning_rate": 3e-3,
                    "distortion": 0.5, "distortion_warmup": 0.8, "eval_every": 500},
    }),
    "fewshot-5w5s": ("Few-shot 5-way 5-shot glyph classification, delayed labels (supervised, algo fewshot); "
                     "trains on 1..5 shots, so the model also answers 1-shot tasks (fewshot-eval --shots 1)", {
        # Shots curriculum (K_max 1 -> 5 over 80% of training, K drawn from 1..K_max per update), 3 queries per
        # class, Adam 1e-3: 3 of 3 SRWM seeds >= 0.70 at 5 and at 1 shot; the wave-2 recipe (5 shots from the
        # start, 1 query, 3e-3) stayed at chance (BENCHMARKS.md, "Few-shot: a shots curriculum").
        "algo": "fewshot", "total_steps": 2_560_000, "torch_threads": 1,
        "core": {"hidden_size": 64, "num_heads": 4, "num_layers": 1, "norm": "pre", "input_softmax": False,
                 "short_conv": 0},
        "fewshot": {"num_ways": 5, "num_shots": 5, "num_queries": 3, "batch_size": 16, "learning_rate": 1e-3,
                    "distortion": 0.5, "distortion_warmup": 0.8, "shots_warmup": 0.8, "vary_shots": True,
                    "eval_every": 800},
    }),
}


def get_preset(name: str) -> dict[str, Any]:
    """The overrides of preset ``name``, or of several comma-separated presets merged left to right."""
    out: dict[str, Any] = {}
    for one in name.split(","):
        one = one.strip()
        if one not in PRESETS:
            import difflib
            close = difflib.get_close_matches(one, PRESETS, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"--preset {one!r} is unknown{hint}; presets: {', '.join(PRESETS)}")
        out = merge(out, PRESETS[one][1])
    return out


# Learning rate per algorithm and core kind, for comparisons that give every core its own rate (the study).
# Measured on CartPole without velocity, the rate with the fewest env steps to 475 (BENCHMARKS.md):
#   impala: benchmarks/core_ablation.py, 3e-4 / 1e-3 / 3e-3 x 3 seeds at 800k env steps, training mean
#           ("Defaults by measurement"; the Delta Net in "Wave 4: the Delta Net's IMPALA rate");
#   ppo:    benchmarks/ppo_learning.py --lr, 1e-4 / 3e-4 / 1e-3 / 3e-3 x 3 seeds at 500k env steps, greedy
#           evaluation ("PPO learning rate per core").
# A core or algorithm without an entry keeps the preset's / algorithm's rate (the feed-forward core was
# not swept: it cannot solve this task, so it has no rate that does).
LEARNING_RATES: dict[str, dict[str, float]] = {
    "impala": {"srwm": 1e-3, "lstm": 1e-3, "delta": 1e-3},
    "ppo": {"srwm": 3e-4, "lstm": 3e-4},
}


def learning_rate_for(algo: str, core: str) -> float | None:
    """The measured learning rate of core kind ``core`` under algorithm ``algo``, or None if none was measured."""
    return LEARNING_RATES.get(algo, {}).get(core)
