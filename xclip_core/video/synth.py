"""Generate small test/demo videos with PyAV (a dev/demo dependency, imported lazily).

Frames are smooth moving gradients plus a moving square, so the content changes
from frame to frame and each frame is distinguishable after lossy coding.
"""
from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np


def synth_frame(i: int, width: int, height: int) -> np.ndarray:
    """A deterministic uint8 [H,W,3] frame for index ``i``."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1) + 3 * i) % 256
    g = (y * 255 // max(height - 1, 1) + 5 * i) % 256
    b = np.full_like(x, (7 * i) % 256)
    frame = np.stack([r, g, b], axis=-1).astype(np.uint8)
    s = max(2, min(width, height) // 4)
    x0 = (i * 3) % max(width - s, 1)
    y0 = (i * 2) % max(height - s, 1)
    frame[y0:y0 + s, x0:x0 + s] = 255 - frame[y0:y0 + s, x0:x0 + s]
    return frame


def write_video(path: str | Path, *, num_frames: int = 60, width: int = 320, height: int = 240,
                fps: int = 30, codec: str = "libx264", pix_fmt: str = "yuv420p",
                pts: list[int] | None = None, time_base: fractions.Fraction | None = None,
                gop: int | None = None, options: dict | None = None,
                container_options: dict | None = None) -> Path:
    """Encode ``num_frames`` synthetic frames to ``path`` (container from the suffix).

    ``pts``/``time_base`` give irregular timestamps (variable frame rate).
    ``container_options`` go to the muxer (e.g. ``{"movflags": "faststart"}``).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options=dict(container_options or {})) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop is not None:
            stream.gop_size = gop
        if options:
            stream.options = dict(options)
        if time_base is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(synth_frame(i, width, height), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frames(path: str | Path, frames, *, fps: int = 25, codec: str = "libx264",
                 pix_fmt: str = "yuv420p", options: dict | None = None) -> Path:
    """Encode an iterable of uint8 [H,W,3] RGB frames (all the same size) to ``path``."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = None
        for rgb in frames:
            if stream is None:
                stream = container.add_stream(codec, rate=fps)
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = pix_fmt
                if options:
                    stream.options = dict(options)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return path


def write_audio_only(path: str | Path, *, seconds: float = 1.0, codec: str = "aac",
                     rate: int = 44100) -> Path:
    """A file with one audio stream (a sine tone) and no video stream."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        n = int(seconds * rate)
        t = np.arange(n) / rate
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
        chunk = 1024
        for start in range(0, n, chunk):
            block = samples[start:start + chunk][None]
            frame = av.AudioFrame.from_ndarray(block, format="flt" if fmt == "flt" else "fltp",
                                               layout="mono")
            frame.rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
