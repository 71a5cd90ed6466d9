"""`srwm-rl train`: resolve the config, check it before any environment starts, run the algorithm."""
from __future__ import annotations

import argparse
import importlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint
from srwm_rl.app.cli import RESUMABLE, UsageError, check_resume_compatible, config_from_args
from srwm_rl.run.config import ALGOS, TrainConfig, from_dict, to_dict
from srwm_rl.run.runlog import RunDirError, prepare_run_dir, write_json


def trainer(algo: str) -> Callable[..., dict[str, Any]]:
    """The training function registered for ``algo`` in :data:`srwm_rl.config.ALGOS`."""
    module, fn = ALGOS[algo].split(":")
    return getattr(importlib.import_module(module), fn)


def probe(cfg: TrainConfig) -> None:
    """Build one environment and the policy (no step taken) to catch mismatches such as an image
    encoder on vector observations before the run directory is created."""
    if cfg.algo == "fewshot":                  # supervised: no environment, build the model only
        from agents.fewshot import probe_model
        return probe_model(cfg)
    from srwm_rl.run.common import build_policy, make_env
    try:
        env = make_env(cfg.env, cfg.policy, cfg.seed, num_envs=1)
    except (ValueError, KeyError, ImportError) as e:
        raise UsageError(f"env.id={cfg.env.id!r}: {e}") from None
    try:
        build_policy(cfg, env.observation_space, env.action_space, "cpu")
    except ValueError as e:
        raise UsageError(str(e)) from None
    finally:
        env.close()


def resolve(args: argparse.Namespace, overrides: dict[str, Any]) -> tuple[TrainConfig, Path, dict | None]:
    """(config, run directory, checkpoint to resume from or None)."""
    if not args.resume:
        cfg = config_from_args(args, overrides)
        probe(cfg)
        try:
            run_dir = prepare_run_dir(cfg.run_dir or cfg.default_run_dir(), overwrite=args.overwrite)
        except RunDirError as e:
            raise UsageError(str(e)) from None
        write_json(run_dir / "config.json", to_dict(cfg))
        return cfg, run_dir, None
    try:
        run_dir = prepare_run_dir(args.resume, resume=True)
        ckpt = load_checkpoint(run_dir)
        saved = from_dict(TrainConfig, ckpt["config"])
    except (RunDirError, CheckpointError, ValueError) as e:
        raise UsageError(str(e)) from None
    if args.preset or args.config:
        raise UsageError("--preset and --config cannot be combined with --resume (the run's config is in its checkpoint)")
    check_resume_compatible(saved, overrides)
    cfg = replace(saved, **{k: v for k, v in overrides.items() if k in RESUMABLE})
    errs = cfg.validate()
    if errs:
        raise UsageError("invalid options:\n  " + "\n  ".join(errs))
    if ckpt["global_step"] >= cfg.total_steps:
        raise UsageError(f"the run already has {ckpt['global_step']} steps >= total_steps={cfg.total_steps}; "
                         f"pass a larger --total_steps to continue it")
    return cfg, run_dir, ckpt


def run_training(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    cfg, run_dir, ckpt = resolve(args, overrides)
    result = trainer(cfg.algo)(cfg, run_dir, resume=ckpt, progress=not args.no_progress)
    print(f"run directory : {run_dir}")
    print(f"checkpoint    : {run_dir / 'checkpoints' / 'latest.pt'}")
    print(f"metrics       : {run_dir / 'metrics.csv'}  (TensorBoard: tensorboard --logdir {run_dir / 'tb'})")
    print(f"learning curve: {run_dir / 'learning_curve.png'}")
    print(f"steps {result['global_step']}, recent mean episode return {result['episode_return']:.3f}")
    if result.get("interrupted"):
        print(f"stopped by signal {result['interrupted']}; checkpoint written. Continue with "
              f"`srwm-rl train --resume {run_dir}`")
        return 128 + int(result["interrupted"])
    return 0
