"""The ``srwm-rl`` command: train, demo, presets (and the evaluation commands registered below).

Every training option is a field of :class:`srwm_rl.config.TrainConfig`; flags are generated from
the fields and their docstrings (``--ppo.learning_rate 1e-3``, ``--core.kind lstm``). Precedence:
defaults < ``--preset`` < ``--config FILE`` (JSON) < flags. Bad options exit with status 2 and a
message naming the option, before any environment starts.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Optional

from srwm_rl.run.config import TrainConfig, field_docs, from_dict, merge, to_dict

# Fields that may change when a run is resumed; anything else must match the checkpoint.
RESUMABLE = {"total_steps", "device", "torch_threads", "log_every", "checkpoint_every", "time_limit"}


class UsageError(ValueError):
    """A problem with the command line; reported with exit status 2."""


# ---- flags from dataclasses -------------------------------------------------------------------

def add_config_flags(parser: argparse.ArgumentParser, cls=TrainConfig, prefix: str = "", default=None) -> None:
    """One flag per field (nested dataclasses become ``--section.field``), help from field docstrings."""
    default = default if default is not None else cls()
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    group = parser.add_argument_group(f"{prefix.rstrip('.') or 'run'} options", (cls.__doc__ or "").strip())
    for f in dataclasses.fields(cls):
        tp, name, value = hints[f.name], prefix + f.name, getattr(default, f.name)
        if dataclasses.is_dataclass(tp):
            add_config_flags(parser, tp, name + ".", value)
            continue
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        shown = list(value) if isinstance(value, tuple) else value
        kw: dict[str, Any] = dict(dest=name, default=argparse.SUPPRESS, help=f"{docs.get(f.name, '')} (default: {shown})".replace("%", "%%"))
        if tp is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is dict:
            kw.update(type=_json_object, metavar="JSON")
        elif typing.get_origin(tp) is tuple:
            kw.update(nargs="+", type=typing.get_args(tp)[0], metavar="N")
        else:
            kw.update(type=tp, metavar=tp.__name__.upper())
        group.add_argument(*flags, **kw)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"size\": 5}}', got {text!r}")
    return value


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'ppo.learning_rate': 1e-3} -> {'ppo': {'learning_rate': 1e-3}}."""
    out: dict[str, Any] = {}
    for key, v in flat.items():
        *parents, leaf = key.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = v
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_from_args(args: argparse.Namespace, overrides: dict[str, Any]) -> TrainConfig:
    """defaults < preset < --config FILE < flags, validated; raises UsageError naming the fields."""
    from srwm_rl.app.presets import get_preset
    data = to_dict(TrainConfig())
    try:
        if args.preset:
            data = merge(data, get_preset(args.preset))
        if args.config:
            try:
                data = merge(data, json.loads(Path(args.config).read_text()))
            except (OSError, json.JSONDecodeError) as e:
                raise UsageError(f"--config {args.config}: cannot read it as JSON ({e})") from None
        data = merge(data, nest(overrides))
        cfg = from_dict(TrainConfig, data)
    except ValueError as e:
        raise UsageError(str(e)) from None
    errs = cfg.validate()
    if errs:
        raise UsageError("invalid options:\n  " + "\n  ".join(errs))
    return cfg


def check_resume_compatible(saved: TrainConfig, asked: dict[str, Any]) -> None:
    """Options given on a --resume command line must match the checkpoint, except RESUMABLE ones."""
    old = flatten(to_dict(saved))
    for key, v in flatten(nest(asked)).items():
        v = list(v) if isinstance(v, tuple) else v
        if key not in RESUMABLE and old.get(key) != v:
            raise UsageError(f"cannot resume with {key}={v!r}: the run was trained with {key}={old.get(key)!r} "
                             f"(only {', '.join(sorted(RESUMABLE))} may change on --resume)")


# ---- commands -------------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register a sub-command: ``configure`` adds its flags, the decorated function runs it."""
    def add(fn):
        COMMANDS[name] = (help, configure, fn)
        return fn
    return add


def _configure_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="named preset (see `srwm-rl presets`)")
    p.add_argument("--config", help="JSON file of options (nested like config.json)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_flags(p)


@command("train", "train an agent", _configure_train)
def cmd_train(args: argparse.Namespace) -> int:
    from srwm_rl.app.train import run_training
    return run_training(args, args.overrides)


def _configure_presets(p: argparse.ArgumentParser) -> None:
    pass


@command("presets", "list the named presets", _configure_presets)
def cmd_presets(args: argparse.Namespace) -> int:
    from srwm_rl.app.presets import PRESETS
    for name, (doc, data) in PRESETS.items():
        print(f"{name:18s} {doc}")
        print(f"{'':18s} {json.dumps(data)}")
    return 0


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run_dir", "--run-dir", default="runs/demo", help="where the demo run goes (replaced if it exists)")
    p.add_argument("--total_steps", "--total-steps", type=int, default=None, help="override the demo's training budget")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


@command("demo", "train SRWM-PPO on the default in-context task and show its adaptation curve", _configure_demo)
def cmd_demo(args: argparse.Namespace) -> int:
    from srwm_rl.app.demo import run_demo
    return run_demo(args)


def _configure_fewshot_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="few-shot runs (srwm-rl train --algo fewshot)")
    p.add_argument("--out", default=None, help="output directory (default: the single run, or runs/fewshot_eval)")
    p.add_argument("--tasks", type=int, default=500, help="held-out tasks per source")
    p.add_argument("--sources", nargs="+", default=["glyphs", "digits"],
                   help="glyphs (held-out TEST classes) and/or digits (the real scikit-learn 8x8 digits)")
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best", help="which checkpoint of each run")
    p.add_argument("--shots", type=int, default=None, help="K for evaluation (default: the run's)")
    p.add_argument("--queries", type=int, default=None, help="queries per class (default: the run's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation tasks (same seed = same tasks)")


@command("fewshot-eval", "accuracy by shot index of few-shot runs on held-out classes and real digits, "
         "with 95% CIs and a plot comparing the runs", _configure_fewshot_eval)
def cmd_fewshot_eval(args: argparse.Namespace) -> int:
    from srwm_rl.eval.fewshot import fewshot_eval_command
    return fewshot_eval_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="srwm-rl", description="Self-Referential Weight Matrix agents for RL.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, configure, _) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_.replace("%", "%%"), description=help_,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter if name != "train"
                                 else argparse.HelpFormatter))
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    args.overrides = {k: v for k, v in vars(args).items() if k.split(".")[0] in known}
    try:
        code = COMMANDS[args.command][2](args)
    except UsageError as e:
        parser.exit(2, f"srwm-rl {args.command}: error: {e}\n")
    return code


from srwm_rl.app import eval_cli  # noqa: E402,F401  (registers evaluate, record, adaptation, compare)

if __name__ == "__main__":
    from srwm_rl.app.cli import main as _main  # the registered module, so every command's registration applies
    sys.exit(_main())
