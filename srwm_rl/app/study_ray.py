"""``srwm-rl study --executor ray``: every cell of the grid as a Ray task with one CPU, so a grid of cores x
tasks x seeds spreads over a Ray cluster (needs ``pip install 'srwm-rl[ray]'``).

    RAY_ADDRESS=auto srwm-rl study --executor ray --cores srwm lstm --tasks bandit --seeds 5

Which Ray: ``RAY_ADDRESS`` as Ray reads it (``auto``: the cluster ``ray start`` runs on this machine;
``host:port``: that head node); unset, a local Ray instance with ``--jobs`` CPUs. A task runs its cell
as ``python -m srwm_rl.app.study_cells CELL_DIR`` on whichever node Ray picks, so the study's
directory must be on storage every node sees under the same path (the cells write their runs,
checkpoints and results there; finished cells are skipped on a rerun as with ``local``). Ctrl-C /
SIGTERM cancels the queued cells and sends SIGTERM to the running ones, which checkpoint and exit.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from srwm_rl.app.command import UsageError
from srwm_rl.app.study_exec import OnDone, register_executor
from srwm_rl.run.cluster import RayConfig, connect, import_ray


def run_cell_process(cell_dir: str) -> tuple[int, float]:
    """The Ray task: the cell as its own process (one torch thread); (exit status, seconds). A cancel
    (KeyboardInterrupt here) becomes SIGTERM to the cell, which checkpoints and exits."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.time()
    with open(Path(cell_dir) / "log.txt", "a") as log:
        p = subprocess.Popen([sys.executable, "-m", "srwm_rl.app.study_cells", cell_dir], stdout=log,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            status = p.wait()
        except KeyboardInterrupt:
            p.send_signal(signal.SIGTERM)
            status = p.wait()
    return status, time.time() - t0


@register_executor("ray")
class RayExecutor:
    """Cells as Ray tasks (module docstring); ``jobs``: the CPUs of a local Ray instance."""

    def __init__(self, jobs: int):
        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs Ray, an optional dependency: pip install 'srwm-rl[ray]'")
        self.jobs = jobs
        self._stop = 0

    def _handle(self, signum, frame) -> None:
        self._stop = signum

    def run(self, cell_dirs: Sequence[Path], on_done: OnDone) -> dict[Path, int]:
        ray = import_ray()
        address = os.environ.get("RAY_ADDRESS", "")
        owns = connect(RayConfig(address=address), num_cpus=None if address else self.jobs)
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        task = ray.remote(num_cpus=1, max_retries=0)(run_cell_process)
        refs = {task.remote(str(d)): Path(d) for d in cell_dirs}
        statuses: dict[Path, int] = {}
        cancelled = False
        try:
            while refs:
                if self._stop and not cancelled:
                    for ref in refs:
                        ray.cancel(ref)          # queued: never start; running: KeyboardInterrupt -> SIGTERM
                    cancelled = True
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
                for ref in ready:
                    d = refs.pop(ref)
                    try:
                        statuses[d], seconds = ray.get(ref)
                    except ray.exceptions.TaskCancelledError:
                        statuses[d] = 128 + self._stop
                        continue
                    except ray.exceptions.RayError as e:      # the task's node or worker was lost
                        with open(d / "log.txt", "a") as log:
                            log.write(f"\nthe Ray task of this cell failed: {e}\n")
                        statuses[d], seconds = 1, 0.0
                    on_done(d, statuses[d], seconds)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            if owns:
                ray.shutdown()
        return {Path(d): statuses[Path(d)] for d in cell_dirs}
