"""Nothing lost, nothing hidden: each case a hostile but fair user tried, reproduced and checked.

Non-finite values (PPO, IMPALA, checkpoints, options), run-directory ownership (marker, lock,
--overwrite), metrics after a crash, exact resume, failing environments, and clear messages for bad input.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from agents.impala import ImpalaConfig
from agents.ppo import PPOConfig
from agents.registry import TrainConfig, train
from srwm_rl.app.cli import main
from srwm_rl.nn.cores import CoreConfig
from srwm_rl.nn.policy import PolicyConfig
from srwm_rl.run.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from srwm_rl.run.config import EnvConfig
from srwm_rl.run.guards import NonFiniteError
from srwm_rl.run.harness import Run
from srwm_rl.run.rundir import LOCK, MARKER, RunDirError, acquire_lock, prepare_run_dir, release_lock

ROOT = Path(__file__).resolve().parents[1]


class FaultyCartPole(CartPoleEnv):
    """CartPole that goes wrong on cue: NaN rewards or observations after some steps (or at one step),
    an exception every ``raise_every`` steps, or observations of the wrong shape."""

    def __init__(self, nan_reward_after: int = -1, nan_reward_at: int = -1, nan_obs_after: int = -1,
                 raise_every: int = 0, wrong_shape: bool = False, render_mode=None):
        super().__init__(render_mode=render_mode)
        self.nan_reward_after, self.nan_reward_at, self.nan_obs_after = nan_reward_after, nan_reward_at, nan_obs_after
        self.raise_every, self.wrong_shape, self.steps = raise_every, wrong_shape, 0

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return (np.zeros(7, np.float32) if self.wrong_shape else obs), info

    def step(self, action):
        obs, reward, term, trunc, info = super().step(action)
        self.steps += 1
        if self.raise_every and self.steps % self.raise_every == 0:
            raise RuntimeError("sensor cable unplugged")
        if 0 <= self.nan_reward_after < self.steps or self.steps == self.nan_reward_at:
            reward = math.nan
        if 0 <= self.nan_obs_after < self.steps:
            obs = obs * np.float32("nan")
        return obs, reward, term, trunc, info


if "FaultyCartPole-v0" not in gym.registry:
    gym.register("FaultyCartPole-v0", entry_point=FaultyCartPole, max_episode_steps=100)

TINY = ["--torch_threads", "1", "--no-progress", "--env.num_envs", "2", "--ppo.num_steps", "16",
        "--ppo.num_minibatches", "1", "--ppo.update_epochs", "1", "--policy.mlp_hidden", "16",
        "--core.hidden_size", "16", "--core.num_heads", "2", "--core.num_layers", "1", "--core.ff_mult", "2"]


def cli(*argv: str) -> int:
    try:
        return main(list(argv))
    except SystemExit as e:
        return int(e.code)


def faulty(**kwargs) -> list[str]:
    return ["--env.id", "FaultyCartPole-v0", "--env.kwargs", json.dumps(kwargs)]


def small_cfg(**kw) -> TrainConfig:
    return TrainConfig(device="cpu", torch_threads=1, checkpoint_every=100,
                       env=EnvConfig(id="CartPole-v1", num_envs=4, normalize_obs=True),
                       policy=PolicyConfig(mlp_hidden=(16,)),
                       core=CoreConfig(kind="srwm", hidden_size=16, num_heads=2, num_layers=1, ff_mult=2),
                       ppo=PPOConfig(num_steps=16, num_minibatches=2, update_epochs=2, anneal_lr=False), **kw)


def metric_steps(run_dir: Path, key: str = "global_step") -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key) not in (None, "")]


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    """One small healthy PPO run on CartPole, shared by the evaluate / record / checkpoint cases."""
    run = tmp_path_factory.mktemp("cartpole") / "run"
    assert cli("train", "--env.id", "CartPole-v1", *TINY, "--total_steps", "128", "--run_dir", str(run)) == 0
    return run


# ---- non-finite values --------------------------------------------------------------------------------

def test_ppo_nan_rewards_stop_the_run_with_exit_1_keeping_the_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    code = cli("train", *faulty(nan_reward_after=40), *TINY, "--total_steps", "2000", "--checkpoint_every", "1",
               "--run_dir", str(run))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "reward" in err and "from the environment" in err and "3 updates in a row" in err, err
    assert "Traceback" not in err and "last good checkpoint" in err, err
    ckpt = load_checkpoint(run)                                  # loadable: every weight finite
    assert 0 < ckpt["global_step"] < 2000
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert max(metric_steps(run, "nonfinite_skipped")) == 3


def test_ppo_skips_and_counts_an_isolated_nan_reward_then_goes_on(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", *faulty(nan_reward_at=20), *TINY, "--total_steps", "192", "--run_dir", str(run)) == 0
    assert "update skipped" in capsys.readouterr().err
    ckpt = load_checkpoint(run)
    assert ckpt["global_step"] == 192 and ckpt["update"] == 192 // 32 - 1      # one update skipped
    assert max(metric_steps(run, "nonfinite_skipped")) == 1


def test_nan_observations_are_never_acted_on_and_stop_ppo_naming_them(tmp_path, capsys):
    code = cli("train", *faulty(nan_obs_after=40), *TINY, "--total_steps", "2000", "--run_dir", str(tmp_path / "r"))
    err = capsys.readouterr().err
    assert code == 1 and "observation" in err and "probability tensor" not in err, err


def test_fewshot_non_finite_losses_are_skipped_then_stop(tmp_path, monkeypatch):
    import agents.fewshot as fewshot
    orig, calls = fewshot.sequence_loss, {"n": 0}

    def loss_fn(*args, **kwargs):
        loss, stats = orig(*args, **kwargs)
        calls["n"] += 1
        return (loss * math.nan if calls["n"] >= 3 else loss), stats
    monkeypatch.setattr(fewshot, "sequence_loss", loss_fn)
    cfg = TrainConfig(algo="fewshot", device="cpu", torch_threads=1, total_steps=10**6, checkpoint_every=1,
                      core=CoreConfig(kind="lstm", hidden_size=16))
    with pytest.raises(NonFiniteError, match=r"the loss \(nan\).*3 updates in a row"):
        train(replace(cfg, fewshot=replace(cfg.fewshot, eval_every=0, batch_size=4)), tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["update"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.parametrize("flag", ["--ppo.learning_rate", "--ppo.gamma", "--env.clip_reward", "--time_limit"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_non_finite_options_are_rejected(tmp_path, capsys, flag, value):
    assert cli("train", *TINY, flag, value, "--run_dir", str(tmp_path / "r")) == 2
    assert flag[2:] in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_no_checkpoint_with_a_non_finite_weight_is_written_or_loaded(tmp_path):
    model = torch.nn.Linear(2, 1)
    with Run(small_cfg(), tmp_path) as run:
        run.track(model, None, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2))
        good = run.checkpoint("latest").read_bytes()
        with torch.no_grad():
            model.weight[0, 1] = math.nan
        with pytest.raises(NonFiniteError, match=r"refusing to write latest.pt because model weight .*nan"):
            run.checkpoint("latest")
        payload = run.payload()
    assert (tmp_path / "checkpoints" / "latest.pt").read_bytes() == good          # the good one is kept
    save_checkpoint(tmp_path / "crafted.pt", payload)                              # written behind our back
    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_checkpoint(tmp_path / "crafted.pt")


def test_impala_nan_observations_stop_the_run_with_the_envs_error(tmp_path, capsys):
    code = cli("train", "--algo", "impala", *faulty(nan_obs_after=30), *TINY[:2], "--no-progress",
               "--impala.num_actors", "2", "--impala.envs_per_actor", "2", "--impala.batch_size", "4",
               "--impala.unroll_length", "8", "--total_steps", "100000", "--policy.mlp_hidden", "16",
               "--core.hidden_size", "16", "--core.num_heads", "2", "--core.num_layers", "1",
               "--run_dir", str(tmp_path / "r"))
    err = capsys.readouterr().err
    assert code == 1, err
    assert "observation" in err and "from the environment" in err and "impala.max_actor_failures" in err, err


def test_impala_env_exceptions_are_printed_once_counted_and_stop_the_run(tmp_path, capsys):
    cfg = TrainConfig(algo="impala", device="cpu", torch_threads=1, total_steps=10**6,
                      env=EnvConfig(id="FaultyCartPole-v0", kwargs={"raise_every": 60}),
                      policy=PolicyConfig(prev_action=False, prev_reward=False, mlp_hidden=(16,)),
                      core=CoreConfig(kind="lstm", hidden_size=16),
                      impala=ImpalaConfig(num_actors=2, envs_per_actor=2, batch_size=4, unroll_length=8,
                                          max_actor_failures=4, failure_window=100))
    from agents.impala_actor import ActorFailure
    with pytest.raises(ActorFailure, match="sensor cable unplugged") as info:
        train(cfg, tmp_path, progress=False)
    assert "failed 4 times" in str(info.value)
    stopped = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")   # written at the stop, named by the message
    assert f"(step {stopped['global_step']}), is kept" in str(info.value)
    err = capsys.readouterr().err
    assert err.count("Traceback") == 1 and "RuntimeError: sensor cable unplugged" in err, err


# ---- run directories ------------------------------------------------------------------------------------

def test_overwrite_refuses_a_folder_that_is_not_a_run_directory(tmp_path, capsys):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    assert cli("train", *TINY, "--total_steps", "32", "--run_dir", str(folder), "--overwrite") == 2
    assert "not an srwm-rl run directory" in capsys.readouterr().err
    assert sorted(os.listdir(folder)) == ["chapter1.tex"]


def test_overwrite_replaces_a_run_directory(cartpole_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cartpole_run, run)
    (run / "checkpoints" / "old.pt").write_bytes(b"x")
    assert cli("train", "--env.id", "CartPole-v1", *TINY, "--total_steps", "32", "--run_dir", str(run),
               "--overwrite") == 0
    assert not (run / "checkpoints" / "old.pt").exists() and (run / MARKER).exists()


def test_run_directories_are_recognised_by_marker_or_as_earlier_versions_wrote_them(tmp_path):
    from srwm_rl.run.rundir import is_run_dir
    assert is_run_dir(ROOT / "tests" / "data" / "legacy_0_1" / "ppo")       # 0.1: no marker, only run files
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "config.json").write_text("{}")
    (mixed / "thesis.tex").write_text("precious")
    assert not is_run_dir(mixed)
    with Run(small_cfg(), mixed) as run:                 # the harness does not claim someone else's folder
        assert run is not None
    assert not (mixed / MARKER).exists() and not is_run_dir(mixed)


def hold_lock(run: Path) -> subprocess.Popen:
    """Another process that holds the run directory's lock until killed."""
    code = (f"import sys, time; from srwm_rl.run.rundir import acquire_lock; acquire_lock({str(run)!r}); "
            f"print('locked', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_live_run_blocks_resume_and_overwrite_and_a_dead_ones_lock_does_not(cartpole_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cartpole_run, run)
    proc = hold_lock(run)
    try:
        assert cli("train", "--resume", str(run), "--total_steps", "256", "--no-progress") == 2
        assert f"in use by a live training run (PID {proc.pid}" in capsys.readouterr().err
        assert cli("train", "--env.id", "CartPole-v1", *TINY, "--run_dir", str(run), "--overwrite") == 2
        assert "in use by a live training run" in capsys.readouterr().err
        assert (run / "checkpoints" / "latest.pt").exists()
    finally:
        proc.kill()
        proc.wait()
    assert (run / LOCK).read_text().split()[0] == str(proc.pid)       # a stale lock file is left...
    assert cli("train", "--resume", str(run), "--total_steps", "160", "--no-progress") == 0   # ...and ignored


def test_the_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    acquire_lock(tmp_path)
    acquire_lock(tmp_path)
    release_lock(tmp_path)
    code = f"from srwm_rl.run.rundir import acquire_lock; acquire_lock({str(tmp_path)!r})"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert other.returncode != 0 and "RunDirError" in other.stderr
    release_lock(tmp_path)
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_two_resumes_at_once_one_trains_the_other_exits_2(cartpole_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cartpole_run, run)
    cmd = [sys.executable, "-m", "srwm_rl.app.cli", "train", "--resume", str(run), "--no-progress",
           "--total_steps", "100000"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (run / LOCK).read_text().startswith(str(first.pid)):
            time.sleep(0.2)
        second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert second.returncode == 2 and "in use by a live training run" in second.stderr, second.stderr
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()


def test_a_run_stopped_before_its_first_checkpoint_says_how_to_restart_it(tmp_path, capsys):
    run = prepare_run_dir(tmp_path / "run")                   # what a kill -9 before the first checkpoint leaves
    (run / "config.json").write_text("{}")
    assert cli("train", *TINY, "--run_dir", str(run)) == 2
    assert "stopped before its first checkpoint" in capsys.readouterr().err
    assert cli("train", "--resume", str(run)) == 2
    err = capsys.readouterr().err
    assert "stopped before its first checkpoint" in err and "--overwrite" in err
    with pytest.raises(RunDirError, match="stopped before its first checkpoint"):
        prepare_run_dir(run, resume=True)
    assert cli("train", "--env.id", "CartPole-v1", *TINY, "--total_steps", "32", "--run_dir", str(run),
               "--overwrite") == 0


# ---- metrics after a crash, exact resume -----------------------------------------------------------------

class Crash(Exception):
    pass


def test_metrics_rows_past_the_checkpoint_are_dropped_on_resume(tmp_path):
    cfg = replace(small_cfg(), checkpoint_every=3, total_steps=5 * 64)

    def crash(run):                                   # a crash after update 5, checkpoint at update 3
        if run.update == 5:
            raise Crash
    with pytest.raises(Crash):
        train(cfg, tmp_path, progress=False, callback=crash)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["update"] == 3 and max(metric_steps(tmp_path)) > ckpt["global_step"]
    train(replace(cfg, total_steps=8 * 64), tmp_path, resume=ckpt, progress=False)
    steps = metric_steps(tmp_path)
    assert steps == sorted(set(steps)) and steps[-1] == 8 * 64       # no step twice, none backwards
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()                                                   # TensorBoard purged the orphaned events
    assert [e.step for e in events.Scalars("loss/policy")] == [64 * (i + 1) for i in range(8)]


@pytest.mark.slow
def test_kill_9_between_checkpoints_then_resume(tmp_path):
    """A real kill -9 of a training process: the lock dies with it, and the resumed run's metrics.csv
    has every step once, in order, with nothing past the checkpoint from before the kill."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "srwm_rl.app.cli", "train", "--env.id", "CartPole-v1", *TINY,
           "--total_steps", "1000000", "--checkpoint_every", "8", "--run_dir", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((run / "checkpoints" / "latest.pt").exists()
                                               and len(metric_steps(run)) % 8 == 3):
            time.sleep(0.05)
    finally:
        proc.kill()                                     # SIGKILL: no handler runs
        proc.wait()
    ckpt = load_checkpoint(run)
    assert max(metric_steps(run)) > ckpt["global_step"]     # rows past the checkpoint were left behind
    total = ckpt["global_step"] + 4 * 32
    assert cli("train", "--resume", str(run), "--total_steps", str(total), "--no-progress") == 0
    steps = metric_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == total


def test_ppo_n_steps_then_resume_to_2n_is_bit_identical_to_2n_straight(tmp_path):
    cfg = small_cfg()
    train(replace(cfg, total_steps=4 * 64), tmp_path / "a", progress=False)
    half = load_checkpoint(tmp_path / "a")
    assert half["extra"]["env"] is not None                         # the environments were snapshotted
    train(replace(cfg, total_steps=8 * 64), tmp_path / "a", resume=half, progress=False)
    train(replace(cfg, total_steps=8 * 64), tmp_path / "b", progress=False)
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert a["global_step"] == b["global_step"] == 8 * 64
    assert not all(torch.equal(half["model"][k], a["model"][k]) for k in a["model"])   # it did train
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["extra"]["first"], b["extra"]["first"])
    assert a["extra"]["obs"].keys() == b["extra"]["obs"].keys()                 # prev action / reward inputs
    assert all(torch.equal(a["extra"]["obs"][k], b["extra"]["obs"][k]) for k in a["extra"]["obs"])
    assert all(torch.equal(x, y) for x, y in zip(a["extra"]["state"], b["extra"]["state"]))
    assert metric_steps(tmp_path / "a") == metric_steps(tmp_path / "b")
    assert metric_steps(tmp_path / "a", "episode_return") == metric_steps(tmp_path / "b", "episode_return")


def test_config_json_follows_resume_total_steps(cartpole_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(cartpole_run, run)
    assert cli("train", "--resume", str(run), "--total_steps", "160", "--no-progress") == 0
    assert json.loads((run / "config.json").read_text())["total_steps"] == 160


# ---- bad input: clear messages, exit 2 --------------------------------------------------------------------

def test_a_wrong_shape_observation_is_caught_before_the_run_directory_exists(tmp_path, capsys):
    assert cli("train", *faulty(wrong_shape=True), *TINY, "--run_dir", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert "FaultyCartPole-v0" in err and "observation" in err and "(4,)" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content, field", [
    ("[1, 2]", "expected a JSON object"),
    ('{"ppo": {"learning_rate": "fast"}}', "ppo.learning_rate='fast': expected a number"),
    ('{"ppo": 3}', "ppo: expected a mapping"),
    ('{"env": {"num_envs": [4]}}', "env.num_envs=[4]: expected int"),
    ('"ppo"', "expected a JSON object"),
])
def test_config_files_of_the_wrong_shape_name_the_field(tmp_path, capsys, content, field):
    path = tmp_path / "c.json"
    path.write_text(content)
    assert cli("train", "--config", str(path), "--run_dir", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err, err


def test_evaluate_split_on_an_environment_without_splits_is_refused(cartpole_run, capsys):
    assert cli("evaluate", str(cartpole_run), "--split", "test", "--num-episodes", "2") == 2
    assert "has no task or level splits" in capsys.readouterr().err
    assert cli("evaluate", str(cartpole_run), "--num-episodes", "2", "--out", str(cartpole_run / "e")) == 0
    assert "no task or level splits" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_so(cartpole_run, tmp_path, capsys):
    assert cli("evaluate", str(cartpole_run), "--device", "cuda", "--num-episodes", "2") == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "corrupt" not in err, err
    assert cli("train", *TINY, "--device", "cuda", "--run_dir", str(tmp_path / "r")) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_a_corrupt_latest_points_to_best_and_never_to_weights_only_false(cartpole_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(cartpole_run, run)
    latest = run / "checkpoints" / "latest.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    assert cli("evaluate", str(run), "--num-episodes", "2") == 2
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and "best.pt" in err and "weights_only" not in err, err
    (tmp_path / "notes.txt").write_text("hello, I am not a checkpoint\n")
    assert cli("evaluate", str(tmp_path / "notes.txt")) == 2
    err = capsys.readouterr().err
    assert "is not a PyTorch checkpoint" in err and "KeyError" not in err, err


def test_a_checkpoint_holding_code_is_refused_without_weights_only_advice(tmp_path):
    import pickle
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "payload": pickle.loads(pickle.dumps(Crash()))}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "refuses to load" in str(info.value) and "weights_only" not in str(info.value)


def test_record_refuses_to_overwrite_a_video_unless_asked(cartpole_run, capsys):
    video = cartpole_run / "existing.gif"
    video.write_bytes(b"GIF89a")
    assert cli("record", str(cartpole_run), "--out", str(video)) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert video.read_bytes() == b"GIF89a"


def test_env_modules_are_never_imported_from_the_current_directory(tmp_path, monkeypatch):
    import envs
    (tmp_path / "planted_env_mod.py").write_text("raise SystemExit('imported from the current directory')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend("")                          # as `python -m` or a script run from here would
    with pytest.raises(ValueError, match="never from the current directory"):
        envs.make("planted_env_mod:Env-v0", 1)
    assert "planted_env_mod" not in sys.modules
