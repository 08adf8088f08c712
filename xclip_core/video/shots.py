"""Shot boundaries from the frames the decoder already has (pure numpy), and windows laid inside shots.

Signature. ``frame_signature(frame)`` samples a grid of at most 32 points along the long edge from
a decoded PyAV frame's Y, U and V planes (gathers at cached offsets into the planes as decoded, no
colour conversion, for 8-bit 4:2:0; other pixel formats go through one small swscale call) and keeps
it with a 16/8/8-bin histogram. In the decode pass (``ShotDetector.push_frame``) only the gathers run
per frame; signatures, scores and decisions are computed for 16 frames at a time. Point samples
alias under motion; the adaptive threshold and the histogram term below absorb that (area
averages measured no better on the tuning videos and cost 2-4x more).

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
from dataclasses import dataclass

import numpy as np

_GRID_COLS = 32  # 48 measured the same accuracy on bench/shots.py at 2x the samples
_local = threading.local()
_THREADS: dict | None = None


@dataclass(frozen=True)
class Signature:
    """``data``: the samples (any fixed order: Y, U, V), each scaled by its plane's weight / sample
    count (so ``sum |a - b|`` over them is the weighted mean absolute difference), followed by 32
    histogram bins (16 Y, 8 U, 8 V), each plane's part divided by its sample count and by 6 (so
    ``sum |a - b|`` over them is the histogram distance 0..1); ``n``: how many samples."""
    data: np.ndarray
    n: int


_PLANE_WEIGHTS = (0.5, 0.25, 0.25)  # luma carries most of a grey scene's change
_HIST_OFFSET = 0.1  # how much the colour distribution must change too (tuned: bench/shots.py --seed 1)
_INTERP = "FAST_BILINEAR"  # swscale path (not 8-bit 4:2:0): as accurate as AREA on bench seed 1, cheaper


class _Layout:
    """Per-sample constants for ``ny`` luma then ``2 * nc`` chroma samples: the scale that turns a byte
    into its weighted share of the mean, and the histogram bin it falls in (via ``shift``/``offset``)."""

    def __init__(self, ny: int, nc: int):
        kind = np.concatenate([np.zeros(ny, np.intp), np.ones(nc, np.intp), np.full(nc, 2, np.intp)])
        self.n = ny + 2 * nc
        self.scale = np.array([_PLANE_WEIGHTS[0] / ny, _PLANE_WEIGHTS[1] / nc, _PLANE_WEIGHTS[2] / nc],
                              np.float32)[kind]
        self.shift = np.array([4, 5, 5], np.uint8)[kind]
        self.offset = np.array([0, 16, 24], np.uint8)[kind]
        self.hist_scale = 1 / (6 * np.concatenate([np.full(16, ny, np.float32), np.full(16, nc, np.float32)]))

    def signature(self, samples: np.ndarray) -> Signature:
        return Signature(self.rows(samples[None])[0], self.n)

    def rows(self, samples: np.ndarray) -> np.ndarray:
        """(k, n) uint8 samples of k frames -> (k, n + 32) float32 signature data, in a few numpy calls."""
        k = samples.shape[0]
        data = np.empty((k, self.n + 32), np.float32)
        np.multiply(samples, self.scale, out=data[:, :self.n])
        bins = ((samples >> self.shift) + self.offset).astype(np.intp)
        bins += np.arange(0, 32 * k, 32)[:, None]  # one bincount for all k frames
        np.multiply(np.bincount(bins.ravel(), minlength=32 * k).reshape(k, 32), self.hist_scale,
                    out=data[:, self.n:])
        return data


_LAYOUTS: dict = {}  # key -> _Layout (and, for the 4:2:0 planes, the sample positions)


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


def _grid_420(width: int, height: int, line_sizes: tuple):
    """Sample positions (flat byte offsets into the Y, U, V planes) of the 4:2:0 point grid: every
    ``step``-th pixel (``step`` even, so chroma lines up with luma), at most ``_GRID_COLS`` along the
    long edge; chroma at every other grid column. Cached per geometry."""
    key = ("420", _GRID_COLS, width, height, line_sizes)
    got = _LAYOUTS.get(key)
    if got is None:
        step = -(-max(width, height) // _GRID_COLS)
        step += step % 2
        w, h = max(2, (width // step) // 2 * 2), max(1, height // step)
        c0 = step // 2
        rows, cols = np.arange(h) * step + c0, np.arange(w) * step + c0
        iy = (rows[:, None] * line_sizes[0] + cols[None, :]).ravel()
        ic = (rows[:, None] // 2 * line_sizes[1] + cols[None, ::2] // 2).ravel()
        got = _LAYOUTS[key] = (_Layout(iy.size, ic.size), iy, ic)
    return got


def _samples_420(frame):
    """(layout, Y, U, V samples) of an 8-bit 4:2:0 frame (three gathers from the decoded planes), else
    None."""
    if frame.format.name not in _PLANAR_420 or min(frame.width, frame.height) < 8:
        return None
    p0, p1, p2 = frame.planes
    lay, iy, ic = _grid_420(frame.width, frame.height, (p0.line_size, p1.line_size))
    return lay, np.frombuffer(p0, np.uint8)[iy], np.frombuffer(p1, np.uint8)[ic], np.frombuffer(p2, np.uint8)[ic]


def frame_signature(frame) -> Signature:
    """Signature of a decoded ``av.VideoFrame``: a grid of at most ``_GRID_COLS`` samples along the long
    edge of Y, U and V. 8-bit 4:2:0 frames (nearly all H.264/HEVC/VP9/AV1) are sampled straight from
    the decoded planes (``np.take`` at cached offsets: no conversion, no copy of a plane); other
    formats are scaled down by one swscale call to packed YUYV (~100 us)."""
    got = _samples_420(frame)
    if got is not None:
        lay, y, u, v = got
        return lay.signature(np.concatenate([y, u, v]))
    w = _GRID_COLS
    h = max(2, round(w * frame.height / max(1, frame.width) / 2) * 2)
    plane = _reformatter().reformat(frame, width=w, height=h, format="yuyv422", interpolation=_INTERP,
                                    **_THREADS).planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :2 * w]
    return _signature_packed(rows, w, h)


def _signature_packed(rows: np.ndarray, w: int, h: int) -> Signature:
    """From a ``yuyv422`` image (h rows of Y0 U Y1 V ... bytes), reordered to Y, U, V."""
    lay = _LAYOUTS.get(("yuyv", w, h))
    if lay is None:
        lay = _LAYOUTS[("yuyv", w, h)] = _Layout(w * h, (w // 2) * h)
    samples = np.concatenate([rows[:, 0::2].ravel(), rows[:, 1::4].ravel(), rows[:, 3::4].ravel()])
    return lay.signature(samples)


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
    return _signature_packed(packed, gw, gh)


def score(a: Signature, b: Signature) -> float:
    """Content change between two frames (0 = identical); see the module docstring."""
    if a.n != b.n:  # (a stream whose size changes midway: a cut)
        return 255.0
    diff, hist = np.add.reduceat(np.abs(a.data - b.data), (0, a.n)).tolist()
    return diff * (_HIST_OFFSET + hist)


@dataclass(frozen=True)
class ShotParams:
    """The detector's knobs (``DecodeConfig.shot_threshold`` / ``shot_min_score`` / ``shot_min_s``)."""
    threshold: float = 2.5
    min_score: float = 4.0
    min_shot_s: float = 0.6
    window: int = 2


