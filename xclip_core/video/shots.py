"""Shot boundaries from the frames the decoder already has (pure numpy), and windows laid inside shots.

Signature. ``frame_signature(frame)`` reads a decoded PyAV frame's planes as they are (8-bit
planar YUV: a strided numpy view, no colour conversion, no swscale; other pixel formats go through
one tiny swscale call) and keeps a ~48-column grid of Y, U and V cells (each the mean of 16 pixels)
plus a 16/8/8-bin histogram.

Score. Between consecutive decoded frames: ``score = (mean |dY|/2 + mean |dU|/4 + mean |dV|/4) on the
grid of 4x4-averaged cells (0..255) * (0.1 + histogram distance (0..1))``, so a change of content *and*
colour distribution (a cut) scores far above motion, which moves pixels but keeps the histogram.
The weights and the 0.1 were tuned on bench/shots.py's videos of seed 1 (results are reported on
another seed).

Adaptive threshold (like PySceneDetect's AdaptiveDetector). A frame starts a new shot when its
score is at least ``threshold`` times the mean score of the ``window`` decoded frames on each side
of it, at least ``min_score``, and the shot it ends is at least ``min_shot_s`` long. Fast motion
raises the neighbours' scores too, so the ratio stays low; a hard cut is one isolated peak.

Dissolves and fades spread the change over many frames: no single ratio peak, so they are
usually *not* cut (the shots on both sides stay one shot); a fade from black to a new scene is
cut only when its last frames jump. Measured in bench/shots.py.

Decoded frames are the reference frames (and the sampled ones: ``shot_decode``), so a cut is
placed at the first *decoded* frame of the new shot: at most one reference-frame interval late
(0.08 s at 25 fps with two B-frames; x264's scenecut puts an I-frame on most hard cuts, which is
then exact).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

_GRID_COLS = 48
_YUV8 = {"yuv420p": (2, 2), "yuvj420p": (2, 2), "yuv422p": (2, 1), "yuvj422p": (2, 1),
         "yuv444p": (1, 1), "yuvj444p": (1, 1), "yuv411p": (4, 1), "yuv440p": (1, 2)}


@dataclass(frozen=True)
class Signature:
    grid: tuple[np.ndarray, np.ndarray, np.ndarray]  # Y, U, V samples (int16)
    hist: np.ndarray  # 32 bins (16 Y, 8 U, 8 V), each plane's part sums to 1


def _plane(plane, w: int, h: int, step_x: int, step_y: int) -> np.ndarray:
    """Cells of ``step_x`` x ``step_y`` pixels, each the mean of a 4 x 4 sub-grid of its pixels (a
    cheap area average: point samples alias under motion and make a pan look like a cut)."""
    arr = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
    return _cells(arr, step_x, step_y)


def _cells(arr: np.ndarray, step_x: int, step_y: int) -> np.ndarray:
    fx, fy = max(1, step_x // 4), max(1, step_y // 4)
    rx, ry = step_x // fx, step_y // fy
    sub = arr[fy // 2::fy, fx // 2::fx]
    gh, gw = sub.shape[0] // ry, sub.shape[1] // rx
    if gh == 0 or gw == 0:
        return sub.astype(np.int16)
    cells = sub[:gh * ry, :gw * rx].reshape(gh, ry, gw, rx).sum(axis=(1, 3), dtype=np.int32)
    return (cells // (rx * ry)).astype(np.int16)


def frame_signature(frame) -> Signature:
    """Y/U/V grid and histogram of a decoded ``av.VideoFrame``."""
    fmt = frame.format.name
    if fmt not in _YUV8:  # 10-bit, NV12, RGB, ...: one small swscale call to 8-bit planar YUV
        frame = frame.reformat(width=_GRID_COLS * 2, height=max(2, round(_GRID_COLS * 2 * frame.height
                                                                          / max(1, frame.width)) // 2 * 2),
                               format="yuv420p")
        fmt = "yuv420p"
    sx, sy = _YUV8[fmt]
    w, h = frame.width, frame.height
    step = max(1, w // _GRID_COLS)
    y = _plane(frame.planes[0], w, h, step, step)
    cstep_x, cstep_y = max(1, step // sx), max(1, step // sy)
    cw, ch = -(-w // sx), -(-h // sy)
    u = _plane(frame.planes[1], cw, ch, cstep_x, cstep_y)
    v = _plane(frame.planes[2], cw, ch, cstep_x, cstep_y)
    return Signature((y, u, v), _hist(y, u, v))


def signature_of_array(yuv: np.ndarray) -> Signature:
    """Signature of an HxWx3 uint8 YUV (or any 3-channel) image, for tests and tools."""
    h, w = yuv.shape[:2]
    step = max(1, w // _GRID_COLS)
    planes = [_cells(yuv[..., c], step, step) for c in range(3)]
    return Signature(tuple(planes), _hist(*planes))


def _hist(y, u, v) -> np.ndarray:
    parts = []
    for arr, bins in ((y, 16), (u, 8), (v, 8)):
        hst = np.bincount((arr.ravel() * bins) >> 8, minlength=bins).astype(np.float32)
        parts.append(hst / max(1.0, float(hst.sum())))
    return np.concatenate(parts)


def score(a: Signature, b: Signature) -> float:
    """Content change between two frames (0 = identical); see the module docstring."""
    diff = 0.0
    for weight, pa_, pb in zip(_PLANE_WEIGHTS, a.grid, b.grid):
        hh, ww = min(pa_.shape[0], pb.shape[0]), min(pa_.shape[1], pb.shape[1])
        diff += weight * float(np.abs(pa_[:hh, :ww] - pb[:hh, :ww]).mean()) if hh and ww else 0.0
    hist = float(np.abs(a.hist - b.hist).sum()) / 6.0  # 3 planes, each L1 in [0, 2]
    return diff * (_HIST_OFFSET + hist)


_PLANE_WEIGHTS = (0.5, 0.25, 0.25)  # luma carries most of a grey scene's change
_HIST_OFFSET = 0.1  # how much the colour distribution must change too (tuned: bench/shots.py --seed 1)


@dataclass(frozen=True)
class ShotParams:
    """The detector's knobs (``DecodeConfig.shot_threshold`` / ``shot_min_score`` / ``shot_min_s``)."""
    threshold: float = 3.0
    min_score: float = 4.0
    min_shot_s: float = 0.6
    window: int = 2


