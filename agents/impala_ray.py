"""IMPALA's actors on Ray (``--impala.backend ray``): the unrolls of ``agents/impala_actor.py``, from Ray
actors anywhere on a cluster, behind the same pool interface as the mp backend (``agents/impala.py``).

* ``UnrollWorker`` (one Ray actor, ``ray.actor_cpus`` CPUs and ``ray.actor_resources``): E environments
  and a CPU copy of the policy, i.e. an ``impala_actor.Actor`` writing into a one-slot
  ``UnrollBuffers``. ``unroll(weights, version)`` loads the weights if their version moved, fills
  the slot and returns it as numpy arrays (rows and core state exactly as the mp actors write them:
  obs / first [T + 1, E, ...], action / logp / reward / done [T, E], the core state before row 0),
  through Ray's object store, with the episodes it finished and its normaliser states.
* ``RayActorPool`` (the learner's side): every actor has ``k`` calls outstanding at most (delivered
  but not yet consumed included, as the mp backend's slots per actor); the learner takes finished
  calls with ``ray.wait`` and hands the call back (a new ``unroll``) when it consumes the unroll. New
  weights go to the object store once per update (``ray.put``); each call carries the newest
  reference, so an unroll's policy lag is the updates published since its call was made.
* Faults: an actor whose process dies (killed, node lost) is restarted by Ray (``ray.max_restarts``)
  and gets the latest normaliser states; its unrolls in flight are dropped and counted
  (``unrolls_dropped``, ``actor_deaths``) and the death is printed. An actor that raised (its
  environment, say) and one whose constructor failed are replaced by a new actor. The run stops with
  the last error, as with the mp backend, after ``impala.max_actor_failures`` failures among the last
  ``impala.failure_window`` unrolls and failures, or that many of one actor in a row.
"""
from __future__ import annotations

import functools
import itertools
import os
import sys
import time
import warnings
from collections import deque
from typing import Any, Callable, Optional

import numpy as np
import torch

import envs
from agents.impala_actor import Actor, ActorFailure, UnrollBuffers, actor_seed
from srwm_rl.nn.tree import tree_map
from srwm_rl.run.agent import build_policy
from srwm_rl.run.cluster import connect, import_ray
from srwm_rl.run.environment import load_normalizer_state, make_env, normalizer_state
from srwm_rl.run.harness import StopSignal

def build_actor(cfg, start_update: int, normalizers: list, index: int, restarted: bool) -> Actor:
    """Actor ``index`` of a run (as ``impala_actor.actor_main`` builds it) on a one-slot buffer; a restarted
    one gets a seed of its own."""
    ic = cfg.impala
    seed = actor_seed(cfg, index, os.getpid() if restarted else 0, start_update)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    env = make_env(cfg.env, cfg.policy, seed, num_envs=ic.envs_per_actor, discount=ic.gamma,
                   id=envs.family_of(cfg.env.id).shard(cfg.env.id, index, ic.envs_per_actor))
    policy = build_policy(cfg, env.observation_space, env.action_space, "cpu").eval()
    for p in policy.parameters():
        p.requires_grad_(False)
    if normalizers:
        load_normalizer_state(env, normalizers)
    buffers = UnrollBuffers(1, ic.unroll_length, ic.envs_per_actor, env.observation_space, env.action_space,
                            policy.initial_state(ic.envs_per_actor, torch.device("cpu")))
    actor = Actor(policy, env, buffers, ic.gamma)
    actor.reset(seed)
    return actor


def slot_arrays(buf: UnrollBuffers, slot: int) -> dict[str, Any]:
    """One slot of ``buf`` as numpy arrays: obs / first [T + 1, E, ...], action, logp, reward, done
    [T, E, ...], state (tuple of [E, ...])."""
    return {"obs": tree_map(lambda b: b[slot].numpy(), buf.obs), "first": buf.first[slot].numpy(),
            "action": buf.action[slot].numpy(), "logp": buf.logp[slot].numpy(), "reward": buf.reward[slot].numpy(),
            "done": buf.done[slot].numpy(), "state": tuple(s[slot].numpy() for s in buf.state)}


def to_batch(parts: list[dict[str, Any]], device) -> dict[str, Any]:
    """Unrolls of ``slot_arrays`` side by side: one time-major batch of B = sum of E sequences on ``device``."""
    def cat(*xs, axis=1):
        return torch.from_numpy(np.concatenate(xs, axis=axis)).to(device)

    out = {k: cat(*[p[k] for p in parts]) for k in ("first", "action", "logp", "reward", "done")}
    out["obs"] = tree_map(cat, *[p["obs"] for p in parts])
    out["state"] = tuple(cat(*xs, axis=0) for xs in zip(*[p["state"] for p in parts]))
    return out


