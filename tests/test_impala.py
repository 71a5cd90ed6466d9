"""IMPALA: unroll threading (counting core + counting env), actor replacement, non-finite losses, config.

The unroll tests run the actor in-process (no subprocess); the others start real actor processes on
tiny networks and check that none is left behind.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

import agents.impala as impala
import envs
from agents.impala import ImpalaConfig
from agents.impala_actor import Actor, ActorPool, SharedWeights, UnrollBuffers
from agents.registry import TrainConfig, train
from envs.testing import CountingEnv
from envs.wrappers import PrevActionReward
from srwm_rl.nn.cores import Core, CoreConfig
from srwm_rl.nn.policy import PolicyConfig
from srwm_rl.run.agent import build_policy
from srwm_rl.run.environment import load_normalizer_state, make_env


class CountingCore(Core):
    """State: (steps since the last reset, steps ever) per sample; the output is zero (uniform policy)."""

    def __init__(self, input_size: int, output_size: int):
        super().__init__()
        self.input_size, self.output_size = input_size, output_size
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.reset_every_unroll = False

    def state_shapes(self):
        return [(1,), (1,)]

    def _forward(self, x, state, first):
        since, ever = state
        for t in range(x.shape[0]):
            since = torch.where(first[t, :, None], torch.zeros_like(since), since) + 1
            ever = ever + 1
        return torch.zeros(*x.shape[:2], self.output_size) * self.dummy, (since, ever)


def small_cfg(**impala_kw) -> TrainConfig:
    return TrainConfig(algo="impala", torch_threads=1, env=replace(TrainConfig().env, id="srwm_rl/CartPoleNoVel-v0"),
                       policy=PolicyConfig(prev_action=False, prev_reward=False, mlp_hidden=(16,)),
                       core=CoreConfig(kind="srwm", hidden_size=16, num_heads=2, num_layers=1, ff_mult=2),
                       impala=ImpalaConfig(**{"num_actors": 2, "envs_per_actor": 2, "batch_size": 4,
                                              "unroll_length": 8, **impala_kw}))


def counting_actor(T, lengths, core: str = "counting", prev=False):
    env = PrevActionReward(CountingEnv(lengths)) if prev else CountingEnv(lengths)
    cfg = replace(small_cfg(), policy=PolicyConfig(prev_action=prev, prev_reward=prev, mlp_hidden=(8,)))
    policy = build_policy(cfg, env.observation_space, env.action_space, "cpu")
    if core == "counting":
        policy.core = CountingCore(policy.core.input_size, policy.core.output_size)
    buffers = UnrollBuffers(3, T, env.num_envs, env.observation_space, env.action_space,
                            policy.initial_state(env.num_envs))
    actor = Actor(policy, env, buffers, gamma=0.99)
    actor.reset(seed=0)
    return actor, buffers


def test_unroll_state_and_observations_are_threaded():
    """The state stored with unroll k+1 is the actor's state at the end of unroll k, the learner
    rebuilds it from unroll k alone, and observations continue across the border."""
    T, lengths = 5, [3, 7, 4]
    actor, buf = counting_actor(T, lengths)
    finals = []
    for slot in range(3):
        actor.fill(slot)
        finals.append(tuple(s.clone() for s in actor.state))
    for k in range(3):
        obs = buf.obs[k]                                  # [T + 1, E, 3] = (t in episode, env, steps since reset)
        assert torch.equal(obs[:, :, 2], (k * T + torch.arange(T + 1)).float()[:, None].expand(T + 1, 3))
        assert torch.equal(buf.first[k], obs[:, :, 0] == 0)
        assert torch.equal(buf.done[k], buf.first[k][1:])                  # no trials: ends = resets
        torch.testing.assert_close(buf.reward[k], buf.action[k].float() + 0.01 * obs[:T, :, 0])
        since, ever = (s[k] for s in buf.state)           # the state before row 0
        assert torch.equal(ever[:, 0], torch.full((3,), float(k * T)))
        if k > 0:
            assert torch.equal(buf.obs[k][0], buf.obs[k - 1][T])           # bootstrap row = next row 0
            assert torch.equal(buf.first[k][0], buf.first[k - 1][T])
            for stored, final in zip((s[k] for s in buf.state), finals[k - 1]):
                assert torch.equal(stored, final)
            # before a non-first row 0 the core has seen exactly t steps of the episode
            t0 = obs[0, :, 0]
            assert torch.equal(since[:, 0][t0 > 0], t0[t0 > 0])
        if k + 1 < 3:                                     # the learner's replay of rows 0..T-1
            with torch.no_grad():
                _, _, replayed = actor.policy(buf.obs[k][:T], tuple(s[k] for s in buf.state), buf.first[k][:T])
            for r, stored in zip(replayed, (s[k + 1] for s in buf.state)):
                assert torch.equal(r, stored)


def test_learner_replay_with_srwm_matches_the_actor():
    """A real SRWM policy (with previous action/reward inputs): the learner recomputes the actor's
    final state and behaviour log-probabilities from the stored unroll, so rho = 1 on-policy."""
    T = 6
    actor, buf = counting_actor(T, [2, 5, 9], core="srwm", prev=True)
    actor.fill(0)
    actor.fill(1)
    with torch.no_grad():
        obs = {k: v[0] for k, v in buf.obs.items()}
        dist, _, state = actor.policy({k: v[:T] for k, v in obs.items()}, tuple(s[0] for s in buf.state),
                                      buf.first[0][:T])
        torch.testing.assert_close(dist.log_prob(buf.action[0]), buf.logp[0], atol=1e-5, rtol=1e-5)
        for r, stored in zip(state, (s[1] for s in buf.state)):
            torch.testing.assert_close(r, stored, atol=1e-5, rtol=1e-5)
        batch = buf.batch([0, 1], "cpu")
        # two slots side by side: B = 2 * E sequences
        assert batch["first"].shape == (T + 1, 6) and batch["reward"].shape == (T, 6)
        loss, stats, _ = impala.impala_loss(actor.policy, batch, ImpalaConfig())
    assert torch.isfinite(loss)
    assert stats["vtrace/rho_mean"] == pytest.approx(1.0, abs=1e-4)


def test_truncated_episode_reward_is_bootstrapped():
    actor, buf = counting_actor(4, [2, 3], core="counting")
    actor.env.unwrapped.truncate = True
    actor.fill(0)
    # the counting policy's value head is a constant (zero core output): reward += gamma * v
    v = float(actor.policy.v.bias.detach())
    want = buf.action[0].float() + 0.01 * buf.obs[0][:4, :, 0] + 0.99 * v * buf.done[0].float()
    torch.testing.assert_close(buf.reward[0], want)


def test_procgen_family_deals_games_to_actors_round_robin():
    six = "procgen:bigfish+fruitbot+maze+leaper+plunder+starpilot"
    shard = envs.family_of(six).shard
    assert shard(six, 0, 1) == "procgen:bigfish"
    assert shard(six, 7, 1) == "procgen:fruitbot"
    assert shard(six, 1, 4) == "procgen:plunder+starpilot+bigfish+fruitbot"
    assert shard(six, 3, 6) == six
    assert shard("procgen:bigfish", 5, 1) == "procgen:bigfish"
    assert envs.family_of("CartPole-v1").shard("CartPole-v1", 3, 2) == "CartPole-v1"


def test_shared_weights_versions():
    ctx = multiprocessing.get_context("fork")
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    w = SharedWeights(a, ctx)
    assert w.version == 0 and w.load_into(b) == 0
    assert torch.equal(b.weight, a.weight)
    with torch.no_grad():
        a.weight.add_(1.0)
    assert w.publish(a) == 1 and w.load_into(b, have=0) == 1
    assert torch.equal(b.weight, a.weight)
    assert w.load_into(b, have=1) == 1


def test_config_validation():
    assert not small_cfg().validate()
    errs = replace(small_cfg(), impala=ImpalaConfig(envs_per_actor=3, batch_size=32, num_actors=0)).validate()
    assert any("impala.batch_size=32" in e for e in errs) and any("impala.num_actors=0" in e for e in errs)


def _no_children_left():
    assert multiprocessing.active_children() == []


def test_killed_actor_is_replaced_and_training_goes_on(tmp_path, monkeypatch):
    cfg = replace(small_cfg(), total_steps=40 * 32, checkpoint_every=5)
    orig, seen = ActorPool.collect, {"n": 0, "killed": None, "after": set()}

    def collect(self, timeout):
        got = orig(self, timeout)
        seen["n"] += bool(got)
        if seen["killed"] is not None:
            seen["after"].update(i for i, *_ in got)
        if seen["n"] == 3 and seen["killed"] is None:
            seen["killed"] = self.procs[0].pid
            os.kill(seen["killed"], signal.SIGKILL)
        return got

    monkeypatch.setattr(ActorPool, "collect", collect)
    result = train(cfg, tmp_path, progress=False)
    assert result["global_step"] >= cfg.total_steps and result["interrupted"] is None
    assert result["actor_restarts"] >= 1
    assert 0 in seen["after"], "the replacement of actor 0 delivered unrolls"
    with pytest.raises(ProcessLookupError):
        os.kill(seen["killed"], 0)
    assert (tmp_path / "checkpoints" / "latest.pt").exists()
    _no_children_left()


def test_nonfinite_loss_is_skipped_then_stops_keeping_the_last_checkpoint(tmp_path, monkeypatch):
    cfg = replace(small_cfg(max_nonfinite=3), total_steps=10_000, checkpoint_every=1)
    orig, calls = impala.impala_loss, {"n": 0}

    def loss_fn(policy, batch, ic):
        loss, stats, state = orig(policy, batch, ic)
        calls["n"] += 1
        if calls["n"] == 3:       # one isolated NaN: skipped, training goes on
            return loss * float("nan"), stats, state
        if calls["n"] >= 6:       # then NaN for good
            return loss * float("inf") * 0.0, stats, state
        return loss, stats, state

    monkeypatch.setattr(impala, "impala_loss", loss_fn)
    with pytest.raises(impala.NonFiniteLossError, match="non-finite in 3 updates in a row"):
        train(cfg, tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["update"] == 4                    # 5 good losses were computed, 1 skipped -> 4 updates
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    text = (tmp_path / "metrics.csv").read_text()
    assert "nonfinite_skipped" in text
    _no_children_left()


def test_chunked_encoder_is_the_same_function():
    cfg = small_cfg()
    space, actions = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8), gym.spaces.Discrete(3)
    policy = replace(cfg.policy, encoder="impala", cnn_channels=(4, 4), cnn_features=8)
    a = build_policy(replace(cfg, policy=replace(policy, encoder_chunk=0)), space, actions, "cpu")
    b = build_policy(replace(cfg, policy=replace(policy, encoder_chunk=3)), space, actions, "cpu")
    b.load_state_dict(a.state_dict())
    assert (a.encoder_chunk, b.encoder_chunk) == (0, 3)
    env = CountingEnv([3, 4])                               # vector observations: never in chunks
    assert build_policy(cfg, env.observation_space, env.action_space, "cpu").encoder_chunk == 0
    x = torch.randint(0, 256, (5, 2, 8, 8, 3), dtype=torch.uint8)
    first = torch.zeros(5, 2, dtype=torch.bool)
    for p in (a, b):
        dist, v, _ = p(x, p.initial_state(2), first)
        (v.sum() + dist.entropy().sum()).backward()
    torch.testing.assert_close(b(x, b.initial_state(2), first)[1], a(x, a.initial_state(2), first)[1])
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)
    assert list(a.state_dict()) == list(b.state_dict())


def test_normalizer_states_reach_the_checkpoint_and_resumed_actors(tmp_path):
    base = small_cfg()
    cfg = replace(base, total_steps=3 * 32, env=replace(base.env, normalize_obs=True, normalize_reward=True))
    train(cfg, tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert len(ckpt["normalizers"]) == 2 and float(ckpt["normalizers"][0]["count"]) > 1
    env = make_env(cfg.env, cfg.policy, 0, num_envs=2)
    load_normalizer_state(env, ckpt["normalizers"])    # what evaluation does: the states fit the env
    env.close()
    # one more update: actors that started from the saved statistics report more samples than it holds
    result = train(replace(cfg, total_steps=4 * 32), tmp_path, resume=ckpt, progress=False)
    assert result["global_step"] >= 4 * 32
    again = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert float(again["normalizers"][0]["count"]) > float(ckpt["normalizers"][0]["count"])
    _no_children_left()


@pytest.mark.slow
def test_spawned_actors_work(tmp_path, monkeypatch):
    """The start method a CUDA learner uses: everything the actors get must survive pickling."""
    monkeypatch.setattr(impala, "start_method", lambda device: "spawn")
    result = train(replace(small_cfg(), total_steps=3 * 32), tmp_path, progress=False)
    assert result["global_step"] >= 3 * 32
    _no_children_left()


def test_an_actor_that_keeps_failing_stops_the_run_with_its_error(tmp_path, monkeypatch):
    import agents.impala_actor as actor_mod

    def broken_env(*args, **kwargs):
        raise RuntimeError("the environment server is down")

    monkeypatch.setattr(actor_mod, "make_env", broken_env)   # inherited by the forked actors
    with pytest.raises(actor_mod.ActorFailure, match="the environment server is down"):
        train(replace(small_cfg(max_actor_failures=2), total_steps=10 * 32), tmp_path, progress=False)
    _no_children_left()


def test_time_limit_ends_the_run_with_a_checkpoint(tmp_path):
    t0 = time.time()
    result = train(replace(small_cfg(), total_steps=10**9, time_limit=2.0), tmp_path, progress=False)
    assert time.time() - t0 < 60 and 0 < result["global_step"] < 10**9 and result["interrupted"] is None
    assert torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)["global_step"] == result["global_step"]
    _no_children_left()


def test_actor_reports_trial_returns_with_its_episodes():
    """With trials (K episodes on one task) the actor reports every inner episode and every finished
    trial; here the unroll covers whole trials, so the trials hold exactly the episodes' rewards."""
    cfg = replace(small_cfg(), env=replace(TrainConfig().env, id="srwm_rl/Bandit-v0", trial_episodes=2,
                                           kwargs={"num_pulls": 3}),
                  policy=PolicyConfig(mlp_hidden=(8,)))
    env = make_env(cfg.env, cfg.policy, seed=0, num_envs=3)
    policy = build_policy(cfg, env.observation_space, env.action_space, "cpu")
    buffers = UnrollBuffers(1, 12, env.num_envs, env.observation_space, env.action_space,
                            policy.initial_state(env.num_envs))
    actor = Actor(policy, env, buffers, gamma=0.99)
    actor.reset(seed=0)
    returns, lengths, trials = actor.fill(0)
    assert len(returns) == 4 * 3 and lengths == [3] * 12 and len(trials) == 2 * 3
    assert sum(trials) == pytest.approx(sum(returns)) and 0 < sum(returns) <= 12 * 3
    env.close()


def test_impala_logs_trial_return_next_to_episode_return(tmp_path):
    """The training curve of IMPALA has the same numbers as PPO's: episode_return per (inner) episode,
    trial_return per trial."""
    import csv
    cfg = replace(small_cfg(), total_steps=4 * 4 * 2 * 8 * 3, log_every=1,
                  env=replace(TrainConfig().env, id="srwm_rl/Bandit-v0", trial_episodes=2, kwargs={"num_pulls": 4}),
                  policy=PolicyConfig(mlp_hidden=(8,)))
    train(cfg, tmp_path, progress=False)
    rows = [r for r in csv.DictReader(open(tmp_path / "metrics.csv")) if r.get("trial_return")]
    assert rows, "no trial_return logged"
    for r in rows:
        assert 0 <= float(r["episode_return"]) <= 4 and 0 <= float(r["trial_return"]) <= 8
    _no_children_left()
