"""Video files, headless: uint8 RGB frames -> mp4 (PyAV, libx264) or gif (Pillow)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

FORMATS = (".mp4", ".gif")


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