class UnrollWorker:
    """The body of one Ray actor (see the module docstring). ``build(restarted)`` makes its ``Actor``."""

    def __init__(self, build: Callable[[bool], Actor], threads: int = 1):
        torch.set_num_threads(threads)
        with warnings.catch_warnings():          # Ray 2.60 warns inside its own property
            warnings.simplefilter("ignore", DeprecationWarning)
            restarted = import_ray().get_runtime_context().was_current_actor_reconstructed
        self.actor = build(restarted)
        self.version = -1

    def unroll(self, weights: Optional[dict[str, np.ndarray]], version: int) -> dict[str, Any]:
        """One unroll with weights ``version`` (None: keep the policy's own weights)."""
        if weights is not None and version != self.version:
            self.actor.policy.load_state_dict({k: torch.tensor(v) for k, v in weights.items()})
            self.version = version
        return {"version": version, "episodes": self.actor.fill(0), "unroll": slot_arrays(self.actor.buf, 0),
                "normalizers": normalizer_state(self.actor.env)}

    def ready(self, normalizers: list[dict]) -> dict[str, Any]:
        """Take the latest normaliser states (a restarted or new actor); returns ``where()``."""
        if normalizers:
            load_normalizer_state(self.actor.env, normalizers)
        return self.where()

    def where(self) -> dict[str, Any]:
        """This actor's process id and Ray node id (tests and logs)."""
        return {"pid": os.getpid(), "node": import_ray().get_runtime_context().get_node_id()}


def weights_of(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().to("cpu").numpy() for k, v in module.state_dict().items()}