class ShotDetector:
    """Streaming: ``push(t, sig)`` (a ``Signature``) or ``push_frame(t, frame)`` (a decoded frame) per
    decoded frame in display order returns the cut times it confirms (a cut time is the start of the
    new shot); ``decided_until`` is the time up to which no further cut can appear; ``finish()``
    confirms the rest at the end of the stream.

    ``push_frame`` only gathers the frame's samples (three numpy gathers from its planes); every
    ``batch`` frames the signatures, scores and threshold decisions of the batch are computed in a
    few numpy calls (per-frame numpy and Python was most of the detector's cost), so decisions come
    up to ``batch`` frames later than with ``push``."""

    def __init__(self, params: ShotParams | None = None, batch: int = 16):
        self.p = params or ShotParams()
        self.batch = batch
        self._prev: np.ndarray | None = None   # signature data of the last scored frame
        self._t = np.empty(0)                  # times and scores from the w before the next candidate
        self._s = np.empty(0)
        self._next = 0                         # position in _t/_s of the next candidate to decide
        self._last_cut = 0.0
        self._queue: list = []                 # frames gathered, not scored yet: (t, Y, U, V)
        self._queue_layout = None
        self.decided_until = -np.inf
        self.scores: list[tuple[float, float]] = []  # (time, score) of every decoded frame, for tools

    def push(self, t: float, sig: Signature) -> list[float]:
        return self._flush() + self._feed(np.array([t], float), sig.data[None], sig.n)

    def push_frame(self, t: float, frame) -> list[float]:
        got = _samples_420(frame)
        if got is None:  # other pixel formats: one swscale call, scored at once
            return self.push(t, frame_signature(frame))
        lay = got[0]
        out = self._flush() if lay is not self._queue_layout else []
        self._queue_layout = lay
        self._queue.append((t, *got[1:]))
        if len(self._queue) >= self.batch:
            out += self._flush()
        return out

    def finish(self) -> list[float]:
        return self._flush() + self._decide(final=True)

    def _flush(self) -> list[float]:
        if not self._queue:
            return []
        q, lay = self._queue, self._queue_layout
        self._queue = []
        samples = np.concatenate([np.stack([f[1] for f in q]), np.stack([f[2] for f in q]),
                                  np.stack([f[3] for f in q])], axis=1)
        return self._feed(np.array([f[0] for f in q], float), lay.rows(samples), lay.n)

    def _feed(self, times: np.ndarray, data: np.ndarray, n: int) -> list[float]:
        """Score k frames (``data``: their signature rows) against the one before each."""
        if self._prev is None:  # the first frame: it starts the first shot
            self._last_cut = self.decided_until = float(times[0])
            self._prev, times, data = data[0], times[1:], data[1:]
            if not len(times):
                return []
        same = self._prev.shape[0] == data.shape[1]
        full = np.concatenate([self._prev[None], data]) if same else data
        sums = np.add.reduceat(np.abs(full[1:] - full[:-1]), (0, n), axis=1) if len(full) > 1 else np.zeros((0, 2))
        scores = sums[:, 0] * (_HIST_OFFSET + sums[:, 1])
        if not same:  # (a stream whose size changes midway: a cut)
            scores = np.concatenate([[255.0], scores])
        self._prev = data[-1]
        self._t = np.concatenate([self._t, times])
        self._s = np.concatenate([self._s, scores])
        self.scores.extend(zip(times.tolist(), scores.tolist()))
        return self._decide(final=False)

    def _decide(self, *, final: bool) -> list[float]:
        """A candidate is decided once ``window`` scores after it are known (all of them at the end)."""
        p, w, out = self.p, self.p.window, []
        s_all, L = self._s, len(self._s)
        stop = L if final else L - w
        if stop <= self._next:
            return out
        i = np.arange(self._next, stop)
        cs = np.concatenate([[0.0], np.cumsum(s_all)])
        lo, hi = np.maximum(0, i - w), np.minimum(L, i + w + 1)
        s = s_all[i]
        count = hi - lo - 1
        mean = np.where(count > 0, (cs[hi] - cs[lo] - s) / np.maximum(count, 1), 0.0)
        for k in np.flatnonzero((s >= p.min_score) & (s >= p.threshold * np.maximum(mean, 1e-3))).tolist():
            t = float(self._t[i[k]])
            if t - self._last_cut >= p.min_shot_s - 1e-6:
                out.append(t)
                self._last_cut = t
        self.decided_until = float(self._t[stop - 1])
        drop = max(0, stop - w)  # keep what later candidates look at
        self._t, self._s, self._next = self._t[drop:], self._s[drop:], stop - drop
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
