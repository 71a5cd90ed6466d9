"""Every flag of srwm-rl 0.1.0 (tests/data/legacy_0_1/cli_flags.json, listed from that version's parser)
is still accepted, in each of its spellings, and every preset still gives a valid config."""
import dataclasses
import json
from pathlib import Path

import pytest

from agents.registry import TrainConfig
from srwm_rl.app.cli import COMMANDS
from srwm_rl.app.command import parse
from srwm_rl.app.presets import PRESETS
from srwm_rl.app.train import parse_train
from srwm_rl.run.config import RENAMED, to_dict

OLD = json.loads((Path(__file__).parent / "data" / "legacy_0_1" / "cli_flags.json").read_text())
DEFAULTS = {**{k: v for k, v in to_dict(TrainConfig()).items() if not isinstance(v, dict)},
            **{f"{sec}.{k}": v for sec, d in to_dict(TrainConfig()).items() if isinstance(d, dict)
               for k, v in d.items()}}
# a valid value for the options of the other commands, by destination
SAMPLES = {"run_dir": "runs/x", "total_steps": "10", "out": "out", "tasks": "3", "sources": ["glyphs"],
           "checkpoint": "latest", "shots": "2", "queries": "1", "seed": "3", "num_episodes": "4",
           "split": "train", "games": ["bigfish", "maze"], "start_level": "5", "num_levels": "7",
           "distribution_mode": "hard", "trial_episodes": "2", "num_envs": "2", "device": "cpu", "threads": "1",
           "grid": "2", "episodes": "2", "fps": "10", "height": "128", "max_steps": "9", "labels": ["a"],
           "num_trials": "5", "metric": "loss"}
POSITIONALS = {"target": ["runs/x"], "targets": ["runs/x"], "run_dirs": ["runs/x"]}


def _train_value(dest: str, tmp_path: Path) -> list[str]:
    if dest == "preset":
        return ["bandit"]
    if dest == "config":
        (tmp_path / "c.json").write_text("{}")
        return [str(tmp_path / "c.json")]
    value = DEFAULTS[RENAMED.get(dest, dest)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [json.dumps(value) if isinstance(value, dict) else str(value)]


def _train_cases():
    for opt in OLD["train"]["options"]:
        if opt["dest"] != "resume":
            for flag in opt["flags"]:
                yield pytest.param(flag, opt, id=flag)


@pytest.mark.parametrize("flag,opt", list(_train_cases()))
def test_every_old_train_flag_is_accepted(flag, opt, tmp_path):
    argv = [flag] if opt["kind"] == "flag" else [flag, *_train_value(opt["dest"], tmp_path)]
    cfg, args, _ = parse_train(argv, "srwm-rl train")
    if opt["kind"] == "flag" and "." in flag:            # a boolean config field: --x / --no-x
        section, name = opt["dest"].split(".")
        assert getattr(getattr(cfg, section), name) is (not flag.startswith("--no-")), flag


def _other_cases():
    for name, spec in OLD.items():
        for opt in spec["options"] if name != "train" else []:
            for flag in opt["flags"]:
                yield pytest.param(name, spec, flag, opt, id=f"{name} {flag}")


@pytest.mark.parametrize("command,spec,flag,opt", list(_other_cases()))
def test_every_old_flag_of_the_other_commands_is_accepted(command, spec, flag, opt):
    value = SAMPLES.get(opt["dest"], [])
    argv = [*(v for p in spec["positionals"] for v in POSITIONALS[p]), flag,
            *([] if opt["kind"] == "flag" else value if isinstance(value, list) else [value])]
    args = parse(COMMANDS[command].options, argv, f"srwm-rl {command}")
    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(args)}
    for nested in [v for v in fields.values() if dataclasses.is_dataclass(v)]:
        fields.update({f.name: getattr(nested, f.name) for f in dataclasses.fields(nested)})
    got = fields[opt["dest"]]
    want = True if opt["kind"] == "flag" else value
    assert (list(got) if isinstance(got, tuple) else got) == want or str(got) == str(want) \
        or float(got) == float(want), (flag, got)


def test_old_commands_all_exist():
    assert set(OLD) <= set(COMMANDS)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_gives_a_valid_config(name):
    cfg = parse_train(["--preset", name, "--device", "cpu"], "srwm-rl train")[0]
    assert cfg.validate() == []
