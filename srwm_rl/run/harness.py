"""The run harness: what every training algorithm shares, so that an algorithm file reads as the
algorithm only.

    def train(run: Run) -> dict:
        env = ...; run.set_threads(env.observation_space)
        model, optimizer = ...
        run.track(model, optimizer, obs_space, action_space, env=env)   # restores them on --resume
        run.start(total=...)
        while not run.done:
            ...                                                        # one update
            run.end_update(steps, score=stats.score, metrics=lambda: {...})
        return run.finish(model=model)

The rules, the same for every algorithm:
* seed: Python, numpy and torch global RNGs from ``cfg.seed`` (a resumed run restores them);
  device: ``cfg.device`` resolved once; threads: ``cfg.torch_threads``, where 0 picks one thread on the
  CPU for vector observations and PyTorch's default for images.
* metrics: every ``log_every`` updates and at the end, to metrics.csv and TensorBoard, with ``sps``
  (environment steps per second since the start of this process).
* best.pt: written whenever the update's selection score beats every earlier one (RL: the mean return
  of the last 100 episodes, once min(10, environments) have finished; few-shot: held-out accuracy). A
  run that never had a score keeps its final weights as best.pt.
* latest.pt: every ``checkpoint_every`` updates, at the end, and after Ctrl-C / SIGTERM.
* the run ends at ``total_steps``, after ``time_limit`` seconds (from the Run's creation), on SIGINT /
  SIGTERM (a second one stops at once), or when ``callback(run)`` returns True (``run.halt``: truthy
  once it should). ``run.fraction_done`` (srwm_rl/run/limits.py) drives LR annealing and the bar.
* ownership: the run directory carries a marker and is locked (srwm_rl/run/rundir.py) while the run is
  open; a second trainer on it fails with RunDirError. On --resume, metrics.csv rows and TensorBoard
  events past the checkpoint's step are dropped.
* finiteness (srwm_rl/run/guards.py): an algorithm skips an update whose data, loss or gradients are
  non-finite (``skip_nonfinite``: counted, logged as ``nonfinite_skipped``); persistent ones, or
  non-finite weights, stop the run with NonFiniteError naming the cause. No checkpoint with a
  non-finite value is ever written.
* exact resume: ``track(..., extra=f)`` stores ``f()`` (what the loop carries between updates: core
  memory, observations, environment state) in every checkpoint; ``resumed_extra`` gives it back.
"""
from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from srwm_rl.nn.encoders import is_image_space
from srwm_rl.run.checkpoint import rng_state, save_checkpoint, set_rng_state, space_to_dict
from srwm_rl.run.limits import Flag, Horizon, ProgressBar, StopSignal  # noqa: F401 (StopSignal: re-exported)
from srwm_rl.run.config import RunConfig, resolve_device, to_dict
from srwm_rl.run.environment import load_normalizer_state, normalizer_state
from srwm_rl.run.guards import NonFiniteError, NonFiniteGuard, nonfinite_state_dict
from srwm_rl.run.rundir import LOCK, acquire_lock, is_run_dir, release_lock, write_marker
from srwm_rl.run.runlog import RunLogger

