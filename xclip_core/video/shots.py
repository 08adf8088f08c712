"""Shot boundaries from the frames the decoder already has (pure numpy), and windows laid inside shots.

Signature. ``frame_signature(frame)`` samples a grid of at most 48 points along the long edge from
a decoded PyAV frame's Y, U and V planes (numpy views of the planes as decoded, no colour
conversion, for 8-bit 4:2:0; other pixel formats go through one small swscale call) and keeps it
with a 16/8/8-bin histogram. Point samples alias under motion; the adaptive threshold and the
histogram term below absorb that (area averages measured no better on the tuning videos and cost
2-4x more).

Score. Between consecutive decoded frames: ``score = (mean |dY|/2 + mean |dU|/4 + mean |dV|/4)
(0..255) * (0.1 + histogram distance (0..1))``, so a change of content *and* colour distribution
(a cut) scores far above motion, which moves pixels but keeps the histogram. The weights, the 0.1
and the threshold 2.5 were tuned on bench/shots.py's videos of seed 1 (results are reported on
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

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

_GRID_COLS = 48
_local = threading.local()
_THREADS: dict | None = None


@dataclass(frozen=True)
class Signature:
    """``vec``: the Y, U, V samples (packed YUYV order), each scaled by its plane's weight / sample count
    (so ``sum |a.vec - b.vec|`` is the weighted mean absolute difference); ``hist``: 32 bins (16 Y,
    8 U, 8 V), each plane's part divided by its sample count (sums to 1)."""
    vec: np.ndarray
    hist: np.ndarray


_PLANE_WEIGHTS = (0.5, 0.25, 0.25)  # luma carries most of a grey scene's change
_HIST_OFFSET = 0.1  # how much the colour distribution must change too (tuned: bench/shots.py --seed 1)
_INTERP = "FAST_BILINEAR"  # swscale path (not 8-bit 4:2:0): as accurate as AREA on bench seed 1, cheaper
_LAYOUT: dict = {}  # (columns, rows) -> per byte of a packed YUYV row: scale, histogram shift and offset


def _layout(w: int, h: int):
    """Per-byte constants for a ``yuyv422`` image of ``w`` x ``h`` (bytes Y0 U Y1 V ...): the scale that
    turns a byte into its weighted share of the mean, and the histogram bin it falls in."""
    got = _LAYOUT.get((w, h))
    if got is None:
        ny, nc = w * h, (w // 2) * h
        kind = np.tile(np.array([0, 1, 0, 2]), (w * 2) // 4 * h)  # 0 = Y, 1 = U, 2 = V
        scale = np.array([_PLANE_WEIGHTS[0] / ny, _PLANE_WEIGHTS[1] / nc, _PLANE_WEIGHTS[2] / nc],
                         np.float32)[kind]
        shift = np.array([4, 5, 5], np.uint8)[kind]
        offset = np.array([0, 16, 24], np.uint8)[kind]
        div = np.concatenate([np.full(16, ny, np.float32), np.full(16, nc, np.float32)])
        got = _LAYOUT[(w, h)] = (scale, shift, offset, div)
    return got


def _signature_packed(flat: np.ndarray, w: int, h: int) -> Signature:
    """From the bytes of a ``yuyv422`` image, row padding removed."""
    scale, shift, offset, div = _layout(w, h)
    hist = np.bincount((flat >> shift) + offset, minlength=32) / div
    return Signature(flat * scale, hist)


def _reformatter():
    """A swscale context kept per thread for the signature size (apart from the crop converter's,
    so neither is rebuilt for every frame)."""
    global _THREADS
    rf = getattr(_local, "reformatter", None)
    if rf is None:
        from av.video.reformatter import VideoReformatter

        rf = _local.reformatter = VideoReformatter()
    if _THREADS is None:
        from xclip_core.video.convert import _threads_kw

        _THREADS = _threads_kw()
    return rf


def frame_signature(frame) -> Signature:
    """Signature of a decoded ``av.VideoFrame``: a grid of at most ``_GRID_COLS`` samples along the long
    edge of Y, U and V, packed as YUYV. 8-bit 4:2:0 frames (nearly all H.264/HEVC/VP9/AV1) are sampled
    straight from the decoded planes with numpy views (no conversion: ~35 us a frame); other formats
    are scaled down by one swscale call (~100 us)."""
    if frame.format.name in _PLANAR_420 and min(frame.width, frame.height) >= 8:
        step = -(-max(frame.width, frame.height) // _GRID_COLS)
        step += step % 2  # even, so chroma rows and columns line up with luma's
        w, h = max(2, (frame.width // step) // 2 * 2), max(1, frame.height // step)
        p0, p1, p2 = frame.planes
        c0, half = step // 2, step // 2
        packed = np.empty((h, 2 * w), np.uint8)
        packed[:, 0::2] = np.frombuffer(p0, np.uint8).reshape(-1, p0.line_size)[c0::step, c0::step][:h, :w]
        packed[:, 1::4] = np.frombuffer(p1, np.uint8).reshape(-1, p1.line_size)[c0 // 2::half, c0 // 2::half][:h, :w:2]
        packed[:, 3::4] = np.frombuffer(p2, np.uint8).reshape(-1, p2.line_size)[c0 // 2::half, c0 // 2::half][:h, :w:2]
        return _signature_packed(packed.ravel(), w, h)
    w = _GRID_COLS
    h = max(2, round(w * frame.height / max(1, frame.width) / 2) * 2)
    plane = _reformatter().reformat(frame, width=w, height=h, format="yuyv422", interpolation=_INTERP,
                                    **_THREADS).planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :2 * w]
    return _signature_packed(rows.ravel(), w, h)


_PLANAR_420 = frozenset({"yuv420p", "yuvj420p"})


def signature_of_array(yuv: np.ndarray) -> Signature:
    """Signature of an HxWx3 uint8 YUV (or any 3-channel) image, for tests and tools (block means, the
    chroma of each pixel pair averaged as YUYV does)."""
    h, w = yuv.shape[:2]
    step = max(1, w // _GRID_COLS)
    gh, gw = h // step, (w // step) // 2 * 2
    cells = yuv[:gh * step, :gw * step].reshape(gh, step, gw, step, 3).mean(axis=(1, 3))
    packed = np.empty((gh, gw * 2), np.uint8)
    packed[:, 0::2] = cells[..., 0]
    packed[:, 1::4] = (cells[:, 0::2, 1] + cells[:, 1::2, 1]) / 2
    packed[:, 3::4] = (cells[:, 0::2, 2] + cells[:, 1::2, 2]) / 2
    return _signature_packed(packed.ravel(), gw, gh)


def score(a: Signature, b: Signature) -> float:
    """Content change between two frames (0 = identical); see the module docstring."""
    if a.vec.shape != b.vec.shape:  # (a stream whose size changes midway: a cut)
        return 255.0
    diff = float(np.abs(a.vec - b.vec).sum())
    hist = float(np.abs(a.hist - b.hist).sum()) / 6.0  # 3 planes, each L1 in [0, 2]
    return diff * (_HIST_OFFSET + hist)


@dataclass(frozen=True)
class ShotParams:
    """The detector's knobs (``DecodeConfig.shot_threshold`` / ``shot_min_score`` / ``shot_min_s``)."""
    threshold: float = 2.5
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
