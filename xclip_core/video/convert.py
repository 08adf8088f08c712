"""The per-frame conversion of the decode stage, done by swscale on the decoded frame:
colour conversion, resize-shortest-edge and centre crop (the box of
``xclip_core.geometry.crop_box``) in one call, only for sampled frames."""
from __future__ import annotations

import threading

import numpy as np

from xclip_core.geometry import crop_box

_local = threading.local()


def _reformatter():
    """One swscale context per thread, reused across frames: a fresh context per
    frame (what ``VideoFrame.reformat`` does for each new frame) spends ~2 ms
    building filters, several times the conversion itself."""
    r = getattr(_local, "reformatter", None)
    if r is None:
        from av.video.reformatter import VideoReformatter

        r = _local.reformatter = VideoReformatter()
    return r


_THREADS_KW: dict | None = None


def _threads_kw() -> dict:
    """``{"threads": 1}`` where ``reformat`` takes it (PyAV >= 18: its default,
    ``threads=None``, means one swscale thread per CPU, which oversubscribes N
    one-CPU decode tasks); ``{}`` on older PyAV. Detected once per process."""
    global _THREADS_KW
    if _THREADS_KW is None:
        import av

        probe = av.VideoFrame(2, 2, "rgb24")
        try:
            _reformatter().reformat(probe, width=2, height=2, format="rgb24", threads=1)
            _THREADS_KW = {"threads": 1}
        except TypeError:  # PyAV < 18: no ``threads`` keyword
            _THREADS_KW = {}
    return _THREADS_KW


def frame_to_crop(frame, crop: int, shortest_edge: int, interpolation: str = "BILINEAR",
                  out: np.ndarray | None = None) -> np.ndarray:
    """An ``av.VideoFrame`` (any pixel format) -> uint8 [crop, crop, 3] RGB."""
    rw, rh, top, left = crop_box(frame.width, frame.height, shortest_edge, crop)
    rgb = _reformatter().reformat(frame, width=rw, height=rh, format="rgb24",
                                  interpolation=interpolation, **_threads_kw()).to_ndarray()
    view = rgb[top:top + crop, left:left + crop]
    if out is None:
        return np.ascontiguousarray(view)
    out[...] = view
    return out


def rgb_to_crop(rgb: np.ndarray, crop: int, shortest_edge: int, interpolation: str = "BILINEAR",
                out: np.ndarray | None = None) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> uint8 [crop, crop, 3] with the same swscale path."""
    import av

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame_to_crop(frame, crop, shortest_edge, interpolation, out)
