"""Cell executors of ``srwm-rl study``: how the unfinished cells of a grid get run. A registry,
:data:`EXECUTORS` (``--executor NAME``).

An executor is built with the number of cells to run at once (``--jobs``) and has one method,
``run(cell_dirs, on_done) -> {cell_dir: exit status}``: run every cell (``srwm_rl.app.study_cells.run_cell``
on its directory, whose cell.json says what it is), call ``on_done(cell_dir, status, seconds)`` as each
ends, and on SIGINT / SIGTERM stop starting cells and let the running ones checkpoint and exit.
Status 0 = finished (result.json written), 128 + N = stopped by signal N (its checkpoint is kept; a
rerun resumes it), ``study_cells.BUSY`` = another process holds the cell (its CELL_DIR/.lock, e.g. a
cell left running by a study killed with SIGKILL), anything else = failed (CELL_DIR/log.txt says why).

``local`` runs each cell as its own process (``python -m srwm_rl.app.study_cells CELL_DIR``, one torch
thread) with ``jobs`` of them at once. Another executor (a Ray cluster, say) registers itself with
:func:`register_executor` and calls ``run_cell`` wherever it places the cell; the cell directories
must then be on storage the workers share.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol, Sequence

OnDone = Callable[[Path, int, float], None]


class CellExecutor(Protocol):
    def run(self, cell_dirs: Sequence[Path], on_done: OnDone) -> dict[Path, int]: ...


EXECUTORS: dict[str, Callable[[int], CellExecutor]] = {}


def register_executor(name: str):
    """Class decorator: ``@register_executor("ray") class RayExecutor: def __init__(self, jobs): ...``."""
    def deco(factory):
        EXECUTORS[name] = factory
        return factory
    return deco


@register_executor("local")
class LocalExecutor:
    """``jobs`` cell processes at once on this machine (see the module docstring)."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stop: int = 0

    def _handle(self, signum, frame) -> None:
        self._stop = signum
        with self._lock:
            for p in self._procs:                # each child checkpoints and exits (the harness's rule)
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)

    def _one(self, cell_dir: Path, on_done: OnDone) -> int:
        if self._stop:
            return 128 + self._stop
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        t0 = time.time()
        with open(cell_dir / "log.txt", "a") as log:
            with self._lock:
                if self._stop:
                    return 128 + self._stop
                # own process group: a Ctrl-C reaches the study, which forwards it once as SIGTERM
                p = subprocess.Popen([sys.executable, "-m", "srwm_rl.app.study_cells", str(cell_dir)],
                                     stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                self._procs.add(p)
            status = p.wait()
            with self._lock:
                self._procs.discard(p)
        on_done(cell_dir, status, time.time() - t0)
        return status

    def run(self, cell_dirs: Sequence[Path], on_done: OnDone) -> dict[Path, int]:
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                futures = {d: pool.submit(self._one, d, on_done) for d in cell_dirs}
                return {d: f.result() for d, f in futures.items()}
        finally:
            for s, h in old.items():
                signal.signal(s, h)
