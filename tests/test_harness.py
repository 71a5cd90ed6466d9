"""The run harness's rules, on a toy algorithm: best/latest checkpoints, logging, stopping, resume."""
import csv
import os
import signal
import time
from dataclasses import replace

import gymnasium as gym
import pytest
import torch

from srwm_rl.run.checkpoint import load_checkpoint
from srwm_rl.run.config import RunConfig
from srwm_rl.run.harness import Run
from srwm_rl.run.rollout import EpisodeStats

CFG = RunConfig(device="cpu", total_steps=50, log_every=2, checkpoint_every=2)


def toy(run: Run, scores=(), pause: float = 0.0, on_update=None) -> dict:
    """An 'algorithm': one SGD step per update of 10 env steps, the given selection scores."""
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run.track(model, optimizer, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2))
    run.start(total=run.cfg.total_steps)
    while not run.done:
        i = run.update
        optimizer.zero_grad()
        model(torch.ones(2)).sum().backward()
        optimizer.step()
        if on_update is not None:
            on_update(i)
        time.sleep(pause)
        run.end_update(10, score=scores[i] if i < len(scores) else None, metrics=lambda: {"episode_return": i})
    return run.finish(model=model)


def rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(r["global_step"]) for r in csv.DictReader(f)]


def test_best_latest_and_logging_rules(tmp_path):
    with Run(CFG, tmp_path, progress=False) as run:
        result = toy(run, scores=[None, 1.0, 0.5, 2.0, None])
    assert result["global_step"] == 50 and result["best_return"] == 2.0 and result["interrupted"] is None
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["update"] == 4        # the best score's update
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["update"] == 5
    assert rows(tmp_path) == [20, 40, 50]              # every log_every updates, and the last one


def test_a_run_without_scores_keeps_its_final_weights_as_best(tmp_path):
    with Run(CFG, tmp_path, progress=False) as run:
        toy(run)
    best, latest = (load_checkpoint(tmp_path / "checkpoints" / f"{n}.pt") for n in ("best", "latest"))
    assert best["update"] == latest["update"] == 5
    assert all(torch.equal(best["model"][k], latest["model"][k]) for k in latest["model"])


def test_time_limit_and_callback_end_the_run(tmp_path):
    with Run(replace(CFG, total_steps=10**9, time_limit=0.25), tmp_path / "t", progress=False) as run:
        result = toy(run, pause=0.1)
    assert 20 <= result["global_step"] <= 50 and rows(tmp_path / "t")[-1] == result["global_step"]
    with Run(replace(CFG, total_steps=10**9), tmp_path / "c", progress=False,
             callback=lambda r: r.global_step >= 30) as run:
        assert toy(run)["global_step"] == 30
    assert load_checkpoint(tmp_path / "c" / "checkpoints" / "latest.pt")["global_step"] == 30


def test_a_signal_stops_after_the_update_with_a_checkpoint(tmp_path):
    def interrupt(i):
        if i == 1:
            os.kill(os.getpid(), signal.SIGINT)
    before = signal.getsignal(signal.SIGINT)      # default_int_handler, or SIG_IGN under `nohup ... &`
    with Run(replace(CFG, total_steps=10**9), tmp_path, progress=False) as run:
        result = toy(run, on_update=interrupt)
    assert result["interrupted"] == signal.SIGINT and result["global_step"] == 20
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["global_step"] == 20
    assert signal.getsignal(signal.SIGINT) is before                          # handlers restored


def test_resume_restores_weights_optimizer_counters_and_rng(tmp_path):
    with Run(replace(CFG, total_steps=30), tmp_path, progress=False) as run:
        first = toy(run, scores=[1.0])
    after_first = torch.rand(3)                         # the RNG stream right after the checkpoint
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    with Run(CFG, tmp_path, ckpt, progress=False) as run:
        model = torch.nn.Linear(2, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        run.track(model, optimizer, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2))
        assert torch.equal(torch.rand(3), after_first)
        assert (run.global_step, run.update, run.best) == (30, 3, 1.0)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), first["model"].state_dict().values()))


def test_episode_stats_score_needs_enough_episodes():
    s = EpisodeStats(num_envs=4, window=5)
    s.add([1.0, 2.0, 3.0], [5, 5, 5])
    assert s.score is None and s.mean_return == 2.0     # 3 episodes < min(10, 4 envs)
    s.add([4.0, 5.0, 6.0], [6, 6, 6])
    assert s.score == pytest.approx(4.0) and s.mean_length == pytest.approx(5.6)     # the last 5


def test_horizon_is_the_limit_that_ends_the_run(tmp_path, capsys, monkeypatch):
    """fraction_done (progress bar and LR annealing) follows the time limit when it binds first."""
    import types

    import srwm_rl.run.harness as harness
    import srwm_rl.run.limits as limits
    clock = [1000.0]
    for module in (harness, limits):
        monkeypatch.setattr(module, "time", types.SimpleNamespace(time=lambda: clock[0]))
    seen = []

    def tick(i):
        clock[0] += 0.1
        seen.append((run.fraction_done, run.annealed(1.0)))
    with Run(replace(CFG, total_steps=10**9, time_limit=1.0), tmp_path / "t", progress=True) as run:
        result = toy(run, on_update=tick)
    assert result["global_step"] == 100                                   # 10 updates of 0.1 s
    assert [round(f, 6) for f, _ in seen] == [round(0.1 * k, 6) for k in range(1, 11)]
    assert all(abs(lr - (1 - f)) < 1e-9 for f, lr in seen)
    err = capsys.readouterr().err
    assert "or 1 s" in err and "steps/s" in err and "it/s" not in err     # one speed, the real limit
    seen.clear()
    with Run(replace(CFG, total_steps=50), tmp_path / "s", progress=False) as run:
        toy(run, on_update=lambda i: seen.append(run.fraction_done))
    assert seen == [0.0, 0.2, 0.4, 0.6, 0.8]
