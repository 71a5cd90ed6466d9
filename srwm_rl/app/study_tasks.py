"""The tasks of ``srwm-rl study``: each a training preset, a held-out evaluation protocol, a full and a
quick budget, and the reference baselines it is compared with. A registry, :data:`STUDY_TASKS`.

    StudyTask("darkroom", preset="darkroom", steps=1_500_000, quick_steps=60_000, eval_trials=64)

Every core of a study trains a task with the same config: the preset's (its algorithm, network size,
hyper-parameters), the study's ``overrides``, the core kind, the seed and the budget in environment
steps. The one thing allowed to differ per core is the learning rate, read from the task's
``learning_rates`` (core kind -> learning rate of the algorithm's section); a core missing there
trains with the preset's learning rate. **Per-core tuned learning rates go in that table** (one entry
per task and core, with the measurement that chose it cited in BENCHMARKS.md); until then every core
uses the preset's, which the report says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from srwm_rl.app.presets import LEARNING_RATES


@dataclass(frozen=True)
class StudyTask:
    """One task of a study (see the module docstring)."""

    name: str
    """The value of ``--tasks``."""
    preset: str
    """The training preset (``srwm_rl.app.presets``) every core starts from."""
    steps: int
    """Environment steps per cell of the full study (every core the same)."""
    quick_steps: int
    """Environment steps per cell of ``--quick``."""
    eval_trials: int
    """Held-out trials (episodes for a task without trials) per cell, the same for every core; the
    training tasks are evaluated with as many."""
    quick_eval_trials: int = 32
    """Trials per cell and split of ``--quick``."""
    greedy: bool = False
    """Greedy actions in the evaluation (default: sampled, which exploring within a trial needs)."""
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Study-specific options merged over the preset (nested like config.json); never the learning rate."""
    learning_rates: Mapping[str, float] = field(default_factory=dict)
    """Core kind -> learning rate (of the algorithm's config section); missing = the preset's."""
    baselines: tuple[str, ...] = ()
    """Reference baselines the report computes on the same held-out tasks (``bandit``: Thompson
    sampling, UCB1 and random play, see ``srwm_rl.eval.analysis.BANDIT_BASELINES``)."""
    note: str = ""
    """One line for the report: what held-out means here."""
    score: str = "held-out return, last episode of the trial"
    """What the report compares the cores on (the cell's evaluator computes it, ``study_cells.EVALUATORS``)."""


# Budgets. The default grid is 3 cores x 4 tasks x 3 seeds = 36 cells, two at a time on 2 cores: under
# 2 hours leaves ~400 s per cell, under 15 minutes (--quick) ~50 s, process start-up and evaluation
# (~10 s) included. Bandit and Dark Room run IMPALA (their presets' algorithm: 5-15x PPO's env steps/s
# here), CartPole and T-Maze PPO (fewer env steps suffice); BENCHMARKS.md "Study" has the measured times.
STUDY_TASKS: dict[str, StudyTask] = {t.name: t for t in (
    StudyTask("bandit", preset="bandit", steps=2_000_000, quick_steps=200_000, eval_trials=100, greedy=False,
              baselines=("bandit",), learning_rates=LEARNING_RATES["impala"],
              note="fresh bandits (test task ids), 100 pulls each",
              score="held-out return per bandit (100 pulls)"),
    # 5M env steps: at 2M no core searched (wave 3); the preset's 10M would take the default grid past 2 hours.
    # The LSTM at its Dark Room rate, 3e-3 (at 10M, 3 seeds: held-out last episode 3.35 against 1.71 at
    # 1e-3 and 0.96 at 3e-4, one seed each; BENCHMARKS.md "Wave 7: Dark Room 9x9 - the LSTM at its own rate").
    # The SRWM keeps 1e-3: at 3e-3 (10M, 3 seeds) 7.54 against 6.98, not separated (BENCHMARKS.md "Wave 8").
    StudyTask("darkroom", preset="darkroom", steps=5_000_000, quick_steps=200_000, eval_trials=64,
              learning_rates={**LEARNING_RATES["impala"], "lstm": 3e-3},
              note="goals of the test task set (never trained on), 4 episodes per trial; 5M steps, half "
                   "the preset's 10M (BENCHMARKS.md: Dark Room 9x9 at 10M)"),
    StudyTask("darkroom-small", preset="darkroom-small", steps=600_000, quick_steps=40_000, eval_trials=64,
              note="5x5 room, goals of the test task set, 4 episodes per trial"),
    StudyTask("darkkey", preset="darkkey", steps=1_500_000, quick_steps=40_000, eval_trials=64,
              note="key and door positions of the test task set, 4 episodes per trial"),
    # PPO (the preset's algorithm, with its target_kl) at each core's tuned rate (presets.LEARNING_RATES
    # ["ppo"]; BENCHMARKS.md "PPO learning rate per core"): every SRWM seed ended at 497-500 in 250k steps,
    # where IMPALA needed ~480k to reach 475 and one seed of the wave-3 study stayed at 82.
    StudyTask("cartpole-novel", preset="cartpole-novel", steps=250_000, quick_steps=50_000, eval_trials=32,
              greedy=True, learning_rates=LEARNING_RATES["ppo"],
              note="one task: held-out = fresh episodes (no task distribution)", score="held-out return"),
    StudyTask("tmaze", preset="tmaze", steps=300_000, quick_steps=40_000, eval_trials=100, greedy=True,
              note="longer corridors than any trained on", score="held-out return"),
    StudyTask("fewshot-5w1s", preset="fewshot-5w1s", steps=400_000, quick_steps=20_000, eval_trials=500,
              quick_eval_trials=100, note="glyph classes of the test split (never trained on)",
              score="held-out query accuracy"),
    StudyTask("fewshot-5w5s", preset="fewshot-5w5s", steps=2_560_000, quick_steps=24_000, eval_trials=500,
              quick_eval_trials=100, note="glyph classes of the test split (never trained on)",
              score="held-out query accuracy"),
)}

DEFAULT_TASKS = ("bandit", "darkroom", "cartpole-novel", "tmaze")
DEFAULT_CORES = ("srwm", "lstm", "none")


def budget(task: StudyTask, quick: bool, steps: Optional[int] = None) -> int:
    """Environment steps of a cell: ``steps`` when given, else the task's full or quick budget."""
    return steps if steps is not None else (task.quick_steps if quick else task.steps)


def trials(task: StudyTask, quick: bool, eval_trials: Optional[int] = None) -> int:
    """Evaluation trials per cell and split: ``eval_trials`` when given, else the task's."""
    return eval_trials if eval_trials is not None else (task.quick_eval_trials if quick else task.eval_trials)
