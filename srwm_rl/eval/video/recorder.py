"""The recorder: a ``run_episodes`` hook that turns a rollout into a video of tiles with overlays.

On the rollout thread it only copies the step's small arrays (frame, action probabilities, Delta
norms) into a queue; a background thread draws the overlays and encodes, so recording does not change
the actions and costs the rollout little. Episodes are laid out as a grid of tiles, one per
environment, drawn in place into one canvas that PyAV reads without a copy; a tile whose env has
finished its episodes keeps its last frame.
"""
from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

import envs
from srwm_rl.eval.video.overlay import TileRenderer
from srwm_rl.eval.video.writer import VideoWriter


class RolloutRecorder:
    """A ``run_episodes`` hook that writes one video frame per step (see the module docstring).

    ``action_names``: a name per Discrete action, shown beside the chosen action (``env.action_names()``).
    ``introspect``: ``policy.core.introspect`` (state -> {name: Tensor [B, ...]}), plotted per env as
    the mean over heads; None for no plot. ``cols``: tiles per row (default: a near-square grid).
    """

    def __init__(self, writer: VideoWriter, num_envs: int, *, overlays: bool = True, height: int = 256,
                 introspect: Optional[Callable] = None, cols: Optional[int] = None, trial_episodes: int = 0,
                 queue_size: int = 64, action_names: Optional[list[str]] = None):
        self.writer, self.num_envs, self.overlays = writer, num_envs, overlays
        self.introspect = introspect if overlays else None
        self.cols = cols or int(np.ceil(np.sqrt(num_envs)))
        self.renderer = TileRenderer(height, overlays, bgr=True)
        self.trial_episodes = trial_episodes
        self.action_names = action_names
        self.step = np.zeros(num_envs, np.int64)
        self.ret = np.zeros(num_envs, np.float64)
        self.episode = np.zeros(num_envs, np.int64)
        self.history: list[dict[str, list[float]]] = [{} for _ in range(num_envs)]
        self._canvas: Optional[np.ndarray] = None
        self._seen = np.zeros(num_envs, bool)
        self._inner_done = np.zeros(num_envs, bool)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    # -- rollout thread ---------------------------------------------------------------------------
    def __call__(self, obs, dist, state, info: dict[str, Any]) -> None:
        if self._error is not None:
            raise RuntimeError(f"video encoding failed: {self._error}") from self._error
        active = info["active"]
        if not active.any():
            return
        frames = info.get("frames")
        if frames is None:
            frames = _image_obs(obs)
        first = info["first"]
        if self.trial_episodes:                 # the inner episode the acted-on obs belongs to
            new = first | self._inner_done
            self.episode = np.where(first, 0, self.episode + self._inner_done)
            self._inner_done = np.asarray(info["inner_episode_done"], bool).copy()
        else:
            new = first
            self.episode += first & self._seen
        episode = self.episode.copy()
        self._seen |= active
        self.step = np.where(new, 0, self.step)          # step and return within the (inner) episode
        self.ret = np.where(new, 0.0, self.ret) + info["reward"]
        item: dict[str, Any] = {"active": active.copy(), "first": first.copy(), "step": self.step.copy(),
                                "reward": np.asarray(info["reward"]).copy(), "return": self.ret.copy(),
                                "episode": episode, "action": np.asarray(info["action"]).copy(),
                                "frames": None if frames is None else np.array(frames, copy=True)}
        if self.overlays and hasattr(dist, "probs"):
            item["probs"] = dist.probs.float().cpu().numpy()
        if self.introspect is not None:
            item["introspect"] = {k: v.float().reshape(v.shape[0], -1).mean(1).cpu().numpy()
                                  for k, v in self.introspect(state).items()}
        self.step = self.step + 1
        self._queue.put(item)

    # -- worker thread ----------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            try:
                self.writer.append(self._compose(item), bgr=True)
            except BaseException as e:  # noqa: BLE001 - reported on the rollout thread
                self._error = e

    def _compose(self, item: dict[str, Any]) -> np.ndarray:
        """Draw the active envs' tiles into the canvas (finished envs keep their last tile)."""
        frames = item["frames"]
        if self._canvas is None:
            sample = None if frames is None else frames[0]
            h, w = self.renderer.height, self.renderer.tile_width(sample)
            rows = -(-self.num_envs // self.cols)
            self._tile = (h, w)
            self._canvas = np.zeros((rows * h + (rows * h) % 2, self.cols * w + (self.cols * w) % 2, 3), np.uint8)
        h, w = self._tile
        for i in np.flatnonzero(item["active"]):
            if item["first"][i]:
                self.history[i] = {}
            for k, v in item.get("introspect", {}).items():
                self.history[i].setdefault(k, []).append(float(v[i]))
            d = {"step": int(item["step"][i]), "reward": float(item["reward"][i]),
                 "return": float(item["return"][i]), "episode": int(item["episode"][i]),
                 "trial_episodes": self.trial_episodes, "action": item["action"][i],
                 "action_names": self.action_names,
                 "probs": item["probs"][i] if "probs" in item else None}
            r, c = divmod(int(i), self.cols)
            # the canvas is BGR: PyAV converts BGR to YUV twice as fast as RGB
            self.renderer.draw(None if frames is None else frames[i], d, self.history[i],
                               out=self._canvas[r * h:(r + 1) * h, c * w:(c + 1) * w])
        return self._canvas

    def close(self) -> Path:
        """Wait for the queue to drain, then finish the file; returns its path."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"video encoding failed: {self._error}") from self._error
        if self.writer.frames == 0:
            raise RuntimeError("no frame was recorded")
        return self.writer.close()


def _image_obs(obs) -> Optional[np.ndarray]:
    """The observation itself when it is an RGB image batch [N, H, W, 3] uint8, else None."""
    o = obs.get("obs") if isinstance(obs, dict) else obs
    if isinstance(o, np.ndarray) and o.ndim == 4 and o.shape[-1] == 3 and o.dtype == np.uint8:
        return o
    return None


def enable_frames(env) -> bool:
    """Make ``env.get_frames()`` return pictures (after ``reset``) where it can; True when it does.

    Procgen returns its observations. Our in-context tasks (``envs.meta``) draw themselves with numpy
    when their ``render_mode`` is "rgb_array"; the evaluation env is built without it, so it is switched
    on here for those envs only (other Gymnasium envs may need pygame or a display). Otherwise the
    recorder falls back to image observations or to the overlay panel alone.
    """
    if env.get_frames() is not None:
        return True
    base = env.unwrapped
    inner = getattr(base, "envs", None)
    if not inner:
        return False
    targets = [e.unwrapped for e in inner]
    if not all(envs.draws_headless(t) for t in targets):
        return False
    for t in targets:
        t.render_mode = "rgb_array"
    return True
