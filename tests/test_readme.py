"""The README's snippets run: its Python code on a tiny run, its commands parsed as the program parses them."""
import re
import shlex
from pathlib import Path

import pytest
import torch

from evaluation_helpers import make_run, one_thread, tiny_config
from srwm_rl.app.cli import COMMANDS
from srwm_rl.app.train import parse_train

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
COMMAND_LINES = [line.strip() for line in README.splitlines()
                 if re.match(r"\s+(\.venv/bin/srwm-rl|\.venv/bin/python train_agent\.py|make) ", line)]


@pytest.fixture(autouse=True)
def _one_thread():
    yield from one_thread()


def test_python_snippets_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README has a Python example"
    make_run(tmp_path / "runs" / "demo", tiny_config("srwm_rl/DarkRoom-v0", trial_episodes=2))
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "held-out mean return" in out and out.count("\n") >= 3


def test_commands_exist_and_train_commands_parse():
    assert len(COMMAND_LINES) >= 10
    for line in COMMAND_LINES:
        words = shlex.split(line.split("#")[0].split(";")[0])
        if words[0] == "make":
            assert words[1] in ("demo", "test", "test-all"), line
            continue
        args = words[1:] if words[0].endswith("srwm-rl") else ["train", *words[2:]]
        assert args[0] in COMMANDS, line
        if args[0] == "train" and not {"--resume", "--help", "..."} & set(args):
            if not torch.cuda.is_available():               # the flag is right; this machine has no GPU
                args = [a.replace("cuda", "cpu") for a in args]
            parse_train(args[1:], "srwm-rl train")          # every flag exists and the config is valid
