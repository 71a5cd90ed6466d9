"""The run directory: config.json, TensorBoard events, metrics.csv, checkpoints and a learning-curve PNG.

    RUN_DIR/
      config.json            the full TrainConfig
      metrics.csv            one row per log step (wide; the header grows if new metrics appear)
      tb/                    TensorBoard event files (appended to on --resume)
      checkpoints/latest.pt  written atomically; best.pt at the best selection score (the harness's rules,
                             srwm_rl/run/harness.py)
      learning_curve.png     the run's curve metric (episode return, or held-out accuracy) against steps
      .srwm-rl-run, .srwm-rl-lock   the marker and the lock of srwm_rl/run/rundir.py

On --resume (``resume_step``), metrics.csv rows past the checkpoint's step are dropped and TensorBoard is
told to purge its events past it, so that no step appears twice or goes backwards after a crash.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from srwm_rl.run.rundir import RunDirError, prepare_run_dir  # noqa: F401 - re-exported (earlier home)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class RunLogger:
    """Scalars to TensorBoard and metrics.csv, and a learning-curve PNG now and then."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True, plot_every_s: float = 60.0,
                 curve_key: str = "episode_return", resume_step: Optional[int] = None):
        self.run_dir = Path(run_dir)
        self.csv_path = self.run_dir / "metrics.csv"
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []
        if self.csv_path.exists():                     # --resume: keep the curve going
            with open(self.csv_path, newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or [])
                self.rows = list(reader)
            if resume_step is not None:                # rows a crash left past the checkpoint
                kept = [r for r in self.rows if _step_of(r) <= resume_step]
                if len(kept) != len(self.rows):
                    self.rows = kept
                    self._rewrite_csv()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            purge = {} if resume_step is None else {"purge_step": resume_step + 1}
            self.writer = SummaryWriter(str(self.run_dir / "tb"), **purge)
        self.plot_every_s, self.curve_key, self._last_plot = plot_every_s, curve_key, 0.0

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"global_step": int(step), "time": round(time.time(), 3)}
        row.update({k: float(v) for k, v in metrics.items() if v is not None and not _is_nan(v)})
        if self.writer is not None:
            for k, v in row.items():
                if k not in ("global_step", "time"):
                    self.writer.add_scalar(k, v, step)
        new = [k for k in row if k not in self.columns]
        self.rows.append(row)
        if new:
            self.columns += new
            self._rewrite_csv()
        else:
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, self.columns).writerow(row)
        if time.time() - self._last_plot > self.plot_every_s:
            self.plot()

    def _rewrite_csv(self) -> None:
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.columns)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.csv_path)

    def plot(self) -> Optional[Path]:
        """learning_curve.png: ``curve_key`` against global_step."""
        self._last_plot = time.time()
        pts = [(float(r["global_step"]), float(r[self.curve_key])) for r in self.rows
               if r.get(self.curve_key) not in (None, "")]
        if not pts:
            return None
        return plot_curve(self.run_dir / "learning_curve.png", *zip(*pts), ylabel=self.curve_key,
                          title=self.run_dir.name)

    def close(self) -> None:
        self.plot()
        if self.writer is not None:
            self.writer.close()


def plot_curve(path: Path, x, y, *, ylabel: str, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(x, y, lw=1.5)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _step_of(row: dict[str, Any]) -> float:
    try:
        return float(row.get("global_step") or math.inf)
    except ValueError:
        return math.inf


def _is_nan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def recent_mean(values: list[float], n: int = 100) -> float:
    """Mean of the last ``n`` values, NaN when there are none."""
    return float(np.mean(values[-n:])) if values else float("nan")
