"""IMPALA's actor side: shared-memory unroll buffers, shared weights, the actor loop and the actor pool.

Data flow (one learner process, ``num_actors`` actor processes):

* ``UnrollBuffers``: ``slots`` unroll slots in shared memory, each holding one actor's unroll of its
  E environments: rows 0..T of observations and ``first`` (row T is the bootstrap step, which is row 0
  of the actor's next unroll), rows 0..T-1 of actions, behaviour log-probabilities, rewards and
  ``done`` (terminated or truncated after the action), and the core state *before* row 0.
  Every actor owns a fixed set of slots; a slot is either free (the actor may write it) or full
  (its index is on its way to, or held by, the learner).
* One duplex pipe per actor: the learner sends the index of a free slot, the actor answers with
  ``("unroll", slot, weights_version, (episode_returns, episode_lengths, trial_returns), normalizers)``.
  Per-actor pipes (no shared queue) mean that an actor killed at any moment cannot leave a lock held
  for the others.
* ``SharedWeights``: the learner's state dict in shared memory behind a sequence lock; an actor
  copies it at the start of each unroll when the version moved, so one unroll uses one policy.
* Failures: an actor whose environment raises (or returns a non-finite observation or reward) sends
  its traceback and dies; the pool prints the first traceback of each kind, counts it, and replaces
  the actor. More than ``max_actor_failures`` failures among the last ``failure_window`` events
  (unrolls delivered or failures, all actors together) stop the run with the environment's error.
"""
from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
import time
import traceback
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Optional

import numpy as np
import torch

import envs
from envs.api import empty_obs
from srwm_rl.nn.actions import action_spec
from srwm_rl.nn.cores import State
from srwm_rl.nn.policy import ActorCritic
from srwm_rl.nn.tree import tree_map
from srwm_rl.run.agent import build_policy
from srwm_rl.run.environment import load_normalizer_state, make_env, normalizer_state
from srwm_rl.run.guards import TrainingFailure, nonfinite_data
from srwm_rl.run.harness import StopSignal
from srwm_rl.run.rollout import bootstrap_truncated, episodes_of