Metrics = Union[dict[str, float], Callable[[], dict[str, float]]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads(torch_threads: int, obs_space: Optional[gym.Space], device: torch.device) -> int:
    """Apply ``torch_threads``; 0 picks one thread on the CPU for vector observations (small networks:
    intra-op threads cost more than they give, measured 4x slower with 2 threads on the 5x5 Dark Room
    preset) and PyTorch's default for images (convolutions do use both cores)."""
    n = torch_threads
    if n == 0 and device.type == "cpu" and obs_space is not None:
        main = obs_space["obs"] if isinstance(obs_space, gym.spaces.Dict) and "obs" in obs_space.spaces else obs_space
        n = 0 if is_image_space(main) else 1
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


class Run:
    """One training run: counters, checkpoints, logging, progress and stopping (module docstring).

    ``resume``: the checkpoint dict to continue from (None for a fresh run). ``callback(run)`` runs
    after every update; returning True ends the run (benchmarks stop at a target return with it).
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: Optional[dict[str, Any]] = None, *,
                 progress: bool = True, callback: Optional[Callable[["Run"], bool]] = None):
        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self.progress, self.callback = progress, callback
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        self.global_step = int(resume["global_step"]) if resume else 0
        self.update = int(resume["update"]) if resume else 0
        self.best = float(resume.get("best_return", -math.inf)) if resume else -math.inf
        self.stop = StopSignal()
        self.model: Optional[torch.nn.Module] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self._spaces: tuple[Any, Any] = (None, None)
        self._normalizers: Callable[[], list] = list
        self._extra: Optional[Callable[[], dict]] = None
        self._latest_step: Optional[int] = self.global_step if resume else None
        self._locked = False
        self._logger: Optional[RunLogger] = None
        self._bar: Optional[ProgressBar] = None
        self._show: dict[str, str] = {}
        self.horizon = Horizon(cfg.total_steps, cfg.time_limit)
        self._t0, self._step0 = time.time(), self.global_step
        self._ended_early = False
        self.halt = Flag(lambda: self.done)

    # ---- set-up ------------------------------------------------------------------------------------
    def __enter__(self) -> "Run":
        acquire_lock(self.run_dir)             # RunDirError when another live process holds it
        self._locked = True
        if is_run_dir(self.run_dir) or all(p.name == LOCK for p in self.run_dir.iterdir()):
            write_marker(self.run_dir)         # never mark a folder of someone else's files as ours
        self.stop.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        self.stop.__exit__()
        self.close()
        if self._locked:
            release_lock(self.run_dir)
            self._locked = False
        return False

    def set_threads(self, obs_space: Optional[gym.Space]) -> int:
        """Apply the ``torch_threads`` rule for this run's observations (module docstring)."""
        return configure_threads(self.cfg.torch_threads, obs_space, self.device)

    def track(self, model: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], obs_space, action_space, *,
              env=None, normalizers: Optional[Callable[[], list]] = None,
              extra: Optional[Callable[[], dict]] = None) -> None:
        """Say what a checkpoint holds (the model, its optimizer, the spaces, the observation and
        reward normalisers of ``env`` or those ``normalizers()`` returns, and ``extra()``: what the loop
        carries between updates). On --resume this loads them from the checkpoint, and the RNG states
        with them (``extra`` comes back as :attr:`resumed_extra`)."""
        self.model, self.optimizer, self._spaces = model, optimizer, (obs_space, action_space)
        self._extra = extra
        if env is not None:
            self._normalizers = lambda: normalizer_state(env)
        elif normalizers is not None:
            self._normalizers = normalizers
        if self.resume is not None:
            model.load_state_dict(self.resume["model"])
            if optimizer is not None:
                optimizer.load_state_dict(self.resume["optimizer"])
            if env is not None:
                load_normalizer_state(env, self.resume["normalizers"])
            set_rng_state(self.resume["rng"])

    @property
    def resumed_extra(self) -> Optional[dict]:
        """The ``extra`` of the checkpoint resumed from (None for a fresh run or a checkpoint without it)."""
        return self.resume.get("extra") if self.resume else None

    @property
    def resumed_normalizers(self) -> list:
        """The normaliser states of the checkpoint resumed from ([] for a fresh run)."""
        return list(self.resume.get("normalizers", [])) if self.resume else []

    def start(self, total: int, *, unit: str = "step", curve_key: str = "episode_return",
              show: Optional[dict[str, str]] = None) -> None:
        """Open the logger and the progress bar (after any processes are forked: both start threads).
        ``total``: the step count the run ends at (whole updates); ``curve_key``: learning_curve.png's metric;
        ``show``: bar label -> metric, shown beside the speed."""
        self._logger = RunLogger(self.run_dir, curve_key=curve_key,
                                 resume_step=self.global_step if self.resume is not None else None)
        self.horizon.total = int(total)
        self._bar = ProgressBar(self.horizon, self.global_step, unit, enabled=self.progress)
        self._show = show if show is not None else {"ret": curve_key}
        self._t0, self._step0 = time.time(), self.global_step

    # ---- the loop ------------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once the run should end: total_steps reached, a stop signal, time limit or callback."""
        return self.global_step >= self.cfg.total_steps or bool(self.stop) or self._ended_early or self.horizon.time_up

    @property
    def fraction_done(self) -> float:
        """How far the run is towards the limit that will end it, in [0, 1] (srwm_rl/run/limits.py)."""
        return self.horizon.fraction(self.global_step)

    def annealed(self, value: float) -> float:
        """``value`` decayed linearly to 0 over the run's horizon (:attr:`fraction_done`)."""
        return value * (1.0 - self.fraction_done)

    @property
    def sps(self) -> float:
        return (self.global_step - self._step0) / max(time.time() - self._t0, 1e-9)

    def end_update(self, steps: int, *, score: Optional[float] = None, metrics: Optional[Metrics] = None,
                   force_log: bool = False) -> None:
        """Count one update of ``steps`` environment steps, then apply the rules of the module docstring:
        best.pt if ``score`` is the best so far, metrics when due (``metrics`` may be a function, called
        only then), latest.pt when due, and the time limit and callback."""
        self.global_step += steps
        self.update += 1
        self._advance_bar()
        if score is not None and score > self.best:
            self.best = score
            self.checkpoint("best")
        if self.callback is not None and self.callback(self):
            self._ended_early = True
        if metrics is not None and (force_log or self.update % self.cfg.log_every == 0 or self.done):
            self.log(metrics() if callable(metrics) else metrics)
        if self.update % self.cfg.checkpoint_every == 0:
            self.checkpoint("latest")

    def skip_update(self, steps: int, metrics: dict[str, float]) -> None:
        """Count the ``steps`` of an update that was skipped (its data was used up, the weights did not
        change, e.g. a non-finite loss) and log ``metrics`` at once."""
        self.global_step += steps
        self._advance_bar()
        self.log(metrics)

    def skip_nonfinite(self, guard: NonFiniteGuard, cause: str, steps: int,
                       metrics: Optional[dict[str, float]] = None, hint: str = "") -> None:
        """Count an update skipped because ``cause`` (a guards.nonfinite_* description) was non-finite:
        its ``steps`` are used up, the weights are unchanged. A warning names the cause at the start of
        each streak; ``guard.max_in_row`` in a row raise NonFiniteError (the last good checkpoint is kept)."""
        if guard.in_row == 0:
            self.warn(f"warning: step {self.global_step}: {cause}; update skipped (weights unchanged)")
        stop = guard.skip(cause)
        self.skip_update(steps, {**(metrics or {}), "nonfinite_skipped": guard.skipped})
        if stop:
            raise NonFiniteError(self.failure_message(
                f"{guard.first} (non-finite in {guard.in_row} updates in a row; each was skipped)", hint))

    def failure_message(self, what: str, hint: str = "") -> str:
        """One paragraph: what stopped the run at which step, which checkpoint is kept, what to try."""
        latest = self.run_dir / "checkpoints" / "latest.pt"
        if self._latest_step is not None and latest.exists():
            kept = (f"The last good checkpoint, {latest} (step {self._latest_step}), is kept; "
                    f"`--resume {self.run_dir}` continues from it.")
        else:
            kept = (f"No checkpoint was written (the run stopped before its first one): remove {self.run_dir} "
                    f"or start it again with --overwrite.")
        return " ".join(x for x in (f"Training stopped at step {self.global_step}: {what}.", kept, hint) if x)

    def warn(self, message: str) -> None:
        """Print ``message`` to stderr without breaking the progress bar."""
        tqdm.write(message, file=sys.stderr)

    def log(self, metrics: dict[str, float]) -> None:
        """Write ``metrics`` (plus ``sps``) at the current step."""
        metrics = {**metrics, "sps": self.sps}
        if self._logger is not None:
            self._logger.log(self.global_step, metrics)
        self._advance_bar({label: f"{metrics[k]:.3g}" for label, k in self._show.items() if k in metrics})

    def _advance_bar(self, shown: Optional[dict[str, str]] = None) -> None:
        if self._bar is not None:
            self._bar.update(self.global_step, self.sps, shown)

    # ---- checkpoints and the end -------------------------------------------------------------------
    def normalizer_states(self) -> list[dict]:
        """The current observation / reward normaliser states of the tracked environment(s)."""
        return self._normalizers()

    def payload(self) -> dict[str, Any]:
        """Everything a checkpoint holds: config, spaces, weights, optimizer, normalisers, counters, RNG."""
        obs_space, action_space = self._spaces
        out = {"config": to_dict(self.cfg), "obs_space": space_to_dict(obs_space),
               "action_space": space_to_dict(action_space), "model": self.model.state_dict(),
               "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
               "normalizers": self.normalizer_states(), "global_step": self.global_step, "update": self.update,
               "rng": rng_state(), "best_return": self.best}
        if self._extra is not None:
            out["extra"] = self._extra()
        return out

    def checkpoint(self, name: str) -> Path:
        """Write checkpoints/<name>.pt atomically; NonFiniteError (nothing written) if a weight or an
        optimiser statistic is non-finite."""
        path = self.run_dir / "checkpoints" / f"{name}.pt"
        payload = self.payload()
        bad = nonfinite_state_dict(payload["model"]) or nonfinite_state_dict(payload["optimizer"], "optimizer state")
        if bad:
            raise NonFiniteError(self.failure_message(f"refusing to write {path.name} because {bad}"))
        save_checkpoint(path, payload)
        if name == "latest":
            self._latest_step = self.global_step
        return path

    def finish(self, **result: Any) -> dict[str, Any]:
        """Write latest.pt (and best.pt if the run never had one), close the logger and the bar, and
        return the run's summary with ``result`` added."""
        self.checkpoint("latest")
        if self.best == -math.inf:                 # never had a score: best = the final weights
            self.checkpoint("best")
        self.close()
        return {"global_step": self.global_step, "best_return": self.best, "interrupted": self.stop.received,
                **result}

    def close(self) -> None:
        """Close the progress bar and the logger (which draws the learning curve). Idempotent."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._logger is not None:
            self._logger.close()
            self._logger = None
