"""Run directory ownership: a marker that says "srwm-rl made this", and a lock held by the live run.

    RUN_DIR/.srwm-rl-run     the marker (JSON: format, creation time); --overwrite only replaces a
                             directory that has it (or a run directory of an earlier version, recognised
                             by holding nothing but run files)
    RUN_DIR/.srwm-rl-lock    the lock: flock(2)-ed by the process that trains in the directory, with its
                             PID and host inside. The kernel drops the lock when that process dies,
                             however it dies (kill -9 included), so a stale lock file never blocks a run.

The lock is re-entrant within one process (the command and the harness both take it); another process
gets :class:`RunDirError` naming the owner's PID.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Optional

MARKER = ".srwm-rl-run"
LOCK = ".srwm-rl-lock"
# What a run directory of srwm-rl 0.1 (before the marker) may hold; anything else means it is not one.
RUN_FILES = {"config.json", "metrics.csv", "tb", "checkpoints", "learning_curve.png", "eval", "videos",
             "adaptation", "summary.json", MARKER, LOCK}


class RunDirError(ValueError):
    """The run directory cannot be used as asked (it exists, is not a run directory, is in use by another
    run, or is missing for --resume)."""


def is_run_dir(path: str | os.PathLike) -> bool:
    """True for a directory srwm-rl created: it has the marker, or (earlier versions) a config.json and
    nothing but run files."""
    path = Path(path)
    if (path / MARKER).is_file():
        return True
    if not (path / "config.json").is_file():
        return False
    return all(p.name in RUN_FILES or p.name.startswith("config.json") for p in path.iterdir())


def write_marker(path: str | os.PathLike) -> None:
    """Mark ``path`` (created if needed) as a run directory; an existing marker is kept."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if not marker.exists():
        marker.write_text(json.dumps({"srwm_rl_run": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")


# ---- the lock ---------------------------------------------------------------------------------------

_HELD: dict[Path, list] = {}          # resolved run dir -> [fd, count] held by this process


def _key(path: str | os.PathLike) -> Path:
    return Path(path).resolve()


def lock_owner(path: str | os.PathLike) -> Optional[str]:
    """'PID n on host h' of the live process holding ``path``'s lock (another process), else None."""
    path = Path(path)
    if _key(path) in _HELD or not (path / LOCK).exists():
        return None
    try:
        fd = os.open(path / LOCK, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe_owner(path)
    finally:
        os.close(fd)
    return None


def _describe_owner(path: Path) -> str:
    try:
        pid, host = (path / LOCK).read_text().split()[:2]
        return f"PID {pid} on {host}"
    except (OSError, ValueError):
        return "another process"


def acquire_lock(path: str | os.PathLike) -> None:
    """Lock the run directory ``path`` (created if needed) for this process; RunDirError if a live
    process holds it. Re-entrant: release as many times as acquired."""
    path = Path(path)
    key = _key(path) if path.exists() else None
    if key is not None and key in _HELD:
        _HELD[key][1] += 1
        return
    path.mkdir(parents=True, exist_ok=True)
    key = _key(path)
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirError(f"run directory {path} is in use by a live training run ({_describe_owner(path)}); "
                          f"wait for it to end or stop it, or choose another --run_dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    _HELD[key] = [fd, 1]


def release_lock(path: str | os.PathLike) -> None:
    """Undo one :func:`acquire_lock`; the last one unlocks (the lock file stays, unlocked)."""
    key = _key(path)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]
        try:
            fcntl.flock(held[0], fcntl.LOCK_UN)
        finally:
            os.close(held[0])


# ---- creating, replacing and reopening -----------------------------------------------------------------

def prepare_run_dir(path: str | os.PathLike, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Create (or reopen for --resume) a run directory; never replace one unless asked, and never replace
    a directory that is not a run directory or that a live run holds. RunDirError says what to do."""
    path = Path(path)
    latest = path / "checkpoints" / "latest.pt"
    if resume:
        if not latest.exists():
            if path.is_dir() and is_run_dir(path):
                raise RunDirError(f"--resume {path}: the run stopped before its first checkpoint, so there is "
                                  f"nothing to resume; start it again with the same options and --overwrite "
                                  f"(or remove {path})")
            raise RunDirError(f"--resume {path}: no checkpoint at {latest}")
        return path
    if path.exists() and not path.is_dir():
        raise RunDirError(f"run directory {path} exists and is not a directory")
    if path.exists() and any(p.name != LOCK for p in path.iterdir()):
        if not is_run_dir(path):
            raise RunDirError(f"{path} exists and is not an srwm-rl run directory (no {MARKER} marker); "
                              f"--overwrite only replaces run directories. Choose another --run_dir")
        owner = lock_owner(path)
        if owner:
            raise RunDirError(f"run directory {path} is in use by a live training run ({owner}); "
                              f"it cannot be overwritten or resumed while that run is going")
        if not overwrite:
            what = ("holds a run" if latest.exists() else
                    "holds a run that stopped before its first checkpoint (nothing to resume)")
            cont = f", --resume {path} to continue it" if latest.exists() else ""
            raise RunDirError(f"run directory {path} already exists and {what}; pass --overwrite to replace "
                              f"it{cont}, or choose another --run_dir")
        acquire_lock(path)
        try:
            for p in path.iterdir():
                if p.name != LOCK:
                    shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        finally:
            release_lock(path)
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    write_marker(path)
    return path
