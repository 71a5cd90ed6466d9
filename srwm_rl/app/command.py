"""What every ``srwm-rl`` command shares: option parsing with tyro, usage errors.

A command's options are a frozen dataclass with a docstring per field; tyro turns it into flags
(``--num-episodes`` and ``--num_episodes`` both work) and ``--help``. A problem with the command line
is a :class:`UsageError`: the program prints it naming the option and exits with status 2, before
any environment starts or any file is written.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, Optional

import tyro
from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec

from srwm_rl.run.config import RENAMED


# For options whose docstring states its own default ("(default: as trained)"): tyro's own
# "(default: None)" would repeat, and contradict, it.
OWN_DEFAULT = tyro.conf.arg(help_behavior_hint="")


class UsageError(ValueError):
    """A problem with the command line; reported with exit status 2."""


def legacy_flags(argv: list[str]) -> list[str]:
    """Flags of earlier versions in today's spelling: ``--no-section.field`` (argparse's negative
    boolean) becomes ``--section.no-field``, and renamed options (:data:`RENAMED`) their new name."""
    out = []
    for a in argv:
        flag, eq, value = a.partition("=")
        if flag.startswith("--no-") and "." in flag:
            section, _, name = flag[len("--no-"):].rpartition(".")
            flag = f"--{section}.no-{name}"
        key = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if key in RENAMED:
            flag = "--" + RENAMED[key]
        out.append(flag + eq + value)
    return out


def _json_object(args: list[str]) -> dict:
    try:
        value = json.loads(args[0])
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object like '{{\"size\": 5}}', got {args[0]!r}")
    return value


REGISTRY = ConstructorRegistry()


@REGISTRY.primitive_rule
def _json_dicts(info) -> Optional[PrimitiveConstructorSpec]:
    """``dict[str, Any]`` options (an env's constructor kwargs) are one JSON object on the command line."""
    if info.type_origin is dict and typing.get_args(info.type) == (str, Any):
        return PrimitiveConstructorSpec(nargs=1, metavar="JSON", instance_from_str=_json_object,
                                        is_instance=lambda v: isinstance(v, dict),
                                        str_from_instance=lambda v: [json.dumps(v)])
    return None


def parse(options: type, argv: list[str], prog: str, *, default: Any = None, underscores: bool = False,
          description: Optional[str] = None) -> Any:
    """Parse ``argv`` into the dataclass ``options`` (tyro; ``--help`` and bad values exit by themselves)."""
    kwargs: dict[str, Any] = {} if default is None else {"default": default}
    return tyro.cli(options, args=legacy_flags(argv), prog=prog, use_underscores=underscores,
                    description=description, registry=REGISTRY, **kwargs)


def check_counts(**counts: Optional[int]) -> None:
    """UsageError unless every given count is >= 1."""
    for name, v in counts.items():
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')}={v}: must be >= 1")


def run_dir_of(target: str | Path) -> Path:
    """The run directory of a run directory or of a checkpoint file inside RUN_DIR/checkpoints/."""
    target = Path(target)
    if target.is_dir():
        return target
    return target.parent.parent if target.parent.name == "checkpoints" else target.parent
