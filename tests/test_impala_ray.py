"""IMPALA on Ray (``--impala.backend ray``): the same unrolls as the mp actors, training with 2 Ray
actors, resume on either backend, a killed actor, an actor that keeps failing, Ctrl-C on the command.

One local Ray instance serves the whole module (starting one takes ~10 s); the pools see it running
and leave it so. The two-node cluster test is in test_impala_ray_cluster.py.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import signal
import sys
import time
from dataclasses import replace

import pytest
import torch

ray = pytest.importorskip("ray")

import agents.impala as impala  # noqa: E402
from agents.impala_actor import ActorFailure  # noqa: E402
from agents.impala_ray import RayActorPool  # noqa: E402
from agents.registry import train  # noqa: E402
from srwm_rl.app.evaluate import evaluate_main  # noqa: E402
from test_impala import counting_actor, small_cfg  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # the test modules' own code (counting core, broken actors) travels to the Ray workers by value
    for name in (__name__, "test_impala"):
        ray.cloudpickle.register_pickle_by_value(sys.modules[name])
    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def ray_cfg(**impala_kw):
    return small_cfg(backend="ray", **impala_kw)


def counting_build(T, lengths, index, restarted):
    torch.manual_seed(index)
    return counting_actor(T, lengths)[0]


def broken_build(index, restarted):
    raise RuntimeError("the environment server is down")


def test_ray_unrolls_equal_the_mp_actors_unrolls():
    """A Ray actor returns, unroll after unroll, exactly what the in-process actor of the mp backend
    writes into its slots (counting core and counting env: observations, resets, core state threading)
    and the learner's batch is the same tensors as the shared-memory buffers' batch."""
    T, lengths = 5, [3, 7, 4]
    torch.manual_seed(0)
    local, buf = counting_actor(T, lengths)
    pool = RayActorPool(ray_cfg(num_actors=1, envs_per_actor=3, batch_size=3), local.policy, slots_per_actor=1,
                        build=functools.partial(counting_build, T, lengths))
    try:
        pool.start()
        for slot in range(3):
            items = pool.gather(1, stop=False, on_episodes=lambda r, n, t: None)
            got = pool.batch(items, "cpu")
            local.fill(slot)
            want = buf.batch([slot], "cpu")
            assert items[0][2] == 0                     # weights version 0: the policy handed to the pool
            for key in ("obs", "first", "action", "logp", "reward", "done"):
                assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
                assert torch.equal(got[key], want[key]), key
            for g, w in zip(got["state"], want["state"], strict=True):
                assert torch.equal(g, w)
            # the state before row 0 of unroll k: k * T steps seen since reset (the counting core)
            assert torch.equal(got["state"][1][:, 0], torch.full((3,), float(slot * T)))
        assert pool.stats() == {"actor_restarts": 0, "actor_failures": 0, "actor_deaths": 0, "unrolls_dropped": 0}
    finally:
        pool.close()
    assert ray.is_initialized(), "a pool leaves a Ray instance it did not start running"


def test_local_ray_run_with_two_actors_trains_checkpoints_and_resumes_on_mp(tmp_path):
    cfg = replace(ray_cfg(), total_steps=12 * 32, log_every=2)
    result = train(cfg, tmp_path, progress=False)
    assert result["global_step"] >= cfg.total_steps and result["interrupted"] is None
    text = (tmp_path / "metrics.csv").read_text()
    for key in ("policy_lag", "learner_wait_frac", "unrolls_dropped", "actor_deaths"):
        assert key in text.splitlines()[0], key
    ckpt = torch.load(tmp_path / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["config"]["impala"]["backend"] == "ray" and ckpt["global_step"] == result["global_step"]
    # it evaluates like any other run
    assert evaluate_main([str(tmp_path), "--num-episodes", "2"], "srwm-rl evaluate") == 0
    assert list((tmp_path / "eval").glob("*/summary.json"))
    # a run trained on Ray resumes like any other, here on the mp backend
    more = replace(cfg, impala=replace(cfg.impala, backend="mp"), total_steps=cfg.total_steps + 4 * 32)
    again = train(more, tmp_path, resume=ckpt, progress=False)
    assert again["global_step"] >= more.total_steps
    assert no_actor_left()


def descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every live descendant of ``pid`` (Ray's local processes are ours)."""
    parent, cmd = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                cmd[int(entry)] = open(f"/proc/{entry}/cmdline").read().replace("\0", " ")
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] != "Z":
                parent[int(entry)] = int(fields[1])
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for child, pp in parent.items():
            if pp == p and child not in out:
                out[child] = cmd.get(child, "")
                todo.append(child)
    return out


