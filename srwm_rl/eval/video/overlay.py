"""Drawing one environment's tile: the game frame and, with overlays, a side panel of numbers and charts."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

_TEXT, _DIM, _BG, _HI = (235, 235, 235), (140, 140, 140), (24, 24, 28), (255, 196, 0)
_LINE_COLOURS = ((80, 170, 255), (255, 110, 90), (110, 220, 120), (220, 120, 255), (255, 220, 90))


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
        self._text(panel, 110, 17, _action_text(d["action"], d.get("action_names")), _TEXT)
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
        self._text(panel, self.PANEL_W - 56, top + 2, f"max {hi:.3g}", _DIM)     # the chart's scale: 0 .. max
        self._text(panel, self.PANEL_W - 56, bottom - 14, "0", _DIM)


def _action_text(action: Any, names: Optional[list[str]] = None) -> str:
    """``action LEFT+UP`` (a named Discrete action), ``action 3``, or the components of a vector action."""
    a = np.asarray(action)
    if a.ndim == 0:
        i = int(a)
        return f"action {names[i] if names and 0 <= i < len(names) else i}"[:18]
    if np.issubdtype(a.dtype, np.integer):
        return ("action " + " ".join(str(int(x)) for x in a.ravel()))[:18]
    return " ".join(f"{float(x):+.2f}" for x in a.ravel()[:3])


def _box(panel: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour) -> None:
    """1-pixel rectangle outline, inclusive corners."""
    panel[y0, x0:x1 + 1] = panel[y1, x0:x1 + 1] = colour
    panel[y0:y1 + 1, x0] = panel[y0:y1 + 1, x1] = colour
