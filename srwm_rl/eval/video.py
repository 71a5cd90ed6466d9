"""Rollout videos, headless: frames -> mp4 (PyAV, libx264) or gif, with optional overlays.

    writer = VideoWriter("out.mp4", fps=15)          # checks the path now, before any rollout
    rec = RolloutRecorder(writer, num_envs=4, introspect=policy.core.introspect)
    run_episodes(policy, env, 4, on_step=rec, capture_frames=True)
    rec.close()

The recorder is a ``run_episodes`` hook: on the rollout thread it only copies the step's small
arrays (frame, action probabilities, Delta norms) into a queue; a background thread draws the
overlays (numpy and Pillow) and encodes, so recording does not change the actions and costs the
rollout little. Episodes are laid out as a grid of tiles, one per environment, drawn in place into one
canvas that PyAV reads without a copy; a tile whose env has finished its episodes keeps its last frame.
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
    """uint8 RGB frames [H, W, 3] -> ``path``. The path is checked on construction.

    .mp4: H.264 (libx264, yuv420p, plays in browsers) written with PyAV, the library under imageio's
    pyav plugin, used directly to choose a fast colour conversion (the conversion, not the encoder,
    is most of the cost). Odd sizes are padded to even. .gif: Pillow, which merges identical
    consecutive frames into one longer frame.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 15.0, preset: str = "ultrafast", crf: int = 20):
        self.path = check_video_path(path)
        self.fps, self.frames, self.preset, self.crf = float(fps), 0, preset, crf
        if not self.fps > 0:
            raise ValueError(f"fps={fps}: must be > 0")
        self.shape: Optional[tuple[int, int]] = None
        self._gif: list[np.ndarray] = []
        self._container = self._stream = None

    def _open_mp4(self, h: int, w: int) -> None:
        from fractions import Fraction

        import av
        self._container = av.open(str(self.path), "w")
        self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
        self._stream.options = {"preset": self.preset, "crf": str(self.crf)}

    def append(self, frame: np.ndarray, bgr: bool = False) -> None:
        """Add one frame, RGB (or BGR with ``bgr``, the faster input for the mp4 colour conversion)."""
        frame = np.asarray(frame, np.uint8)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame: expected uint8 [H, W, 3], got shape {frame.shape}")
        h, w = frame.shape[:2]
        if (h % 2) or (w % 2):
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
        if self.shape is None:
            self.shape = frame.shape[:2]
            if self.path.suffix.lower() == ".mp4":
                self._open_mp4(*self.shape)
        elif frame.shape[:2] != self.shape:
            raise ValueError(f"frame: size {frame.shape[:2]} differs from the first frame's {self.shape}")
        if self._stream is not None:
            import av
            yuv = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(frame), format="bgr24" if bgr else "rgb24"
                                                  ).reformat(format="yuv420p", interpolation="FAST_BILINEAR")
            for packet in self._stream.encode(yuv):
                self._container.mux(packet)
        else:
            self._gif.append(frame[..., ::-1].copy() if bgr else frame.copy())
        self.frames += 1

    def close(self) -> Path:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = self._stream = None
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
    introspection values (e.g. the SRWM's |Delta W| per layer) over time.

    Drawing is numpy on a pre-drawn template (labels, frames of the charts); text is rendered by
    Pillow once per distinct string and cached as a mask, so a tile costs a fraction of a millisecond.
    """

    PANEL_W = 220
    BARS_Y, BARS_H = 62, 44
    MIN_OVERLAY_HEIGHT = 128

    def __init__(self, height: int = 256, overlays: bool = True, max_history: int = 1000, bgr: bool = False):
        from PIL import ImageFont
        if height < (self.MIN_OVERLAY_HEIGHT if overlays else 1):
            raise ValueError(f"height={height}: tiles with overlays need >= {self.MIN_OVERLAY_HEIGHT} pixels")
        self.height, self.overlays, self.max_history, self.bgr = height, overlays, max_history, bgr
        self.font = ImageFont.load_default()
        self._masks: dict[str, np.ndarray] = {}
        self._templates: dict[tuple, np.ndarray] = {}

    # -- primitives --------------------------------------------------------------------------------
    def _c(self, colour) -> np.ndarray:
        """An RGB colour in the canvas's channel order."""
        return np.asarray(colour[::-1] if self.bgr else colour, np.uint8)

    def _mask(self, text: str) -> np.ndarray:
        """bool [13, w, 1]: the pixels of ``text`` (rendered once by Pillow, then cached)."""
        m = self._masks.get(text)
        if m is None:
            from PIL import Image, ImageDraw
            w = int(self.font.getlength(text)) + 2
            img = Image.new("L", (max(w, 1), 13), 0)
            ImageDraw.Draw(img).text((0, 0), text, fill=255, font=self.font)
            m = (np.asarray(img) > 80)[..., None]
            if len(self._masks) > 20000:
                self._masks.clear()
            self._masks[text] = m
        return m

    def _text(self, panel: np.ndarray, x: int, y: int, text: str, colour) -> None:
        m = self._mask(text)
        h, w = min(m.shape[0], panel.shape[0] - y), min(m.shape[1], panel.shape[1] - x)
        if h > 0 and w > 0:
            np.copyto(panel[y:y + h, x:x + w], self._c(colour), where=m[:h, :w])

    def _template(self, n_actions: int, names: tuple[str, ...]) -> np.ndarray:
        key = (n_actions, names)
        if key not in self._templates:
            panel = np.empty((self.height, self.PANEL_W, 3), np.uint8)
            panel[:] = self._c(_BG)
            if n_actions:
                self._text(panel, 6, self.BARS_Y - 14, "action probabilities", _DIM)
                bw = (self.PANEL_W - 12) // n_actions
                for a in range(n_actions):
                    x0 = 6 + a * bw
                    _box(panel, x0, self.BARS_Y, x0 + bw - 2, self.BARS_Y + self.BARS_H, self._c((60, 60, 66)))
            if names:
                y = self._chart_y(n_actions)
                prefix = names[0].split("/")[0]
                title = "self-modification |Delta W|" if prefix == "delta_norm" else f"{prefix} (core state)"
                self._text(panel, 6, y, title + " over time", _DIM)
                for j, name in enumerate(names):
                    self._text(panel, 6 + (j % 2) * 104, y + 14 + 12 * (j // 2), name.split("/")[-1],
                               _LINE_COLOURS[j % len(_LINE_COLOURS)])
                top = self._chart_top(n_actions, len(names))
                if self.height - 6 - top >= 16:
                    _box(panel, 6, top, self.PANEL_W - 6, self.height - 6, self._c((60, 60, 66)))
            self._templates[key] = panel
        return self._templates[key]

    def _chart_y(self, n_actions: int) -> int:
        return self.BARS_Y + self.BARS_H + 8 if n_actions else 48

    def _chart_top(self, n_actions: int, n_lines: int) -> int:
        return self._chart_y(n_actions) + 14 + 12 * ((n_lines + 1) // 2)

    # -- a tile ------------------------------------------------------------------------------------
    def frame_width(self, frame: Optional[np.ndarray]) -> int:
        """Width of the picture part of a tile for ``frame`` [h, w, 3] (None: no picture)."""
        if frame is None:
            return 0 if self.overlays else self.height
        h, w = frame.shape[:2]
        return w * (self.height // h) if self.height % h == 0 else max(1, round(w * self.height / h))

    def tile_width(self, frame: Optional[np.ndarray]) -> int:
        return self.frame_width(frame) + (self.PANEL_W if self.overlays else 0)

    def draw(self, frame: Optional[np.ndarray], d: dict[str, Any], history: dict[str, list[float]],
             out: Optional[np.ndarray] = None) -> np.ndarray:
        """Draw the tile into ``out`` [height, tile_width, 3] (a view into the video canvas, so nothing
        is copied twice) or into a new array; returns it."""
        fw = self.frame_width(frame)
        if out is None:
            out = np.zeros((self.height, self.tile_width(frame), 3), np.uint8)
        if frame is not None:
            out[:, :fw] = upscale(frame[..., ::-1] if self.bgr else frame, self.height)[:, :fw]
        elif not self.overlays:
            out[:] = 0
        if not self.overlays:
            return out
        panel = out[:, fw:fw + self.PANEL_W]
        probs = d.get("probs")
        n_actions = 0 if probs is None else len(probs)
        names = tuple(history)
        panel[:] = self._template(n_actions, names)
        ep = f"episode {d['episode'] + 1}" + (f"/{d['trial_episodes']}" if d["trial_episodes"] else "")
        for j, text in enumerate((f"step {d['step']}", f"reward {d['reward']:+.2f}", f"return {d['return']:.2f}")):
            self._text(panel, 6, 4 + 13 * j, text, _TEXT)
        self._text(panel, 110, 4, ep, _TEXT)
        if n_actions:
            bw, h = (self.PANEL_W - 12) // n_actions, self.BARS_H - 1
            hi, bar = self._c(_HI), self._c((90, 150, 230))
            for a, p in enumerate(probs):
                x0, top = 7 + a * bw, self.BARS_Y + 1 + h - int(round(h * float(p)))
                panel[top:self.BARS_Y + self.BARS_H, x0:x0 + bw - 3] = hi if a == int(d["action"]) else bar
        if names:
            self._lines(panel, history, self._chart_top(n_actions, len(names)))
        return out

    def _lines(self, panel: np.ndarray, history: dict[str, list[float]], top: int) -> None:
        bottom, x0, width = self.height - 7, 7, self.PANEL_W - 14
        if bottom - top < 16:
            return
        series = [np.asarray(h[-self.max_history:], np.float64) for h in history.values()]
        hi = max(max((float(s.max()) for s in series if len(s)), default=0.0), 1e-6)
        for j, s in enumerate(series):
            if len(s) < 2:
                continue
            y = np.interp(np.linspace(0, len(s) - 1, width), np.arange(len(s)), s)
            py = np.round(bottom - 1 - (bottom - top - 3) * y / hi).astype(np.int64)
            prev = np.r_[py[0], py[:-1]]
            lo, n = np.minimum(py, prev), np.abs(py - prev) + 1        # column x: rows lo .. lo + n - 1
            start = np.cumsum(n) - n
            rows = np.repeat(lo - start, n) + np.arange(n.sum())
            panel[rows, x0 + np.repeat(np.arange(width), n)] = self._c(_LINE_COLOURS[j % len(_LINE_COLOURS)])
        self._text(panel, self.PANEL_W - 56, top + 2, f"{hi:.3g}", _DIM)


def _box(panel: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour) -> None:
    """1-pixel rectangle outline, inclusive corners."""
    panel[y0, x0:x1 + 1] = panel[y1, x0:x1 + 1] = colour
    panel[y0:y1 + 1, x0] = panel[y0:y1 + 1, x1] = colour


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
        self.renderer = TileRenderer(height, overlays, bgr=True)
        self.trial_episodes = trial_episodes
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
    if not all(type(t).__module__.startswith("envs.") and "rgb_array" in t.metadata.get("render_modes", ())
               for t in targets):
        return False
    for t in targets:
        t.render_mode = "rgb_array"
    return True
