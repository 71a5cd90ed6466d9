"""``srwm-rl train`` (and ``python train_agent.py``): resolve the config, check it before any environment
starts, run the algorithm in its run directory; and ``srwm-rl presets``.

Every field of ``TrainConfig`` is a flag (``--ppo.learning_rate 1e-3``, ``--core.kind lstm``,
``--no-core.input_softmax``). Precedence: defaults < ``--preset`` < ``--config FILE`` (JSON) < flags.
``--resume RUN_DIR`` continues a run from its latest checkpoint; only :data:`RESUMABLE` options may
then differ from the checkpoint's.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import tyro

from agents.registry import ALGORITHMS, TrainConfig, train
from srwm_rl.app.command import UsageError, legacy_flags, parse
from srwm_rl.app.presets import PRESETS, get_preset
from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint
from srwm_rl.run.config import from_dict, merge, to_dict
from srwm_rl.run.rundir import RunDirError, acquire_lock, prepare_run_dir, release_lock
from srwm_rl.run.runlog import write_json

# Fields (or whole sections) that may change when a run is resumed; anything else must match the checkpoint.
# Where the actors run is one of them: a run started on one machine may continue on a Ray cluster.
RESUMABLE = {"total_steps", "device", "torch_threads", "log_every", "checkpoint_every", "time_limit",
             "impala.backend", "ray"}


def _flag(help: str, metavar: Optional[str] = None) -> Any:
    return tyro.conf.arg(help=help, metavar=metavar)


# The command's own flags beside the config's fields (a subclass, so every config flag stays top-level).
TrainArgs = dataclasses.make_dataclass("TrainArgs", [
    ("preset", Annotated[Optional[str], _flag("named preset (see `srwm-rl presets`)", "NAME")], None),
    ("config", Annotated[Optional[str], _flag("JSON file of options (nested like config.json)", "FILE")], None),
    ("resume", Annotated[Optional[str], _flag("continue the run in RUN_DIR from its latest checkpoint", "RUN_DIR")],
     None),
    ("overwrite", Annotated[bool, tyro.conf.FlagCreatePairsOff, _flag("replace an existing run directory")], False),
    ("no_progress", Annotated[bool, tyro.conf.FlagCreatePairsOff, _flag("no progress bar")], False),
], bases=(TrainConfig,), frozen=True)
TrainArgs.__doc__ = ("Train an agent. Options: defaults < --preset < --config FILE < flags. Algorithms: "
                     + "; ".join(f"{a.name} ({a.summary})" for a in ALGORITHMS.values()) + ".")


def config_from_sources(preset: Optional[str], config_file: Optional[str]) -> TrainConfig:
    """defaults < preset < config file (before the flags); UsageError naming the problem."""
    data = to_dict(TrainConfig())
    try:
        if preset:
            data = merge(data, get_preset(preset))
        if config_file:
            try:
                loaded = json.loads(Path(config_file).read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise UsageError(f"--config {config_file}: cannot read it as JSON ({e})") from None
            if not isinstance(loaded, dict):
                raise UsageError(f"--config {config_file}: expected a JSON object of options nested like "
                                 f"config.json (e.g. {{\"ppo\": {{\"learning_rate\": 0.001}}}}), got a "
                                 f"{type(loaded).__name__}")
            data = merge(data, loaded)
        return from_dict(TrainConfig, data)
    except UsageError:
        raise
    except (ValueError, TypeError) as e:
        raise UsageError(f"--config {config_file}: {e}" if config_file else str(e)) from None


def _sources(argv: list[str]) -> argparse.Namespace:
    """--preset, --config and --resume, read before the full parse (they set the flags' defaults)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for name in ("preset", "config", "resume"):
        pre.add_argument(f"--{name}")
    return pre.parse_known_args(argv)[0]


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def parse_train(argv: list[str], prog: str) -> tuple[TrainConfig, Any, Optional[dict]]:
    """(config, the command's flags, checkpoint to resume from or None), validated; UsageError otherwise."""
    src = _sources(legacy_flags(argv))
    ckpt, saved = None, None
    if src.resume:
        if src.preset or src.config:
            raise UsageError("--preset and --config cannot be combined with --resume (the run's config is in its "
                             "checkpoint)")
        try:
            ckpt = load_checkpoint(prepare_run_dir(src.resume, resume=True))
            saved = from_dict(TrainConfig, ckpt["config"])
        except (RunDirError, CheckpointError, ValueError) as e:
            raise UsageError(str(e)) from None
        base = saved
    else:
        base = config_from_sources(src.preset, src.config)
    default = TrainArgs(**{f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)},
                        preset=src.preset, config=src.config, resume=src.resume)
    args = parse(TrainArgs, argv, prog, default=default, underscores=True)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    if saved is not None:
        old, new = _flatten(to_dict(saved)), _flatten(to_dict(cfg))
        for key, v in new.items():
            if key not in RESUMABLE and key.split(".")[0] not in RESUMABLE and old.get(key) != v:
                raise UsageError(f"cannot resume with {key}={v!r}: the run was trained with {key}={old.get(key)!r} "
                                 f"(only {', '.join(sorted(RESUMABLE))} may change on --resume)")
    errs = cfg.validate()
    if errs:
        raise UsageError("invalid options:\n  " + "\n  ".join(errs))
    if ckpt is not None and ckpt["global_step"] >= cfg.total_steps:
        raise UsageError(f"the run already has {ckpt['global_step']} steps >= total_steps={cfg.total_steps}; "
                         f"pass a larger --total_steps to continue it")
    return cfg, args, ckpt


def probe(cfg: TrainConfig) -> None:
    """Build what the run needs once (no step taken), so that bad options fail before the run directory
    is created."""
    try:
        ALGORITHMS[cfg.algo].probe(cfg)
    except (ValueError, KeyError, ImportError) as e:
        raise UsageError(str(e)) from None


def train_main(argv: list[str], prog: str) -> int:
    cfg, args, ckpt = parse_train(argv, prog)
    if ckpt is None:
        probe(cfg)
    run_dir = Path(args.resume) if ckpt is not None else Path(cfg.run_dir or cfg.default_run_dir())
    try:
        if ckpt is None:
            prepare_run_dir(run_dir, overwrite=args.overwrite)
        acquire_lock(run_dir)                 # held until the run ends; a second trainer exits 2
    except RunDirError as e:
        raise UsageError(str(e)) from None
    try:
        write_json(run_dir / "config.json", to_dict(cfg))     # on --resume: the new total_steps etc.
        try:
            result = train(cfg, run_dir, resume=ckpt, progress=not args.no_progress)
        except RunDirError as e:
            raise UsageError(str(e)) from None
    finally:
        release_lock(run_dir)
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


@dataclasses.dataclass(frozen=True)
class PresetsArgs:
    """List the named presets of `srwm-rl train --preset NAME` with the options each sets."""


def presets_main(argv: list[str], prog: str) -> int:
    parse(PresetsArgs, argv, prog)
    for name, (doc, data) in PRESETS.items():
        print(f"{name:18s} {doc}")
        print(f"{'':18s} {json.dumps(data)}")
    return 0