class ShotDetector:
    """Streaming: ``push(t, sig)`` per decoded frame in display order returns the cut times it
    confirms (a cut time is the start of the new shot); ``decided_until`` is the time up to which no
    further cut can appear; ``finish()`` confirms the rest at the end of the stream."""

    def __init__(self, params: ShotParams | None = None):
        self.p = params or ShotParams()
        self._prev: Signature | None = None
        self._times: deque = deque()   # times of frames whose score is known (frame i vs i-1)
        self._scores: deque = deque()
        self._next = 0                 # position in the deques of the next candidate to decide
        self._last_cut = 0.0
        self.decided_until = -np.inf
        self.scores: list[tuple[float, float]] = []  # (time, score) of every decoded frame, for tools

    def push(self, t: float, sig: Signature) -> list[float]:
        if self._prev is None:
            self._prev = sig
            self._last_cut = t
            self.decided_until = t
            return []
        s = score(self._prev, sig)
        self._prev = sig
        self._times.append(t)
        self._scores.append(s)
        self.scores.append((t, s))
        return self._decide(final=False)

    def finish(self) -> list[float]:
        return self._decide(final=True)

    def _decide(self, *, final: bool) -> list[float]:
        w, out = self.p.window, []
        while self._next < len(self._scores) and (final or len(self._scores) - 1 - self._next >= w):
            i = self._next
            s, t = self._scores[i], self._times[i]
            around = [self._scores[k] for k in range(max(0, i - w), min(len(self._scores), i + w + 1)) if k != i]
            mean = sum(around) / len(around) if around else 0.0
            if (s >= self.p.min_score and s >= self.p.threshold * max(mean, 1e-3)
                    and t - self._last_cut >= self.p.min_shot_s - 1e-6):
                out.append(t)
                self._last_cut = t
            self.decided_until = t
            self._next += 1
            if self._next > w:  # drop what no later candidate looks at
                self._scores.popleft()
                self._times.popleft()
                self._next -= 1
        return out


def detect_shots(times, sigs, params: ShotParams | None = None) -> list[float]:
    """Cut times of a whole sequence of (time, signature) (the streaming detector, run to the end)."""
    det = ShotDetector(params)
    cuts = []
    for t, sig in zip(times, sigs):
        cuts += det.push(float(t), sig)
    return cuts + det.finish()


def shot_spans(cuts: list[float], start_s: float, end_s: float) -> list[tuple[float, float]]:
    """[(start, end)] of the shots between ``start_s`` and ``end_s`` split at ``cuts``."""
    edges = [start_s, *[c for c in cuts if start_s < c < end_s], end_s]
    return [(round(a, 6), round(b, 6)) for a, b in zip(edges, edges[1:])]


def shot_windows(start: float, end: float, window_s: float, stride_s: float,
                 min_tail_fraction: float = 0.5) -> list[tuple[float, float]]:
    """Windows (start, end) inside one shot ``[start, end)``, the fixed sampler's rule shifted to the
    shot: a shot shorter than a window gets one window over the whole shot; a longer one gets windows
    every ``stride_s``, plus one aligned to the shot's end when the rest is at least
    ``min_tail_fraction`` of a window. No window leaves the shot."""
    length = end - start
    eps = 1e-6
    if length < window_s - eps:
        return [(round(start, 6), round(end, 6))]
    n_full = int(np.floor((length - window_s) / stride_s + eps)) + 1
    spans = [(start + k * stride_s, start + k * stride_s + window_s) for k in range(n_full)]
    covered = (n_full - 1) * stride_s + window_s
    if length - covered >= min_tail_fraction * window_s - eps:
        spans.append((end - window_s, end))
    return [(round(a, 6), round(min(b, end), 6)) for a, b in spans]


def regular_window(start: float, k: int, window_s: float, stride_s: float) -> tuple[float, float]:
    """The k-th stride window of a shot starting at ``start`` (before its end is known)."""
    a = start + k * stride_s
    return round(a, 6), round(a + window_s, 6)
