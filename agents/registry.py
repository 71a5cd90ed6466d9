"""Every training algorithm, one record each, and the configuration class they make together.

Adding an algorithm: write ``agents/<name>.py`` with its config section and an ``Algorithm`` record
(``agents.algorithm``), then add the record below. The commands (``srwm-rl train``, ``evaluate``,
``--resume``) find it here; nothing else names an algorithm.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from agents import fewshot, impala, ppo, sb3_baselines
from agents.algorithm import Algorithm, train_config_class
from srwm_rl.run.harness import Run

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (
    ppo.ALGORITHM,
    impala.ALGORITHM,
    sb3_baselines.SB3_PPO,
    sb3_baselines.SB3_RECURRENT_PPO,
    fewshot.ALGORITHM,
)}

TrainConfig = train_config_class(ALGORITHMS)
"""The whole configuration of a training run: RunConfig's options and one section per algorithm."""


def train(cfg, run_dir: str | Path, resume: Optional[dict[str, Any]] = None, progress: bool = True,
          callback: Optional[Callable[[Run], bool]] = None) -> dict[str, Any]:
    """Train ``cfg`` with its algorithm into ``run_dir`` (continuing from the checkpoint dict ``resume``)."""
    with Run(cfg, run_dir, resume, progress=progress, callback=callback) as run:
        return ALGORITHMS[cfg.algo].train(run)
