"""``segments = "shots"``: one PyAV decode pass that finds the shots and emits windows inside them.

The pass decodes what the fixed sampler's exact pass decodes (every reference frame, plus the
non-reference frames a window will sample), computes a signature of each decoded frame
(``xclip_core.video.shots``: numpy on the decoded planes) and feeds the streaming detector. A
window is emitted once it is known to hold no cut:

* the k-th stride window of the current shot, ``[s0 + k*stride, s0 + k*stride + window)``, as soon
  as the detector has decided every frame up to its end (its frames were decoded exactly: they are
  predicted from the shot's start and decoded even when they are non-reference frames);
* when a cut (or the end of the video) closes the shot, the rest of ``shots.shot_windows`` for it:
  the window aligned to the shot's end, or one window over a shot shorter than a window.

Each sampled time takes the frame shown at that time when it was decoded, else the nearest decoded
frame *of the same shot* (a frame across a cut is never used). Frames are kept (as decoded
``av.VideoFrame`` objects, not converted) only from the earliest start a pending window can have:
at most about one window plus the detector's look-ahead (its 2 frames and its 16-frame batch).
"""
from __future__ import annotations

import numpy as np

from xclip_core.video.convert import frame_to_crop
from xclip_core.video.errors import MEDIA_ERRORS, Stopped as _Stopped
from xclip_core.video.meta import VideoError, _short, open_container
from xclip_core.video.results import Clip
from xclip_core.video.sampling import frames_at
from xclip_core.video.shots import ShotDetector, ShotParams, regular_window, shot_windows

_MAX_CONSECUTIVE_ERRORS = 50
_LOOKAHEAD_WINDOWS = 2  # stride windows of the current shot whose frames are decoded exactly


def shot_params(cfg) -> ShotParams:
    return ShotParams(threshold=cfg.shot_threshold, min_score=cfg.shot_min_score, min_shot_s=cfg.shot_min_s)


class ShotSampler:
    """Holds decoded frames of the open shot; emits Clips of windows inside shots."""

    def __init__(self, times: np.ndarray, cfg, emit):
        self.times, self.cfg, self.emit = times, cfg, emit
        self.det = ShotDetector(shot_params(cfg))
        self.frames: list[list] = []        # [display index, time, av frame], display order
        self.shots: list[tuple[float, float]] = []
        self.s0: float | None = None        # start of the open shot
        self.k_next = 0                     # next stride window of the open shot
        self.segment_index = 0
        self.want: set[int] = set()         # display indices the coming windows sample
        self._next_start = self._next_end = np.inf  # the open shot's next stride window
        self._prune_at = 16

    # ---------------------------------------------------------------- frames in
    def offer(self, j: int, frame) -> None:
        t = float(self.times[j])
        if self.s0 is None:
            self.s0 = t
            self._predict()
        self.frames.append([j, t, frame])
        for cut in self.det.push_frame(t, frame):
            self._close(cut)
        self._emit_ready()
        if len(self.frames) > self._prune_at:
            self._prune()
            self._prune_at = len(self.frames) + 16

    def finish(self, end_s: float) -> None:
        """End of stream (or of what could be read): close the last shot at ``end_s``."""
        if self.s0 is None:
            return
        for cut in self.det.finish():
            self._close(cut)
        self._close(max(end_s, self.s0))

    # ---------------------------------------------------------------- planning
    def _predict(self) -> None:
        cfg = self.cfg
        self._next_start, self._next_end = regular_window(self.s0, self.k_next, cfg.window_s, cfg.stride)
        self.want = set()
        for k in range(self.k_next, self.k_next + _LOOKAHEAD_WINDOWS):
            a, b = regular_window(self.s0, k, cfg.window_s, cfg.stride)
            self.want.update(self._sample_indices(a, b).tolist())

    def _sample_indices(self, a: float, b: float) -> np.ndarray:
        T = self.cfg.frames_per_clip
        return frames_at(self.times, a + (np.arange(T) + 0.5) * ((b - a) / T))

    def _emit_ready(self) -> None:
        cfg = self.cfg
        while self._next_end <= self.det.decided_until + 1e-6:
            a, b = regular_window(self.s0, self.k_next, cfg.window_s, cfg.stride)
            self._emit_window(a, b, self.s0, np.inf)
            self.k_next += 1
            self._predict()

    def _close(self, end: float) -> None:
        cfg = self.cfg
        if end <= self.s0 + 1e-6:
            return
        plan = shot_windows(self.s0, end, cfg.window_s, cfg.stride, cfg.min_tail_fraction)
        for a, b in plan[self.k_next:]:
            self._emit_window(a, b, self.s0, end)
        self.shots.append((round(self.s0, 6), round(end, 6)))
        self.frames = [f for f in self.frames if f[1] >= end - 1e-9]
        self.s0, self.k_next = end, 0
        self._predict()

    def _prune(self) -> None:
        """Drop frames no pending window can sample (keep one before the bound: nearest-frame picks)."""
        cfg = self.cfg
        bound = max(self.s0, min(self._next_start, self.det.decided_until - cfg.window_s))
        n = 0
        while n + 1 < len(self.frames) and self.frames[n + 1][1] <= bound:
            n += 1
        if n:
            del self.frames[:n]

    # ---------------------------------------------------------------- emitting
    def _emit_window(self, a: float, b: float, lo: float, hi: float) -> None:
        cand = [f for f in self.frames if lo - 1e-9 <= f[1] < hi - 1e-9]
        if not cand:
            return  # nothing decoded in this shot (unreadable span): no clip
        idx = np.asarray([f[0] for f in cand])
        ts = np.asarray([f[1] for f in cand])
        T, S = self.cfg.frames_per_clip, self.cfg.crop_size
        frames = np.empty((T, S, S, 3), np.uint8)
        used = np.empty(T, np.int64)
        sample_t = a + (np.arange(T) + 0.5) * ((b - a) / T)
        exact = frames_at(self.times, sample_t)
        done: dict[int, int] = {}  # candidate -> slot it was converted into (a frame sampled twice)
        for s in range(T):
            k = int(np.searchsorted(idx, exact[s]))
            if not (k < len(idx) and idx[k] == exact[s]):  # not decoded: nearest decoded frame of the shot
                k = int(np.argmin(np.abs(ts - sample_t[s])))
            if k in done:
                frames[s] = frames[done[k]]
            else:  # straight into the clip (a frame shared with an earlier window is converted again: rare)
                frame_to_crop(cand[k][2], S, self.cfg.shortest_edge, self.cfg.interpolation, frames[s])
                done[k] = s
            used[s] = cand[k][0]
        self.emit(Clip(segment_index=self.segment_index, start_s=round(a, 6), end_s=round(b, 6),
                       frame_indices=used, timestamps=np.round(self.times[used], 6), frames=frames,
                       shot_index=len(self.shots)))
        self.segment_index += 1


