"""Recurrent PPO: states and observations are threaded correctly across rollouts and minibatches
(a counting core on a counting environment), checkpoints round-trip, and the CLI end to end."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from agents.ppo import PPOConfig, Rollout, collect, minibatches, optimise
from agents.registry import TrainConfig
from envs.testing import CountingEnv
from srwm_rl.app.cli import main
from srwm_rl.nn.cores import CORES, Core, CoreConfig
from srwm_rl.nn.policy import PolicyConfig, obs_to_torch
from srwm_rl.run.agent import build_policy, load_agent
from srwm_rl.run.config import EnvConfig


class CountingCore(Core):
    """State = steps since the last reset; logs every (T, count) it computes."""

    log: list = []

    def __init__(self, input_size, cfg):
        super().__init__()
        self.input_size, self.output_size = input_size, input_size + 1
        self.scale = torch.nn.Parameter(torch.ones(1))

    def state_shapes(self):
        return [(1,)]

    def _forward(self, x, state, first):
        c, outs, counts = state[0], [], []
        for t in range(x.shape[0]):
            if first is not None:
                c = c * (~first[t]).to(c.dtype)[:, None]
            c = c + 1
            counts.append(c[:, 0].detach().clone())
            outs.append(torch.cat([x[t], c], -1) * self.scale)
        CountingCore.log.append(torch.stack(counts))
        return torch.stack(outs), (c,)


@pytest.fixture
def counting_core():
    CORES["counting"] = CountingCore
    CountingCore.log = []
    yield
    del CORES["counting"]


def test_states_and_observations_thread_across_rollouts_and_minibatches(counting_core):
    lengths = [3, 5, 7, 4]
    env = CountingEnv(lengths)
    cfg = TrainConfig(env=EnvConfig(num_envs=4), policy=PolicyConfig(prev_action=False, prev_reward=False),
                      core=CoreConfig(kind="counting"),
                      ppo=PPOConfig(num_steps=6, num_minibatches=2, update_epochs=1))
    torch.manual_seed(0)
    policy = build_policy(cfg, env.observation_space, env.action_space, "cpu")
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    obs = obs_to_torch(env.reset(seed=0), "cpu")
    first = torch.as_tensor(env.first)
    state = policy.initial_state(4)
    T, k = 6, 0
    for rollout in range(3):
        buf = Rollout(T, 4, obs, env.action_space.shape, "cpu")
        state0 = state
        CountingCore.log = []
        obs, first, state, _ = collect(policy, env, buf, obs, first, state, 0.99)
        rollout_counts = torch.cat(CountingCore.log[:T])              # one T=1 call per step -> [T, 4]
        for t in range(T):
            for i, L in enumerate(lengths):
                # observations are continuous across rollouts: step k of the run, k % L within the episode
                assert buf.obs[t, i].tolist() == [(k + t) % L, i, k + t]
                assert buf.first[t, i].item() == ((k + t) % L == 0)
                # the memory counts the steps of the current episode: reset exactly where `first`
                assert rollout_counts[t, i].item() == (k + t) % L + 1
        if rollout > 0:
            # the state stored with rollout r is the final state of rollout r - 1
            assert torch.equal(state0[0][:, 0], prev_final)
        prev_final = state[0][:, 0].clone()
        # minibatches re-run each environment's whole sequence from its stored start state
        CountingCore.log = []
        adv = torch.zeros(T, 4)
        optimise(policy, opt, buf, state0, adv, adv, cfg.ppo)
        seen = torch.zeros(T, 4)
        for counts, mb_rows in zip(CountingCore.log, _minibatch_rows(buf, CountingCore.log)):
            seen[:, mb_rows] = counts
        assert torch.equal(seen, rollout_counts)
        k += T


def _one_rollout(lengths: list[int], ppo: PPOConfig):
    """A fresh small SRWM policy, its Adam, and one collected rollout of CountingEnv(lengths) (seeded)."""
    env = CountingEnv(lengths)
    n = len(lengths)
    cfg = TrainConfig(env=EnvConfig(num_envs=n), policy=PolicyConfig(prev_action=False, prev_reward=False),
                      core=CoreConfig(hidden_size=16, num_heads=2, num_layers=1), ppo=ppo)
    torch.manual_seed(0)
    policy = build_policy(cfg, env.observation_space, env.action_space, "cpu")
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    buf = Rollout(ppo.num_steps, n, obs_to_torch(env.reset(seed=0), "cpu"), env.action_space.shape, "cpu")
    state0 = policy.initial_state(n)
    collect(policy, env, buf, obs_to_torch(env.reset(seed=0), "cpu"), torch.as_tensor(env.first), state0, 0.99)
    adv = torch.linspace(-1, 1, ppo.num_steps * n).view(ppo.num_steps, n)
    return policy, opt, buf, state0, adv


def test_minibatches_split_the_environments_and_one_minibatch_is_the_whole_batch(monkeypatch):
    for k in (2, 4):
        parts = minibatches(8, k, "cpu")
        assert len(parts) == k and sorted(torch.cat(parts).tolist()) == list(range(8))
    assert minibatches(8, 1, "cpu") == [slice(None)]
    # One minibatch as a slice (no copy) takes the same step as the same batch in a shuffled order.
    ppo = PPOConfig(num_steps=8, num_minibatches=1, update_epochs=2)
    after = []
    for order in (None, torch.tensor([4, 1, 5, 0, 3, 2])):
        policy, opt, buf, state0, adv = _one_rollout([3, 5, 7, 4, 6, 2], ppo)
        if order is not None:
            monkeypatch.setattr("agents.ppo.minibatches", lambda n, k, device: [order])
        _, bad = optimise(policy, opt, buf, state0, adv, adv, ppo)
        assert bad is None
        after.append(torch.cat([p.detach().flatten() for p in policy.parameters()]))
    torch.testing.assert_close(after[0], after[1], rtol=1e-4, atol=1e-6)


def test_target_kl_stops_the_epochs_of_an_update():
    passes = {}
    for target_kl in (0.0, 1e-12):
        ppo = PPOConfig(num_steps=8, num_minibatches=2, update_epochs=5, target_kl=target_kl)
        policy, opt, buf, state0, adv = _one_rollout([3, 5, 7, 4], ppo)
        calls = []
        policy.register_forward_hook(lambda *_: calls.append(1))
        _, bad = optimise(policy, opt, buf, state0, adv, adv, ppo)
        assert bad is None
        passes[target_kl] = len(calls)
    # every epoch (5 x 2 minibatches) without a target; a KL above any tiny target after the first epoch
    assert passes == {0.0: 10, 1e-12: 2}


def _minibatch_rows(buf, logs):
    """Recover which environments each minibatch call held from the first count of each row."""
    rows = []
    for counts in logs:
        n = counts.shape[1]
        rows.append(_match(buf, counts))
    return rows


def _match(buf, counts):
    # Each env's first-step count is unique enough with lengths 3, 5, 7, 4 over 6 steps: match whole columns.
    T, N = buf.first.shape
    expected = {i: buf.obs[:, i, 0] + 1 for i in range(N)}
    out = []
    for c in counts.T:
        hits = [i for i, e in expected.items() if torch.equal(e, c) and i not in out]
        assert hits, "a minibatch sequence matches no environment"
        out.append(hits[0])
    return out


def tiny_args(run_dir, *extra):
    return ["train", "--preset", "tmaze", "--total_steps", "512", "--env.num_envs", "4", "--ppo.num_steps", "16",
            "--ppo.num_minibatches", "2", "--ppo.update_epochs", "1", "--core.hidden_size", "16",
            "--core.num_heads", "2", "--core.num_layers", "1", "--checkpoint_every", "2", "--no-progress",
            "--run_dir", str(run_dir), *extra]


def test_cli_train_resume_and_checkpoint_round_trip(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny_args(run)) == 0
    files = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.csv", "tb", "checkpoints", "learning_curve.png"} <= files
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["env"]["id"] == "srwm_rl/TMaze-v0" and cfg["core"]["hidden_size"] == 16
    rows = (run / "metrics.csv").read_text().splitlines()
    # the checkpoint alone rebuilds the agent: identical action distributions
    cfg1, pol1, ck = load_agent(run)
    assert ck["global_step"] == 512
    obs = {k: torch.as_tensor(np.stack([v.sample() for _ in range(5)]))[None] for k, v in pol1.obs_space.spaces.items()}
    first = torch.ones(1, 5, dtype=torch.bool)
    d1, v1, _ = pol1(obs, pol1.initial_state(5), first)
    _, pol2, _ = load_agent(run / "checkpoints" / "latest.pt")
    d2, v2, _ = pol2(obs, pol2.initial_state(5), first)
    torch.testing.assert_close(d1.logits, d2.logits, rtol=0, atol=0)
    torch.testing.assert_close(v1, v2, rtol=0, atol=0)
    # resume continues the same curves
    assert main(["train", "--resume", str(run), "--total_steps", "1024", "--no-progress"]) == 0
    rows2 = (run / "metrics.csv").read_text().splitlines()
    assert len(rows2) > len(rows) and rows2[: len(rows)] == rows
    assert load_agent(run)[2]["global_step"] == 1024


def _exit_code(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    return e.value.code


@pytest.mark.parametrize("extra,msg", [
    (["--ppo.learning_rate", "-0.1"], "ppo.learning_rate=-0.1: must be > 0"),
    (["--ppo.num_minibatches", "3"], "env.num_envs=4 is not divisible by ppo.num_minibatches=3"),
    (["--policy.encoder", "impala"], "policy.encoder='impala' needs image observations"),
    (["--env.id", "srwm_rl/DarkRom-v0"], "srwm_rl/DarkRoom-v0"),
    (["--core.kind", "transformer"], "core.kind='transformer'"),
])
def test_bad_options_exit_2_naming_the_option(tmp_path, capsys, extra, msg):
    assert _exit_code(tiny_args(tmp_path / "r", *extra)) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "r").exists()          # nothing was created


def test_existing_run_dir_is_not_overwritten_and_bad_resumes_are_clear(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(tiny_args(run)) == 0
    before = (run / "checkpoints" / "latest.pt").read_bytes()
    assert _exit_code(tiny_args(run)) == 2
    assert "already exists" in capsys.readouterr().err
    assert _exit_code(["train", "--resume", str(run), "--core.kind", "lstm", "--total_steps", "2048"]) == 2
    assert "cannot resume with core.kind='lstm'" in capsys.readouterr().err
    # a corrupt latest checkpoint: a clear error, and the best checkpoint is still there
    (run / "checkpoints" / "latest.pt").write_bytes(before[:100])
    assert _exit_code(["train", "--resume", str(run), "--total_steps", "2048"]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err
    assert load_agent(run / "checkpoints" / "best.pt").checkpoint["global_step"] > 0     # still usable


def test_sigterm_writes_a_checkpoint_then_exits(tmp_path):
    run = tmp_path / "run"
    args = tiny_args(run)
    args[args.index("--total_steps") + 1] = "10000000"
    proc = subprocess.Popen([sys.executable, "-m", "srwm_rl.app.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "metrics.csv").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint written" in out
    step = load_agent(run)[2]["global_step"]
    assert 0 < step < 10_000_000
