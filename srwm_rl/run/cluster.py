"""Ray, the optional cluster engine (``pip install srwm-rl[ray]``): its options and the connection.

``RayConfig`` is the ``ray`` section of a run's config (``--ray.address`` ...); :func:`connect` starts a
local Ray instance (``address=""``) or joins a running cluster (``"auto"``: the one ``ray start`` made on
this machine; ``"host:port"``: that cluster's head node). Ray is imported only here and in the modules
that run on it, so the default install never needs it.

    ray start --head --port 6379                       # on the head node (the learner's machine)
    ray start --address HEAD_IP:6379                   # on every other node
    srwm-rl train --algo impala --impala.backend ray --ray.address auto
"""
from __future__ import annotations

import math
import os
import signal
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class RayConfig:
    """Where Ray runs the actors, and what each actor reserves there."""

    address: str = ""
    """Ray cluster: '' starts a local Ray instance for this run; 'auto' joins the cluster `ray start` runs on this machine; 'host:port' joins that head node."""
    actor_cpus: float = 1.0
    """CPUs each Ray actor reserves (Ray places an actor only on a node with them free)."""
    actor_resources: dict[str, Any] = field(default_factory=dict)
    """Custom resources each actor needs, as JSON: '{"actors": 1}' places actors only on nodes started with `ray start --resources '{"actors": 8}'`."""
    max_restarts: int = -1
    """How often Ray restarts a dead actor (-1: always); the run still stops after impala.max_actor_failures deaths of one actor in a row without an unroll."""
    start_timeout: float = 300.0
    """Seconds to wait for the first unroll (actors queued for free CPUs or resources included) before stopping with what the cluster lacks."""

    def validate(self) -> list[str]:
        errs = []
        if not self.actor_cpus >= 0:
            errs.append(f"ray.actor_cpus={self.actor_cpus}: must be >= 0")
        bad = {k: v for k, v in self.actor_resources.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0}
        if bad:
            errs.append(f"ray.actor_resources={self.actor_resources}: every amount must be a number > 0 (got {bad})")
        if self.max_restarts < -1:
            errs.append(f"ray.max_restarts={self.max_restarts}: must be >= -1 (-1 = always restart)")
        if not self.start_timeout > 0:
            errs.append(f"ray.start_timeout={self.start_timeout}: must be > 0")
        return errs


def import_ray():
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError("this needs Ray, an optional dependency: pip install 'srwm-rl[ray]'") from None
    return ray


def connect(cfg: RayConfig, local_cpus: float = 0, num_cpus: Optional[int] = None) -> bool:
    """Make sure this process is connected to Ray; True when it started the connection (and should
    ``ray.shutdown()`` it), False when Ray was already initialised (a test's shared instance).

    ``local_cpus``: CPUs a local instance must offer at least (all the run's actors), so a run on one
    machine never waits for a CPU Ray thinks it lacks (the mp backend oversubscribes the same way);
    ``num_cpus``: exactly that many instead (a study's ``--jobs``).
    Ray's driver installs its own SIGTERM handler; the handlers of the caller (the run's stop signal)
    are put back."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if cfg.address:
            ray.init(address=cfg.address, log_to_driver=True, configure_logging=False)
        else:
            cpus = num_cpus if num_cpus is not None else max(os.cpu_count() or 1, math.ceil(local_cpus))
            ray.init(address="local", num_cpus=cpus,
                     include_dashboard=False, log_to_driver=True, configure_logging=False)
    except ConnectionError as e:
        raise ConnectionError(f"ray.address={cfg.address!r}: cannot join the Ray cluster ({e}); start one with "
                              f"`ray start --head`, or pass --ray.address '' for a local instance") from None
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
    return True