class UnrollBuffers:
    """Shared-memory slots ``[slots, T(+1), E, ...]`` (see the module docstring for the rows)."""

    def __init__(self, slots: int, T: int, E: int, obs_space, action_space, state_example: State):
        def alloc(shape, dtype):
            return torch.zeros(shape, dtype=dtype).share_memory_()

        obs = empty_obs(obs_space, E)
        self.obs = tree_map(lambda v: alloc((slots, T + 1, *v.shape), torch.from_numpy(v).dtype), obs)
        self.first = alloc((slots, T + 1, E), torch.bool)
        actions = action_spec(action_space)
        self.action = alloc((slots, T, E, *actions.shape), actions.dtype)
        self.logp = alloc((slots, T, E), torch.float32)
        self.reward = alloc((slots, T, E), torch.float32)
        self.done = alloc((slots, T, E), torch.bool)
        self.state = tuple(alloc((slots, *s.shape), s.dtype) for s in state_example)
        self.T, self.E, self.slots = T, E, slots

    def batch(self, slots: list[int], device) -> dict[str, Any]:
        """Copy the given slots into one time-major batch of B = len(slots) * E sequences on ``device``.

        For a CUDA learner the slots are gathered into pinned (page-locked) host memory and copied
        asynchronously; PyTorch's caching host allocator keeps a pinned block until its copy is done."""
        device = torch.device(device)

        def gather(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
            if device.type != "cuda":
                return torch.cat(parts, dim=dim).to(device)
            shape = list(parts[0].shape)
            shape[dim] = sum(p.shape[dim] for p in parts)
            out = torch.empty(shape, dtype=parts[0].dtype, pin_memory=True)
            return torch.cat(parts, dim=dim, out=out).to(device, non_blocking=True)

        def cat(buf):
            return gather([buf[s] for s in slots], 1)

        return {"obs": tree_map(cat, self.obs), "first": cat(self.first), "action": cat(self.action),
                "logp": cat(self.logp), "reward": cat(self.reward), "done": cat(self.done),
                "state": tuple(gather([s[i] for i in slots], 0) for s in self.state)}


class SharedWeights:
    """A state dict in shared memory with a sequence lock: the counter is odd while the learner writes."""

    def __init__(self, module: torch.nn.Module, ctx):
        self.tensors = {k: v.detach().to("cpu", copy=True).share_memory_() for k, v in module.state_dict().items()}
        self.seq = ctx.RawValue("q", 0)

    @property
    def version(self) -> int:
        return self.seq.value // 2

    @torch.no_grad()
    def publish(self, module: torch.nn.Module) -> int:
        state = module.state_dict()
        if any(v.device.type == "cuda" for v in state.values()):
            # All device-to-host copies in flight at once (into pinned memory), then one wait.
            state = {k: v.to("cpu", non_blocking=True) for k, v in state.items()}
            torch.cuda.synchronize()
        self.seq.value += 1
        for k, v in state.items():
            self.tensors[k].copy_(v)
        self.seq.value += 1
        return self.version

    def load_into(self, module: torch.nn.Module, have: int = -1) -> int:
        """Copy the weights into ``module`` unless version ``have`` is current; returns the version loaded."""
        while True:
            seq = self.seq.value
            if seq % 2:
                time.sleep(0.0002)
                continue
            if seq // 2 == have:
                return have
            module.load_state_dict(self.tensors)
            if self.seq.value == seq:
                return seq // 2


class Actor:
    """Steps E environments with a policy copy and writes unrolls; usable in-process (tests)."""

    def __init__(self, policy: ActorCritic, env, buffers: UnrollBuffers, gamma: float):
        self.policy, self.env, self.buf, self.gamma = policy, env, buffers, gamma
        self.obs = self.first = self.state = None

    def reset(self, seed: int) -> None:
        self.obs = self.env.reset(seed=seed)
        self.first = self.env.first
        self.state = self.policy.initial_state(self.env.num_envs, torch.device("cpu"))

    @torch.inference_mode()
    def fill(self, slot: int, stop=None) -> Optional[tuple[list[float], list[int]]]:
        """One unroll of T steps into ``slot``; returns finished episodes' (returns, lengths), or None
        when ``stop`` (an Event) was set before the unroll was complete."""
        buf, T, returns, lengths, trials = self.buf, self.buf.T, [], [], []
        for s_buf, s in zip(buf.state, self.state):
            s_buf[slot].copy_(s)
        for t in range(T + 1):
            tree_map(lambda b, v: b[slot, t].copy_(torch.from_numpy(np.asarray(v))), buf.obs, self.obs)
            buf.first[slot, t].copy_(torch.from_numpy(self.first))
            if t == T:
                break
            dist, _, self.state = self.policy.step(tree_map(lambda b: b[slot, t], buf.obs), self.state,
                                                   buf.first[slot, t])
            action = dist.sample()
            buf.action[slot, t].copy_(action.reshape(buf.action[slot, t].shape))
            buf.logp[slot, t].copy_(dist.log_prob(action))
            self.obs, reward, term, trunc, info = self.env.step(action.numpy())
            bad = nonfinite_data(observation=self.obs, reward=reward)
            if bad is not None:
                raise ValueError(f"{bad}, in a step of the actor's environments")
            reward = bootstrap_truncated(self.policy, reward, trunc, info, self.state, self.gamma)
            buf.reward[slot, t].copy_(torch.from_numpy(reward))
            buf.done[slot, t].copy_(torch.from_numpy(np.asarray(term | trunc)))
            self.first = self.env.first
            ended = episodes_of(info)            # per episode (inner episodes of trials)
            returns += ended[0]
            lengths += ended[1]
            trials += ended[2]
            if stop is not None and stop.is_set():
                return None
        return returns, lengths, trials


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the learner dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def actor_seed(cfg, actor: int, incarnation: int, start_update: int) -> int:
    return int(np.random.SeedSequence([cfg.seed, actor, incarnation, start_update]).generate_state(1)[0])


def actor_main(cfg, actor: int, seed: int, buffers: UnrollBuffers, weights: SharedWeights,
               conn, stop, parent_pid: int, normalizers: Optional[list] = None) -> None:
    """Process entry: build env and policy, then fill whichever slot the learner hands over.
    ``normalizers``: observation / reward normaliser states to start from (resume, replacement)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C goes to the learner, which stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    torch.set_num_threads(cfg.impala.actor_threads)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    env = None
    try:
        ic = cfg.impala
        env = make_env(cfg.env, cfg.policy, seed, num_envs=ic.envs_per_actor, discount=ic.gamma,
                       id=envs.family_of(cfg.env.id).shard(cfg.env.id, actor, ic.envs_per_actor))
        policy = build_policy(cfg, env.observation_space, env.action_space, "cpu").eval()
        for p in policy.parameters():
            p.requires_grad_(False)
        worker = Actor(policy, env, buffers, ic.gamma)
        if normalizers:
            load_normalizer_state(env, normalizers)
        worker.reset(seed)
        version = -1
        while not stop.is_set():
            if os.getppid() != parent_pid:
                return
            if not conn.poll(0.2):
                continue
            slot = conn.recv()
            if slot is None:
                return
            version = weights.load_into(policy, version)
            result = worker.fill(slot, stop)
            if result is None:
                return
            conn.send(("unroll", slot, version, result, normalizer_state(env)))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return
    except BaseException:  # noqa: BLE001 - report the cause to the learner, then die (it replaces us)
        try:
            conn.send(("error", actor, traceback.format_exc()))
        except OSError:
            pass
        raise SystemExit(1)
    finally:
        if env is not None:
            env.close()


class ActorFailure(TrainingFailure):
    """Actors failed too often (their environment raised, or they were killed)."""


class ActorPool:
    """Starts, watches, replaces and stops the actor processes; routes slots between them and the learner."""

    def __init__(self, cfg, buffers: UnrollBuffers, weights: SharedWeights, ctx,
                 slots_per_actor: int, start_update: int = 0, normalizers: Optional[list] = None,
                 warn: Optional[Callable[[str], None]] = None):
        self.cfg, self.buffers, self.weights, self.ctx = cfg, buffers, weights, ctx
        self.n, self.k, self.start_update = cfg.impala.num_actors, slots_per_actor, start_update
        self.stop = ctx.Event()
        self.procs: list[Any] = [None] * self.n
        self.conns: list[Any] = [None] * self.n
        self.incarnation = [0] * self.n
        self.failures = [0] * self.n          # deaths in a row without an unroll delivered
        self.full = [False] * (self.n * self.k)
        self.errors: dict[int, str] = {}
        self.restarts = 0
        self.failures_total = 0
        self.events: deque = deque(maxlen=cfg.impala.failure_window)   # True: a failure, False: an unroll
        self._seen_errors: set[str] = set()
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.normalizers = normalizers or []   # the latest normaliser states an actor reported
        self.pending: deque = deque()          # delivered unrolls the learner has not taken yet

    def owner(self, slot: int) -> int:
        return slot // self.k

    def start(self) -> None:
        for i in range(self.n):
            self._start(i)

    def _start(self, i: int) -> None:
        seed = actor_seed(self.cfg, i, self.incarnation[i], self.start_update)
        mine, theirs = self.ctx.Pipe(duplex=True)
        p = self.ctx.Process(target=actor_main, name=f"impala-actor-{i}", daemon=True,
                             args=(self.cfg, i, seed, self.buffers, self.weights, theirs, self.stop, os.getpid(),
                                   self.normalizers))
        p.start()
        theirs.close()
        self.procs[i], self.conns[i] = p, mine
        for slot in range(i * self.k, (i + 1) * self.k):
            if not self.full[slot]:
                mine.send(slot)

    def collect(self, timeout: float) -> list[tuple]:
        """Wait up to ``timeout`` s; returns delivered unrolls as (actor, slot, version, episodes), episodes
        = (episode returns, episode lengths, trial returns) of ``Actor.fill``, and replaces any actor that died."""
        got = []
        ready = set(wait([c for c in self.conns] + [p.sentinel for p in self.procs], timeout))
        for i, conn in enumerate(self.conns):
            if conn not in ready and self.procs[i].sentinel not in ready:
                continue
            try:
                while conn.poll():
                    msg = conn.recv()
                    if msg[0] == "unroll":
                        _, slot, version, ended, self.normalizers = msg
                        self.full[slot] = True
                        self.failures[i] = 0
                        self.events.append(False)
                        got.append((i, slot, version, ended))
                    elif msg[0] == "error":
                        self.errors[i] = msg[2]
                        kind = _last_line(msg[2])
                        if kind not in self._seen_errors:      # the first of its kind: the whole traceback
                            self._seen_errors.add(kind)
                            self.warn(f"warning: IMPALA actor {i} failed (it is replaced; failures are counted):\n"
                                      f"{msg[2].rstrip()}")
            except Exception:  # noqa: BLE001 - a message cut short by the actor's death
                pass
            if not self.procs[i].is_alive() and not self.stop.is_set():
                self._replace(i)
        return got

    def gather(self, n: int, stop: StopSignal, on_episodes: Callable[..., None]) -> Optional[list[tuple]]:
        """The next ``n`` delivered unrolls (oldest first) as (actor, slot, version, episodes), waiting as
        long as it takes; ``on_episodes(returns, lengths, trial_returns)`` sees every delivery's finished
        episodes and trials. None when ``stop`` is set first."""
        while len(self.pending) < n and not stop:
            for item in self.collect(timeout=0.5):
                self.pending.append(item)
                on_episodes(*item[3])
        if stop:
            return None
        return [self.pending.popleft() for _ in range(n)]

    def _replace(self, i: int) -> None:
        p = self.procs[i]
        p.join(timeout=1.0)
        self.conns[i].close()
        self.failures[i] += 1
        self.failures_total += 1
        self.events.append(True)
        ic = self.cfg.impala
        in_window = sum(self.events)
        if self.failures[i] >= ic.max_actor_failures or in_window >= ic.max_actor_failures:
            err = self.errors.pop(i, None)
            cause = (f"its environment's error: {_last_line(err)} (traceback above)" if err else
                     f"no traceback: the process was killed or crashed (exit code {p.exitcode})")
            raise ActorFailure(f"IMPALA actors failed {in_window} times among the last {len(self.events)} unrolls "
                               f"and failures (impala.max_actor_failures={ic.max_actor_failures}, "
                               f"impala.failure_window={ic.failure_window}); the last was actor {i}, {cause}")
        self.errors.pop(i, None)
        self.restarts += 1
        self.incarnation[i] += 1
        self._start(i)

    def release(self, slot: int) -> None:
        """Give a consumed slot back to its actor (a dead actor's replacement gets it on start)."""
        self.full[slot] = False
        try:
            self.conns[self.owner(slot)].send(slot)
        except (OSError, ValueError):
            pass                                   # the actor died; _start() hands the slot over again

    # ---- the learner's side (agents.impala.ActorBackend) ----------------------------------------
    def batch(self, items: list[tuple], device) -> dict[str, Any]:
        """The slots of ``items`` (from ``gather``) as one batch on ``device``; the slots go back to their actors."""
        out = self.buffers.batch([it[1] for it in items], device)
        for it in items:
            self.release(it[1])
        return out

    @property
    def version(self) -> int:
        return self.weights.version

    def publish(self, policy: torch.nn.Module) -> int:
        return self.weights.publish(policy)

    def stats(self) -> dict[str, float]:
        return {"actor_restarts": self.restarts, "actor_failures": self.failures_total}

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def close(self, timeout: float = 5.0) -> None:
        """Stop every actor: ask, wait, then terminate and kill what is left. Idempotent."""
        self.stop.set()
        for c in self.conns:
            if c is not None:
                try:
                    c.send(None)
                except (OSError, ValueError):
                    pass
        deadline = time.time() + timeout
        for p in self.procs:
            if p is not None:
                p.join(timeout=max(0.0, deadline - time.time()))
        for p in self.procs:
            if p is not None and p.is_alive():
                p.terminate()
                p.join(timeout=1.0)
            if p is not None and p.is_alive():
                p.kill()
                p.join()
        for c in self.conns:
            if c is not None:
                c.close()


def _last_line(tb: str) -> str:
    lines = [x for x in tb.strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else tb


def slots_per_actor(num_actors: int, batch_slots: int) -> int:
    """Enough slots that actors keep working while the learner holds a batch (at least 2 each)."""
    return max(2, math.ceil(2 * batch_slots / num_actors))
