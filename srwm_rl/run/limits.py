"""What ends a run, and how far it is from that: signals, the horizon (steps or time) and the bar.

    with StopSignal() as stop: ...  # SIGINT / SIGTERM become a flag the loop checks (checkpoint, exit)

    horizon = Horizon(total_steps=10**6, time_limit=600.0)      # created when the run starts setting up
    horizon.fraction(global_step)   # the larger of global_step / total and elapsed / time_limit, in [0, 1]
    lr = lr0 * (1 - horizon.fraction(global_step))              # schedules follow it (linear annealing)

The progress bar shows that fraction as a percentage (so its remaining-time estimate is for the limit
that will actually end the run), with the steps, one speed (steps per second) and chosen metrics.
"""
from __future__ import annotations

import signal
import time
from typing import Any, Callable, Optional

from tqdm import tqdm

BAR_TOTAL = 1000      # the bar counts thousandths of the horizon


class StopSignal:
    """Turns SIGINT / SIGTERM into a flag the loop checks, so it can checkpoint and exit cleanly."""

    def __init__(self):
        self.received: Optional[int] = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:           # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
        return False

    def __bool__(self) -> bool:
        return self.received is not None


class Flag:
    """Truthy when ``fn()`` is: e.g. ``run.halt``, which loops that wait (IMPALA's gather) poll."""

    def __init__(self, fn: Callable[[], bool]):
        self.fn = fn

    def __bool__(self) -> bool:
        return bool(self.fn())


class Horizon:
    """``total`` steps or ``time_limit`` seconds (0 = none) from creation, whichever comes first."""

    def __init__(self, total: int, time_limit: float = 0.0):
        self.total, self.time_limit, self.created = int(total), float(time_limit), time.time()

    @property
    def elapsed(self) -> float:
        return time.time() - self.created

    @property
    def time_up(self) -> bool:
        return bool(self.time_limit) and self.elapsed > self.time_limit

    def fraction(self, global_step: int) -> float:
        f = global_step / self.total
        if self.time_limit:
            f = max(f, self.elapsed / self.time_limit)
        return min(1.0, f)


class ProgressBar:
    """tqdm over a :class:`Horizon`: percent done, elapsed < remaining, then the steps (of the total,
    and the time limit), one speed and the ``shown`` metrics last set."""

    def __init__(self, horizon: Horizon, global_step: int, unit: str = "step", enabled: bool = True):
        self.horizon, self.unit, self.shown = horizon, unit, {}
        self.bar = tqdm(total=BAR_TOTAL, initial=round(horizon.fraction(global_step) * BAR_TOTAL), disable=not enabled,
                        dynamic_ncols=True, bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")

    def update(self, global_step: int, sps: float, shown: Optional[dict[str, str]] = None) -> None:
        if shown is not None:
            self.shown = shown
        self.bar.update(round(self.horizon.fraction(global_step) * BAR_TOTAL) - self.bar.n)
        limit = f" or {self.horizon.time_limit:g} s" if self.horizon.time_limit else ""
        self.bar.set_postfix_str(", ".join(
            [f"{global_step:,}/{self.horizon.total:,} {self.unit}s{limit}", f"{sps:,.0f} {self.unit}s/s"]
            + [f"{k}={v}" for k, v in self.shown.items()]), refresh=True)

    def close(self) -> None:
        self.bar.close()
