"""Config parsing and validation, checkpoints (atomic, weights_only, corrupt files), run directories."""
import dataclasses
import json
import os
import re

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.registry import TrainConfig
from srwm_rl.app.command import UsageError
from srwm_rl.app.train import parse_train
from srwm_rl.nn.cores import CoreConfig
from srwm_rl.run.checkpoint import (CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state,
                                    space_from_dict, space_to_dict)
from srwm_rl.run.config import from_dict, to_dict
from srwm_rl.run.runlog import RunDirError, RunLogger, prepare_run_dir


def parse(*argv) -> TrainConfig:
    return parse_train(list(argv), "srwm-rl train")[0]


def test_flags_presets_and_config_file_precedence(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"ppo": {"learning_rate": 0.005, "num_steps": 7}, "core": {"kind": "lstm"}}))
    cfg = parse("--preset", "bandit", "--config", str(f), "--ppo.num-steps", "9", "--core.impl", "lean",
                "--policy.mlp_hidden", "32", "16", "--no-ppo.anneal_lr", "--env.kwargs", '{"num_arms": 3}')
    assert cfg.env.id == "srwm_rl/Bandit-v0"                 # preset
    assert cfg.ppo.learning_rate == 0.005                     # file over preset
    assert cfg.ppo.num_steps == 9                             # flag over file
    assert cfg.core.kind == "lstm" and cfg.core.impl == "lean"
    assert cfg.policy.mlp_hidden == (32, 16) and cfg.ppo.anneal_lr is False
    assert cfg.env.kwargs == {"num_arms": 3}
    assert parse("--ppo.no-anneal-lr").ppo.anneal_lr is False and parse("--ppo.anneal_lr").ppo.anneal_lr is True


def test_renamed_options_keep_working(tmp_path):
    assert parse("--impala.learner_chunk", "64").policy.encoder_chunk == 64          # the old flag
    old = to_dict(TrainConfig())
    del old["policy"]["encoder_chunk"]
    old["impala"]["learner_chunk"] = 32                                              # an old config.json
    assert from_dict(TrainConfig, old).policy.encoder_chunk == 32


def test_presets_combine_left_to_right_and_the_paper_core_is_one_away():
    task = parse("--preset", "cartpole-novel")
    paper = parse("--preset", "cartpole-novel,srwm-paper")
    assert task.core.input_softmax is False and paper.core.input_softmax is True
    assert paper.core.hidden_size == task.core.hidden_size == 64 and paper.env == task.env and paper.ppo == task.ppo
    assert parse("--preset", "srwm-paper,cartpole-novel").core.input_softmax is True   # the task sets no softmax
    assert parse("--preset", "cartpole-novel,srwm-paper", "--no-core.input_softmax").core.input_softmax is False
    with pytest.raises(UsageError, match=r"--preset 'srwm-papr' is unknown \(did you mean srwm-paper"):
        parse("--preset", "cartpole-novel,srwm-papr")


def test_saved_config_without_a_changed_default_keeps_the_old_one():
    saved = to_dict(TrainConfig())
    del saved["core"]["input_softmax"]                   # written when the default was True (0.1.0 - issue 12)
    assert TrainConfig().core.input_softmax is False
    assert from_dict(TrainConfig, saved).core.input_softmax is True
    saved["core"]["input_softmax"] = False               # a saved value always wins
    assert from_dict(TrainConfig, saved).core.input_softmax is False
    del saved["core"]["norm"]                            # written when the default was none (before wave 3)
    assert TrainConfig().core.norm == "pre" and from_dict(TrainConfig, saved).core.norm == "none"
    assert parse("--preset", "srwm-paper").core.norm == "none"
    del saved["core"]["short_conv"]                      # written before the option existed (wave 6)
    assert TrainConfig().core.short_conv == 2 and from_dict(TrainConfig, saved).core.short_conv == 0
    assert parse("--preset", "cartpole-novel,srwm-paper").core.short_conv == 0
    assert parse("--preset", "fewshot-5w5s").core.short_conv == 0      # measured without it


@pytest.mark.parametrize("argv,match", [
    (["--ppo.learning_rate", "-1"], r"ppo.learning_rate=-1.0: must be > 0"),
    (["--env.num_envs", "6", "--ppo.num_minibatches", "4"], r"env.num_envs=6 is not divisible by ppo.num_minibatches=4"),
    (["--core.kind", "gru"], r"core.kind='gru': must be one of"),
    (["--core.short_conv", "1"], r"core.short_conv=1: must be 0 \(none\) or a width >= 2"),
    (["--policy.encoder", "resnet"], r"policy.encoder='resnet'"),
    (["--device", "cuda:3"], r"device='cuda:3'"),
    (["--preset", "bandt"], r"did you mean bandit"),
])
def test_bad_options_name_the_field(argv, match):
    with pytest.raises(UsageError, match=match):
        parse(*argv)


@pytest.mark.parametrize("argv,flag", [(["--ppo.learning_rate", "fast"], "--ppo.learning_rate"),
                                       (["--algo", "dqn"], "--algo"), (["--env.kwargs", "[1]"], "--env.kwargs"),
                                       (["--ppo.learning_rat", "1"], "--ppo.learning_rat")])
def test_unparsable_flags_exit_2_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        parse(*argv)
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_unknown_key_in_config_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"ppo": {"learnin_rate": 1.0}}))
    with pytest.raises(UsageError, match=r"unknown option ppo.learnin_rate"):
        parse("--config", str(f))


