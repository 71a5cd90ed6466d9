"""IMPALA end to end through the command line: 2 actors, SIGTERM / Ctrl-C, resume, no process left behind."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "srwm-rl")
TINY = ["--algo", "impala", "--env.id", "srwm_rl/CartPoleNoVel-v0", "--no-policy.prev_action",
        "--no-policy.prev_reward", "--policy.mlp_hidden", "16", "--core.hidden_size", "16", "--core.num_heads", "2",
        "--core.num_layers", "1", "--core.ff_mult", "2", "--impala.num_actors", "2", "--impala.envs_per_actor", "2",
        "--impala.batch_size", "4", "--impala.unroll_length", "8", "--torch_threads", "1", "--no-progress"]


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (zombies excluded)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen([CLI, "train", *TINY, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def stop_after_updates(proc: subprocess.Popen, run_dir: Path, sig: int, group: bool, n: int = 3) -> str:
    deadline = time.time() + 120
    while len(rows(run_dir)) < n:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "no metrics after 120 s"
        time.sleep(0.2)
    assert len(group_members(proc.pid)) >= 3, "the learner and its 2 actors run in the CLI's process group"
    if group:
        os.killpg(proc.pid, sig)   # what Ctrl-C in a terminal does
    else:
        proc.send_signal(sig)      # what `kill PID` does
    out, _ = proc.communicate(timeout=60)
    return out


def check_clean(proc: subprocess.Popen) -> None:
    deadline = time.time() + 5
    while group_members(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert group_members(proc.pid) == [], "no actor process is left behind"


def test_cli_run_sigterm_checkpoint_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(["--total_steps", "100000", "--run_dir", str(run_dir), "--checkpoint_every", "1000"], tmp_path)
    out = stop_after_updates(proc, run_dir, signal.SIGTERM, group=False)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "stopped by signal 15" in out
    check_clean(proc)
    assert (run_dir / "checkpoints" / "latest.pt").exists()
    first = rows(run_dir)
    assert {"episode_return", "sps", "policy_lag", "actor_restarts"} <= set(first[0])
    stopped_at = int(first[-1]["global_step"])
    # continue the same run to a few more updates
    target = stopped_at + 5 * 32
    proc = subprocess.Popen([CLI, "train", "--resume", str(run_dir), "--total_steps", str(target), "--no-progress"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    check_clean(proc)
    assert int(rows(run_dir)[-1]["global_step"]) >= target


@pytest.mark.slow
def test_cli_ctrl_c_to_the_process_group(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(["--total_steps", "100000", "--run_dir", str(run_dir)], tmp_path)
    out = stop_after_updates(proc, run_dir, signal.SIGINT, group=True)
    assert proc.returncode == 128 + signal.SIGINT, out
    check_clean(proc)
    assert (run_dir / "checkpoints" / "latest.pt").exists()


@pytest.mark.slow
def test_cli_learner_killed_takes_its_actors_along(tmp_path):
    """SIGKILL to the learner (no chance to clean up): the actors die with it (PR_SET_PDEATHSIG)."""
    run_dir = tmp_path / "run"
    proc = start(["--total_steps", "100000", "--run_dir", str(run_dir)], tmp_path)
    stop_after_updates(proc, run_dir, signal.SIGKILL, group=False)
    check_clean(proc)
