"""Benchmark helper: a training run in a child process, watched through its metrics.csv and stopped from
outside with SIGTERM (the run checkpoints and exits), so that speeds are read the way a user sees them."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable


def read_rows(path: Path) -> list[dict]:
    """The rows of a metrics.csv ([] while it does not exist)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_until(cmd: list[str], metrics: Path, stop: Callable[[list[dict]], bool], **popen) -> str:
    """Run ``cmd`` in its own session until it ends or ``stop(rows of metrics)`` says so (checked twice a
    second), then SIGTERM it and return its output; a child that outlives that is killed with its group."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            **popen)
    try:
        while proc.poll() is None and not stop(read_rows(metrics)):
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return out


def after_first_row(seconds: float, min_rows: int = 2) -> Callable[[list[dict]], bool]:
    """A ``stop`` for :func:`run_until`: ``seconds`` after the first metrics row, once ``min_rows`` exist."""
    t_first: list[float] = []

    def stop(rows: list[dict]) -> bool:
        if rows and not t_first:
            t_first.append(time.time())
        return bool(t_first) and time.time() - t_first[0] >= seconds and len(rows) >= min_rows
    return stop


def steady_sps(rows: list[dict]) -> float:
    """Env steps per second between the first and the last metrics row (start-up and the first update
    excluded)."""
    first, last = rows[0], rows[-1]
    return (int(last["global_step"]) - int(first["global_step"])) / (float(last["time"]) - float(first["time"]))