class RayActorPool:
    """IMPALA's actors as Ray actors; the pool interface of ``agents/impala.py`` (module docstring).

    ``build(index, restarted) -> Actor`` makes an actor (default: :func:`build_actor` of ``cfg``); tests
    pass their own. ``slots_per_actor``: calls outstanding per actor."""

    def __init__(self, cfg, policy: torch.nn.Module, slots_per_actor: int, start_update: int = 0,
                 normalizers: Optional[list] = None, build: Optional[Callable[..., Actor]] = None,
                 warn: Optional[Callable[[str], None]] = None):
        self.cfg, self.rc, self.k = cfg, cfg.ray, slots_per_actor
        self.n = cfg.impala.num_actors
        self.ray = import_ray()
        self.owns_ray = connect(self.rc, local_cpus=self.n * self.rc.actor_cpus)
        self.normalizers = list(normalizers or [])
        self.build = build or functools.partial(build_actor, cfg, start_update, self.normalizers)
        self.version, self.weights = 0, self.ray.put(weights_of(policy))
        self.actors: list[Any] = [None] * self.n
        self.failures = [0] * self.n          # failures in a row without an unroll delivered
        self.errors: dict[int, str] = {}
        self.gen = [0] * self.n               # failures handled per actor (a call made before one is stale)
        self.probing = [False] * self.n       # restarting: waiting for its answer to ready()
        self.owed = [0] * self.n              # calls it gets once it answers
        self.later: list[tuple[float, int]] = []          # (time, actor): ask a restarting actor again then
        self.in_flight: dict[Any, tuple[int, int, bool]] = {}   # ref -> (actor, its gen at the call, unroll?)
        self.held: dict[int, dict] = {}       # key -> delivered unroll the learner has not consumed
        self.pending: deque = deque()
        self.keys = itertools.count()
        self.restarts = self.deaths = self.dropped = self.failures_total = 0
        self.events: deque = deque(maxlen=cfg.impala.failure_window)   # True: a failure, False: an unroll
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._seen_errors: set[str] = set()
        self.delivered = 0
        self.t_start = time.time()
        self.closed = False

    # ---- actors -----------------------------------------------------------------------------------
    def _new_actor(self, i: int):
        options = {"num_cpus": self.rc.actor_cpus, "max_restarts": self.rc.max_restarts, "max_task_retries": 0}
        if self.rc.actor_resources:
            options["resources"] = {k: float(v) for k, v in self.rc.actor_resources.items()}
        cls = self.ray.remote(UnrollWorker).options(**options)
        return cls.remote(functools.partial(self.build, i), self.cfg.impala.actor_threads)

    def start(self) -> None:
        for i in range(self.n):
            self.actors[i] = self._new_actor(i)
            for _ in range(self.k):
                self._submit(i)

    def _submit(self, i: int) -> None:
        """Hand actor ``i`` a call (its ticket); while it is being restarted the ticket waits."""
        if self.probing[i]:
            self.owed[i] += 1
        else:
            self.in_flight[self.actors[i].unroll.remote(self.weights, self.version)] = (i, self.gen[i], True)

    def _probe(self, i: int) -> None:
        """Ask actor ``i`` (restarting or new) to load the latest normaliser states; its tickets wait for the answer."""
        self.probing[i] = True
        self.in_flight[self.actors[i].ready.remote(self.normalizers)] = (i, self.gen[i], False)

    def _failed(self, i: int, error: BaseException, ticket: bool) -> None:
        """Actor ``i``'s call failed: count it, restart or replace the actor, or give up."""
        self.gen[i] += 1
        self.failures[i] += 1
        self.failures_total += 1
        self.events.append(True)
        died = isinstance(error, self.ray.exceptions.RayActorError)
        self.deaths += died
        self.dropped += ticket
        self.owed[i] += ticket
        text = str(error).rstrip()
        kind = text.strip().splitlines()[-1] if text.strip() else text
        self.warn(f"warning: IMPALA Ray actor {i} {'died' if died else 'raised an error'} (it is restarted; "
                  f"{self.dropped} unrolls dropped so far)" + ("" if kind in self._seen_errors else f":\n{text}"))
        self._seen_errors.add(kind)
        ic, in_window = self.cfg.impala, sum(self.events)
        if self.failures[i] >= ic.max_actor_failures or in_window >= ic.max_actor_failures:
            raise ActorFailure(f"IMPALA actors failed {in_window} times among the last {len(self.events)} unrolls "
                               f"and failures (impala.max_actor_failures={ic.max_actor_failures}, "
                               f"impala.failure_window={ic.failure_window}); the last was Ray actor {i}, its error:\n"
                               f"{text}")
        if not died or getattr(error, "actor_init_failed", False):
            # it raised (its state is suspect) or its constructor failed (Ray does not retry that): a new actor
            self.ray.kill(self.actors[i], no_restart=True)
            self.actors[i] = self._new_actor(i)
        self.restarts += 1
        self._probe(i)

    def _take(self, ref, i: int, gen: int, ticket: bool) -> Optional[tuple]:
        """The result of one call (an unroll when ``ticket``, else a restart probe); None if there is none."""
        try:
            out = self.ray.get(ref)
        except self.ray.exceptions.RayError as e:
            if gen != self.gen[i]:      # made before a failure already handled (the same death): drop it
                self.dropped += ticket
                if ticket:
                    self._submit(i)
            elif not ticket and isinstance(e, self.ray.exceptions.ActorUnavailableError):
                self.later.append((time.time() + 0.5, i))  # still restarting: ask again soon
            else:
                self._failed(i, e, ticket)
            return None
        if not ticket:                  # up again: its waiting tickets become calls
            self.probing[i], owed, self.owed[i] = False, self.owed[i], 0
            for _ in range(owed):
                self._submit(i)
            return None
        if gen == self.gen[i]:
            self.failures[i] = 0
        self.events.append(False)
        self.delivered += 1
        self.normalizers = out["normalizers"]
        key = next(self.keys)
        self.held[key] = out["unroll"]
        return i, key, out["version"], out["episodes"]

    def gather(self, n: int, stop: StopSignal, on_episodes: Callable[..., None]) -> Optional[list[tuple]]:
        """The next ``n`` delivered unrolls (oldest first) as (actor, key, version, episodes) (see the mp pool),
        waiting as long as it takes; None when ``stop`` is set first."""
        while len(self.pending) < n and not stop:
            now = time.time()
            for _, i in [x for x in self.later if x[0] <= now]:
                self._probe(i)
            self.later = [x for x in self.later if x[0] > now]
            if not self.in_flight:
                time.sleep(0.1)
                continue
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=0.5)
            if ready:
                ready, _ = self.ray.wait(list(self.in_flight), num_returns=len(self.in_flight), timeout=0)
            for ref in ready:
                item = self._take(ref, *self.in_flight.pop(ref))
                if item is not None:
                    self.pending.append(item)
                    on_episodes(*item[3])
            if not self.delivered and time.time() - self.t_start > self.rc.start_timeout:
                raise RuntimeError(self._starved())
        if stop:
            return None
        return [self.pending.popleft() for _ in range(n)]

    def _starved(self) -> str:
        need = {"CPU": self.rc.actor_cpus, **self.rc.actor_resources}
        return (f"no Ray actor delivered an unroll within ray.start_timeout={self.rc.start_timeout} s; each of the "
                f"{self.n} actors needs {need}, the cluster has {self.ray.cluster_resources()} "
                f"({self.ray.available_resources()} free). Add nodes (`ray start --address ...`), or lower "
                f"--ray.actor_cpus / --impala.num_actors")

    # ---- the learner's side -------------------------------------------------------------------------
    def batch(self, items: list[tuple], device) -> dict[str, Any]:
        """The unrolls of ``items`` as one batch on ``device``; their actors get a new call each."""
        parts = [self.held.pop(key) for _, key, *_ in items]
        for i, *_ in items:
            self._submit(i)
        return to_batch(parts, device)

    def publish(self, policy: torch.nn.Module) -> int:
        self.version += 1
        self.weights = self.ray.put(weights_of(policy))
        return self.version

    def stats(self) -> dict[str, float]:
        return {"actor_restarts": self.restarts, "actor_failures": self.failures_total, "actor_deaths": self.deaths,
                "unrolls_dropped": self.dropped}

    def close(self) -> None:
        """Kill every actor (no restart) and end the Ray connection if this pool made it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for a in self.actors:
            if a is not None:
                try:
                    self.ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001 - Ray is already gone (its processes got the signal too)
                    pass
        self.in_flight.clear()
        if self.owns_ray:
            self.ray.shutdown()