def no_actor_left(timeout: float = 10.0) -> bool:
    """No Ray actor process of ours is left (ray.kill is asynchronous: wait up to ``timeout`` s)."""
    deadline = time.time() + timeout
    while any("UnrollWorker" in c for c in descendants(os.getpid()).values()):
        if time.time() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_killed_ray_actor_is_restarted_and_the_run_finishes(tmp_path, monkeypatch, capsys):
    seen = {"n": 0, "killed": None, "after": set()}
    orig = RayActorPool._take

    def take(self, ref, i, gen, ticket):
        item = orig(self, ref, i, gen, ticket)
        if item is not None:
            seen["n"] += 1
            if gen > 0:                 # a call made after the death was seen: the restarted process
                seen["after"].add(i)
            if seen["n"] == 3:
                seen["killed"] = ray.get(self.actors[0].where.remote())["pid"]
                os.kill(seen["killed"], signal.SIGKILL)
        return item

    monkeypatch.setattr(RayActorPool, "_take", take)
    cfg = replace(ray_cfg(), total_steps=10**7, time_limit=90.0)
    result = train(cfg, tmp_path, progress=False, callback=lambda run: 0 in seen["after"])
    assert seen["after"] == {0}, "actor 0, restarted by Ray, delivered unrolls again"
    assert result["global_step"] < cfg.total_steps and result["actor_restarts"] >= 1
    assert "IMPALA Ray actor 0 died" in capsys.readouterr().err
    last = (tmp_path / "metrics.csv").read_text().splitlines()
    row = dict(zip(last[0].split(","), last[-1].split(",")))
    assert float(row["actor_deaths"]) >= 1 and float(row["unrolls_dropped"]) >= 1
    with pytest.raises(ProcessLookupError):
        os.kill(seen["killed"], 0)
    assert no_actor_left()


def test_a_ray_actor_that_keeps_failing_stops_the_run_with_its_error(tmp_path, monkeypatch):
    def backend(cfg, policy, obs_space, action_space, device, k, start_update, normalizers, warn):
        return RayActorPool(cfg, policy, k, start_update, normalizers, build=broken_build, warn=warn)

    monkeypatch.setitem(impala.BACKENDS, "ray", backend)
    cfg = replace(ray_cfg(num_actors=1, max_actor_failures=2), total_steps=10 * 32)
    with pytest.raises(ActorFailure, match="(?s)Training stopped at step 0: IMPALA actors failed 2 times.*"
                                           "the last was Ray actor 0.*the environment server is down"):
        train(cfg, tmp_path, progress=False)


def test_actors_the_cluster_cannot_place_stop_the_run_naming_what_is_missing():
    base = ray_cfg(num_actors=1)
    cfg = replace(base, ray=replace(base.ray, actor_resources={"gpu_box": 1}, start_timeout=1.0))
    pool = RayActorPool(cfg, counting_actor(4, [3])[0].policy, slots_per_actor=1)
    try:
        pool.start()
        with pytest.raises(RuntimeError, match=r"(?s)within ray.start_timeout=1.0 s.*'gpu_box': 1.*the cluster has"):
            pool.gather(1, stop=False, on_episodes=lambda r, n, t: None)
    finally:
        pool.close()


def test_ray_section_is_validated():
    cfg = ray_cfg()
    assert not cfg.validate()
    bad = replace(cfg, ray=replace(cfg.ray, actor_cpus=-1, actor_resources={"gpu_box": "x"}, max_restarts=-2))
    errs = bad.validate()
    for name in ("ray.actor_cpus=-1", "ray.actor_resources=", "ray.max_restarts=-2"):
        assert any(name in e for e in errs), (name, errs)
    assert replace(bad, impala=replace(bad.impala, backend="mp")).validate() == []   # not read by mp
    errs = replace(cfg, impala=replace(cfg.impala, backend="spark")).validate()
    assert any("impala.backend='spark'" in e and "'ray'" in e for e in errs)


def test_without_ray_installed_the_ray_backend_is_refused_naming_the_extra(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    errs = ray_cfg().validate()
    assert any("pip install 'srwm-rl[ray]'" in e for e in errs), errs
    assert small_cfg().validate() == []


@pytest.mark.slow      # ~25 s: a Ray instance of its own, started by the command
def test_cli_ctrl_c_on_a_ray_run_checkpoints_and_leaves_no_process(tmp_path):
    """Ctrl-C in a terminal (SIGINT to the whole process group, Ray's local processes included): the run
    checkpoints, says how to resume, and neither Ray nor an actor is left running."""
    from test_impala_cli import check_clean, rows, start

    run_dir = tmp_path / "run"
    proc = start(["--impala.backend", "ray", "--total_steps", "100000", "--run_dir", str(run_dir)], tmp_path)
    deadline = time.time() + 120
    while len(rows(run_dir)) < 3:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "no metrics after 120 s"
        time.sleep(0.2)
    actors = [p for p, c in descendants(proc.pid).items() if c.startswith("ray::UnrollWorker")]
    assert len(actors) == 2, descendants(proc.pid)       # Ray's actor processes (their own process groups)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, out
    assert "stopped by signal 2" in out
    check_clean(proc)
    assert not [p for p in actors if alive(p)], "no Ray actor is left running"
    assert torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["config"]["impala"]["backend"] == "ray"


def alive(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            return False
        if stat[stat.rindex(")") + 2] == "Z":
            return False
        time.sleep(0.2)
    return True