def test_every_field_is_documented(capsys):
    """Every flag of `train --help` has a description beside its default."""
    with pytest.raises(SystemExit):
        parse("--help")
    text = capsys.readouterr().out
    flags = re.findall(r"--([a-z_.]+)", text)
    assert len(flags) > 80 and "ppo.learning_rate" in flags and "policy.encoder_chunk" in flags
    for f in dataclasses.fields(TrainConfig):
        value = getattr(TrainConfig(), f.name)
        names = [f"{f.name}.{g.name}" for g in dataclasses.fields(value)] if dataclasses.is_dataclass(value) \
            else [f.name]
        for name in names:
            entry = re.search(rf"--{re.escape(name)}\b[^\n]*\n?(.*?)\(default", text, re.S)
            assert entry and re.search(r"[A-Za-z]{3}", entry.group(0).split(name, 1)[1]), f"--{name} has no help"


def test_config_round_trip():
    cfg = TrainConfig(seed=5, core=CoreConfig(kind="delta", hidden_size=32, num_heads=4))
    assert from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg


def test_resume_rejects_incompatible_options(tmp_path):
    save_checkpoint(tmp_path / "checkpoints" / "latest.pt",
                    {"config": to_dict(TrainConfig()), "model": {}, "obs_space": {}, "action_space": {},
                     "global_step": 5})
    cfg, args, ckpt = parse_train(["--resume", str(tmp_path), "--total_steps", "10", "--device", "cpu"], "t")
    assert cfg.total_steps == 10 and args.resume == str(tmp_path) and ckpt["global_step"] == 5
    with pytest.raises(UsageError, match=r"cannot resume with core.kind='lstm'"):
        parse_train(["--resume", str(tmp_path), "--core.kind", "lstm"], "t")
    with pytest.raises(UsageError, match=r"already has 5 steps"):
        parse_train(["--resume", str(tmp_path), "--total_steps", "5"], "t")
    with pytest.raises(UsageError, match=r"cannot be combined with --resume"):
        parse_train(["--resume", str(tmp_path), "--preset", "bandit"], "t")


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    space = gym.spaces.Dict({"obs": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
                             "prev_action": gym.spaces.Discrete(4), "prev_reward": gym.spaces.Box(-1, 1, (1,))})
    payload = {"config": to_dict(TrainConfig()), "model": {"w": torch.arange(3.0)}, "obs_space": space_to_dict(space),
               "action_space": space_to_dict(gym.spaces.Discrete(4)), "normalizers": [{"mean": np.ones(3)}],
               "rng": rng_state(), "global_step": 12}
    path = tmp_path / "ck" / "latest.pt"
    save_checkpoint(path, payload)
    data = load_checkpoint(path)
    assert data["global_step"] == 12 and torch.equal(data["model"]["w"], torch.arange(3.0))
    assert space_from_dict(data["obs_space"]) == space
    assert [p.name for p in path.parent.iterdir()] == ["latest.pt"]     # no temporary file left
    a = torch.rand(3)
    set_rng_state(data["rng"])
    torch.rand(3)  # the state restored above was taken before a = rand(3) was drawn
    set_rng_state(data["rng"])
    assert torch.equal(torch.rand(3), a)


def test_corrupt_or_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"config": {}, "model": {"w": torch.zeros(1000)}, "obs_space": {}, "action_space": {}})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "latest.pt"
    save_checkpoint(path, {"config": {}, "model": {"w": torch.ones(2)}, "obs_space": {}, "action_space": {}})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"bad": Unpicklable()})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["latest.pt"]


def test_run_dir_is_never_overwritten_unless_asked(tmp_path):
    run = prepare_run_dir(tmp_path / "run")
    (run / "config.json").write_text("{}")
    with pytest.raises(RunDirError, match="already exists"):
        prepare_run_dir(run)
    assert (run / "config.json").exists()
    prepare_run_dir(run, overwrite=True)
    assert not (run / "config.json").exists()
    with pytest.raises(RunDirError, match="no checkpoint"):
        prepare_run_dir(tmp_path / "missing", resume=True)


def test_logger_grows_csv_header_and_plots(tmp_path):
    log = RunLogger(tmp_path, tensorboard=False)
    log.log(10, {"loss": 1.0})
    log.log(20, {"loss": 0.5, "episode_return": 3.0})
    log.close()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "global_step,time,loss,episode_return" and len(lines) == 3
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    again = RunLogger(tmp_path, tensorboard=False)            # --resume appends
    again.log(30, {"loss": 0.1, "episode_return": 4.0})
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 4


def test_help_renders_for_every_command(capsys):
    from srwm_rl.app.cli import COMMANDS, main
    for name in [None, *COMMANDS]:
        with pytest.raises(SystemExit) as e:
            main(["--help"] if name is None else [name, "--help"])
        assert e.value.code == 0, name
    out = capsys.readouterr().out
    assert "--core.kind" in out
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())          # one line, without the boxes
    assert not re.search(r"\(default:[^()]*\)\.?\s*\(default:", text), "an option states two defaults"


def test_train_agent_script_is_the_train_command():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "train_agent.py"), "--help"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 0 and "usage: train_agent.py" in out.stdout
    assert "--core.kind" in out.stdout and "--preset" in out.stdout
    bad = subprocess.run([sys.executable, str(root / "train_agent.py"), "--core.kind", "gru"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "core.kind='gru'" in bad.stderr


def test_learning_rate_table_names_registered_algorithms_and_cores():
    from agents.registry import ALGORITHMS
    from srwm_rl.app.presets import LEARNING_RATES, learning_rate_for
    from srwm_rl.nn.cores import CORES
    for algo, rates in LEARNING_RATES.items():
        assert algo in ALGORITHMS and rates
        for core, lr in rates.items():
            assert core in CORES and 0 < lr < 1 and learning_rate_for(algo, core) == lr
    assert learning_rate_for("impala", "no-such-core") is None