def decode_shots(src, index, cfg, stop, emit, hasher=None) -> tuple[list[str], ShotSampler]:
    """The pyav pass of ``segments = "shots"``; returns (notes, sampler) with ``sampler.shots`` and
    ``sampler.segment_index`` (clips emitted). Media errors end the pass early (partial read).
    ``hasher``: a ``frame_hash.SecondHasher`` offered every decoded frame (per-second PDQ)."""
    notes: list[str] = []
    sampler = ShotSampler(index.times, cfg, emit)
    container = open_container(src)
    last_t, broke = None, False
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        cc.thread_count = cfg.num_threads
        cc.thread_type = "NONE" if cfg.num_threads == 1 else "AUTO"
        exact = index.rank_ok
        rank = {p: i for i, p in enumerate(index.pts.tolist())} if exact else {}  # pts -> display index
        cc.skip_frame = "NONREF" if exact else "DEFAULT"
        skipping = exact
        errors = consecutive = 0
        last_j = -1
        for pkt in container.demux(stream):
            if stop is not None and stop.is_set():
                raise _Stopped
            if exact and pkt.pts is not None:
                want = rank.get(pkt.pts, -1) in sampler.want
                if want == skipping:
                    cc.skip_frame = "DEFAULT" if want else "NONREF"
                    skipping = not want
            try:
                frames = cc.decode(pkt)
                consecutive = 0
            except MEDIA_ERRORS:
                errors += 1
                consecutive += 1
                if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                    notes.append(f"gave up after {consecutive} consecutive packet errors")
                    broke = True
                    break
                continue
            for frame in frames:
                j = rank.get(frame.pts, last_j + 1) if exact else last_j + 1
                if j <= last_j or j >= len(index.times):
                    continue
                last_j = j
                if hasher is not None:  # per-second PDQ of the whole frame, as on the fixed path
                    hasher.offer(float(index.times[j]), j, frame)
                sampler.offer(j, frame)
                last_t = float(index.times[j])
        if errors:
            notes.append(f"{errors} packets failed to decode")
    except (_Stopped, VideoError):
        raise
    except MEDIA_ERRORS as e:
        notes.append(f"read error: {_short(e)}")
        broke = True
    finally:
        container.close()
    end = index.duration_s
    if broke and last_t is not None and last_j + 1 < len(index.times):
        end = float(index.times[last_j + 1])  # the stream broke: the last shot ends after the last decoded frame
    sampler.finish(end)
    return notes, sampler
