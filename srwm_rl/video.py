"""Rollout videos, headless: frames -> mp4 (imageio's pyav plugin, libx264) or gif, with optional overlays.

    writer = VideoWriter("out.mp4", fps=15)          # checks the path now, before any rollout
    rec = RolloutRecorder(writer, num_envs=4, introspect=policy.core.introspect)
    run_episodes(policy, env, 4, on_step=rec, capture_frames=True)
    rec.close()

The recorder is a ``run_episodes`` hook: on the rollout thread it only copies the step's small
arrays (frame, action probabilities, Delta norms) into a queue; a background thread draws the
overlays (numpy and Pillow) and encodes, so recording does not change the actions and costs the
rollout little. Episodes are laid out as a grid of tiles, one per environment; a tile whose env has
finished its episodes keeps its last frame.
"""
from __future__ import annotations

import os
import queue
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

FORMATS = (".mp4", ".gif")
_TEXT, _DIM, _BG, _HI = (235, 235, 235), (140, 140, 140), (24, 24, 28), (255, 196, 0)
_LINE_COLOURS = ((80, 170, 255), (255, 110, 90), (110, 220, 120), (220, 120, 255), (255, 220, 90))


def check_video_path(path: str | os.PathLike) -> Path:
    """The path as a Path, or ValueError when the format is unknown or the directory is missing or
    not writable (checked by creating and removing a temporary file there)."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"video path {path}: the extension must be one of {', '.join(FORMATS)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"video path {path}: directory {parent} does not exist")
    if path.is_dir():
        raise ValueError(f"video path {path} is a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".srwm-video-check-"):
            pass
    except OSError as e:
        raise ValueError(f"video path {path}: cannot write to directory {parent} ({e.strerror or e})") from None
    return path


class VideoWriter:
    """uint8 RGB frames [H, W, 3] -> ``path`` (.mp4: H.264 through PyAV; .gif: Pillow, which merges
    identical consecutive frames into one longer frame). The path is checked on construction; odd sizes
    are padded to even (H.264 with yuv420p needs even sizes)."""

    def __init__(self, path: str | os.PathLike, fps: float = 15.0):
        self.path = check_video_path(path)
        self.fps, self.frames = float(fps), 0
        self.shape: Optional[tuple[int, int]] = None
        self._gif: list[np.ndarray] = []
        self._mp4 = None

    def append(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame, np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame: expected uint8 [H, W, 3], got shape {frame.shape}")
        h, w = frame.shape[:2]
        if (h % 2) or (w % 2):
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
        if self.shape is None:
            self.shape = frame.shape[:2]
            if self.path.suffix.lower() == ".mp4":
                import imageio.v3 as iio
                self._mp4 = iio.imopen(self.path, "w", plugin="pyav")
                self._mp4.init_video_stream("libx264", fps=self.fps, pixel_format="yuv420p")
                self._mp4._video_stream.options = {"preset": "veryfast", "crf": "20"}
        elif frame.shape[:2] != self.shape:
            raise ValueError(f"frame: size {frame.shape[:2]} differs from the first frame's {self.shape}")
        if self._mp4 is not None:
            self._mp4.write_frame(frame)
        else:
            self._gif.append(frame)
        self.frames += 1

    def close(self) -> Path:
        if self._mp4 is not None:
            self._mp4.close()
            self._mp4 = None
        elif self._gif:
            import imageio.v3 as iio
            iio.imwrite(self.path, np.stack(self._gif), plugin="pillow", duration=1000.0 / self.fps, loop=0)
            self._gif = []
        return self.path


# ---- drawing ---------------------------------------------------------------------------------

def upscale(frame: np.ndarray, height: int) -> np.ndarray:
    """Nearest-neighbour resize of [h, w, 3] to the given height (integer factors when possible)."""
    h, w = frame.shape[:2]
    if h == height:
        return frame
    if height % h == 0:
        k = height // h
        return frame.repeat(k, 0).repeat(k, 1)
    from PIL import Image
    return np.asarray(Image.fromarray(frame).resize((max(1, round(w * height / h)), height), Image.NEAREST))


class TileRenderer:
    """Draws one env's tile: the game frame (scaled to ``height``) and, with overlays, a side panel
    with step, reward, return, episode within trial, action probabilities and the core's
    introspection values (e.g. the SRWM's |Delta| per layer) over time."""

    PANEL_W = 220

    def __init__(self, height: int = 256, overlays: bool = True, max_history: int = 1000):
        from PIL import ImageFont
        self.height, self.overlays, self.max_history = height, overlays, max_history
        self.font = ImageFont.load_default()

    def draw(self, frame: Optional[np.ndarray], d: dict[str, Any], history: dict[str, list[float]]) -> np.ndarray:
        if frame is None:                    # no picture (e.g. the bandit): the panel alone
            img = np.zeros((self.height, 0 if self.overlays else self.height, 3), np.uint8)
        else:
            img = upscale(frame, self.height)
        if not self.overlays:
            return img
        from PIL import Image, ImageDraw
        panel = Image.new("RGB", (self.PANEL_W, self.height), _BG)
        g = ImageDraw.Draw(panel)
        ep = f"episode {d['episode'] + 1}" + (f"/{d['trial_episodes']}" if d["trial_episodes"] else "")
        lines = [f"step {d['step']}   {ep}", f"reward {d['reward']:+.2f}", f"return {d['return']:.2f}"]
        for j, text in enumerate(lines):
            g.text((6, 4 + 13 * j), text, fill=_TEXT, font=self.font)
        y = 48
        probs = d.get("probs")
        if probs is not None:
            y = self._bars(g, probs, int(d["action"]), y)
        if history:
            self._lines(g, history, y + 4)
        return np.concatenate([img, np.asarray(panel)], axis=1)

    def _bars(self, g, probs: np.ndarray, action: int, y: int) -> int:
        g.text((6, y), "action probabilities", fill=_DIM, font=self.font)
        top, h, width = y + 14, 44, self.PANEL_W - 12
        bw = max(1, width // len(probs))
        for a, p in enumerate(probs):
            x0 = 6 + a * bw
            g.rectangle([x0, top, x0 + bw - 2, top + h], outline=(60, 60, 66))
            fill = _HI if a == action else (90, 150, 230)
            g.rectangle([x0, top + h - int(round(h * float(p))), x0 + bw - 2, top + h], fill=fill)
        return top + h + 4

    def _lines(self, g, history: dict[str, list[float]], y: int) -> None:
        bottom, x0, width = self.height - 6, 6, self.PANEL_W - 12
        if bottom - y < 30:
            return
        prefix = next(iter(history)).split("/")[0]
        title = "self-modification |Delta W|" if prefix == "delta_norm" else f"{prefix} (core state)"
        g.text((x0, y), title + " over time", fill=_DIM, font=self.font)
        top = y + 14 + 12 * ((len(history) + 1) // 2)
        for j, name in enumerate(history):
            g.text((x0 + (j % 2) * (width // 2), y + 14 + 12 * (j // 2)), name.split("/")[-1],
                   fill=_LINE_COLOURS[j % len(_LINE_COLOURS)], font=self.font)
        g.rectangle([x0, top, x0 + width, bottom], outline=(60, 60, 66))
        vals = [v for h in history.values() for v in h[-self.max_history:]]
        if not vals:
            return
        hi = max(max(vals), 1e-6)
        for j, h in enumerate(history.values()):
            h = h[-self.max_history:]
            n = max(len(h) - 1, 1)
            pts = [(x0 + width * k / n, bottom - (bottom - top - 2) * v / hi) for k, v in enumerate(h)]
            if len(pts) > 1:
                g.line(pts, fill=_LINE_COLOURS[j % len(_LINE_COLOURS)], width=1)
        g.text((x0 + width - 48, top + 2), f"{hi:.3g}", fill=_DIM, font=self.font)


def grid(tiles: list[np.ndarray], cols: int) -> np.ndarray:
    """Tiles [h, w, 3] (same size) -> one image, ``cols`` per row, padded with black."""
    rows = -(-len(tiles) // cols)
    blank = np.zeros_like(tiles[0])
    cells = tiles + [blank] * (rows * cols - len(tiles))
    return np.concatenate([np.concatenate(cells[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)


class RolloutRecorder:
    """A ``run_episodes`` hook that writes one video frame per step (see the module docstring).

    ``introspect``: ``policy.core.introspect`` (state -> {name: Tensor [B, ...]}), plotted per env as
    the mean over heads; None for no plot. ``cols``: tiles per row (default: a near-square grid).
    """

    def __init__(self, writer: VideoWriter, num_envs: int, *, overlays: bool = True, height: int = 256,
                 introspect: Optional[Callable] = None, cols: Optional[int] = None, trial_episodes: int = 0,
                 queue_size: int = 64):
        self.writer, self.num_envs, self.overlays = writer, num_envs, overlays
        self.introspect = introspect if overlays else None
        self.cols = cols or int(np.ceil(np.sqrt(num_envs)))
        self.renderer = TileRenderer(height, overlays)
        self.trial_episodes = trial_episodes
        self.step = np.zeros(num_envs, np.int64)
        self.ret = np.zeros(num_envs, np.float64)
        self.episode = np.zeros(num_envs, np.int64)
        self.history: list[dict[str, list[float]]] = [{} for _ in range(num_envs)]
        self.last: list[Optional[np.ndarray]] = [None] * num_envs
        self._seen = np.zeros(num_envs, bool)
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
        if self.trial_episodes:
            episode = self.episode.copy()       # the episode the acted-on obs belongs to
            self.episode = np.asarray(info["trial_episode"], np.int64).copy()
        else:
            self.episode += first & self._seen
            episode = self.episode.copy()
        self._seen |= active
        self.step = np.where(first, 0, self.step)
        self.ret = np.where(first, 0.0, self.ret) + info["reward"]
        item: dict[str, Any] = {"active": active.copy(), "first": first.copy(), "step": self.step.copy(),
                                "reward": np.asarray(info["reward"]).copy(), "return": self.ret.copy(),
                                "episode": episode, "action": np.asarray(info["action"]).copy(),
                                "frames": None if frames is None else np.array(frames, copy=True)}
        if self.overlays and hasattr(dist, "probs"):
            item["probs"] = dist.probs[0].float().cpu().numpy()
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
                self.writer.append(self._compose(item))
            except BaseException as e:  # noqa: BLE001 - reported on the rollout thread
                self._error = e

    def _compose(self, item: dict[str, Any]) -> np.ndarray:
        tiles = []
        for i in range(self.num_envs):
            if item["active"][i]:
                if item["first"][i]:
                    self.history[i] = {}
                for k, v in item.get("introspect", {}).items():
                    self.history[i].setdefault(k, []).append(float(v[i]))
                frame = None if item["frames"] is None else item["frames"][i]
                d = {"step": int(item["step"][i]), "reward": float(item["reward"][i]),
                     "return": float(item["return"][i]), "episode": int(item["episode"][i]),
                     "trial_episodes": self.trial_episodes, "action": item["action"][i],
                     "probs": item["probs"][i] if "probs" in item else None}
                self.last[i] = self.renderer.draw(frame, d, self.history[i])
            tiles.append(self.last[i])
        shape = next(t.shape for t in tiles if t is not None)
        tiles = [t if t is not None else np.zeros(shape, np.uint8) for t in tiles]
        return grid(tiles, self.cols) if self.num_envs > 1 else tiles[0]

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
    if not all(type(t).__module__.startswith("envs.") and "rgb_array" in t.metadata.get("render_modes", ())
               for t in targets):
        return False
    for t in targets:
        t.render_mode = "rgb_array"
    return True
