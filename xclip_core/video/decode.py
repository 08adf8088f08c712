"""Decode stage: one sequential pass per video, convert only sampled frames.

``decode_video(uri, cfg) -> VideoResult`` and the streaming ``iter_clips(uri, cfg)``
never raise on bad input: every problem becomes status "failed" or "skipped"
with a reason. Only media and I/O errors count as bad input
(``xclip_core.video.errors.MEDIA_ERRORS``); any other exception (a
``TypeError`` from an API change, say) is a bug and is raised to the caller.

Backends
  "pyav" (default): demux pass (timestamps -> display ranks), then one decode
  pass that tells the decoder to drop the non-reference frames that are not
  sampled (``skip_frame=NONREF`` set per packet; a non-reference frame is never
  used to predict another, so the sampled frames are bit-exact) and converts
  only sampled frames, straight to the crop size (swscale). Stops after the
  last sampled frame.
  "decord": native-size ``VideoReader`` + ``skip_frames``/``next()`` (decord
  converts every decoded frame to RGB at native size; we resize ourselves, so
  tiny videos work).

Partial reads: a packet that fails to decode is dropped (as ffmpeg does) and a
sampled frame falls to the next decoded one (its real index is reported); a
stream that ends early (truncated file) or keeps failing ends the pass. If at
least one clip completed, the video is "ok" with reason "partial: ..." and the
complete clips; otherwise "failed". Incomplete clips are never emitted.

Timeouts: the decoder runs on a worker thread; the caller waits at most
``cfg.timeout_s`` in total for it (time spent by the caller between clips does
not count). On timeout the video is "failed" ("timeout ...") and the worker is
told to stop at its next packet. A native call that never returns cannot be
killed from Python: its daemon thread is abandoned (it holds its file and maybe
a core until the call returns); ``abandoned_decoders()`` counts them so a
worker process can ask to be recycled.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque

import numpy as np

from xclip_core.video.config import DecodeConfig
from xclip_core.video.convert import frame_to_crop, rgb_to_crop
from xclip_core.video.errors import MEDIA_ERRORS, Stopped as _Stopped, decord_errors
from xclip_core.video.frame_hash import SecondHasher
from xclip_core.video.meta import (VideoError, _short, check_limits, index_stream,
                                   make_meta, open_container, open_source, rate, video_stream)
from xclip_core.video.results import FAILED, OK, Clip, VideoResult
from xclip_core.video.sampling import plan_clips

_ABANDONED: list[threading.Thread] = []
_MAX_CONSECUTIVE_ERRORS = 50


def abandoned_decoders() -> int:
    """Decoder threads given up on after a timeout that are still running."""
    _ABANDONED[:] = [t for t in _ABANDONED if t.is_alive()]
    return len(_ABANDONED)


class _Assembler:
    """Fills clip buffers as frames arrive in display order; emits complete clips."""

    def __init__(self, plans, times, cfg, emit):
        self.plans, self.times, self.cfg, self.emit = plans, times, cfg, emit
        self.slots: dict[int, list[tuple[int, int]]] = {}
        for p, plan in enumerate(plans):
            for s, fi in enumerate(plan.frame_indices):
                self.slots.setdefault(fi, []).append((p, s))
        self.pending = deque(sorted(self.slots))
        self.needed = np.asarray(self.pending, dtype=np.int64)
        self.bufs: dict[int, list] = {}
        self.emitted = 0
        self.hasher = None  # a frame_hash.SecondHasher on the PyAV backend

    def done(self) -> bool:
        return not self.pending

    def offer(self, j: int, convert, prev: tuple | None = None) -> None:
        """Frame with display index ``j`` decoded; ``convert(out)`` writes its crop.
        Targets <= j are filled with it, or with ``prev`` = (index, convert) of the
        previous decoded frame when that one is nearer (approximate mode)."""
        done: dict[int, np.ndarray] = {}
        while self.pending and self.pending[0] <= j:
            target = self.pending.popleft()
            if prev is not None and target - prev[0] <= j - target:
                self._fill(target, prev[0], prev[1], done)
            else:
                self._fill(target, j, convert, done)

    def finish(self, last: tuple | None) -> None:
        """Approximate mode, end of stream: targets after the last decoded frame
        take that frame."""
        done: dict[int, np.ndarray] = {}
        while last is not None and self.pending:
            self._fill(self.pending.popleft(), last[0], last[1], done)

    def _fill(self, target: int, src: int, convert, done: dict) -> None:
        for p, s in self.slots.pop(target):
            if p not in self.bufs:
                T, S = self.cfg.frames_per_clip, self.cfg.crop_size
                self.bufs[p] = [np.empty((T, S, S, 3), np.uint8), np.empty(T, np.int64), 0]
            buf = self.bufs[p]
            if src in done:
                buf[0][s] = done[src]
            else:
                convert(buf[0][s])
                done[src] = buf[0][s]
            buf[1][s] = src
            buf[2] += 1
            if buf[2] == len(self.plans[p].frame_indices):
                self._emit(p)

    def _emit(self, p):
        frames, idx, _ = self.bufs.pop(p)
        plan = self.plans[p]
        self.emitted += 1
        self.emit(Clip(segment_index=plan.segment_index, start_s=plan.start_s, end_s=plan.end_s,
                       frame_indices=idx, timestamps=np.round(self.times[idx], 6),
                       frames=frames))


def _decode_pyav(src, index, asm: _Assembler, cfg, stop, meta=None) -> list[str]:
    notes: list[str] = []
    container = open_container(src)
    try:
        stream = container.streams.video[0]
        cc = stream.codec_context
        cc.thread_count = cfg.num_threads
        cc.thread_type = "NONE" if cfg.num_threads == 1 else "AUTO"
        approx = cfg.approximate and index.rank_ok  # needs display ranks
        need_pts = set(index.pts[asm.needed].tolist()) if index.rank_ok and not approx else None
        skipping = False
        if approx:
            cc.skip_frame = "NONREF"
        prev = None
        errors = consecutive = 0
        last_j = -1
        for pkt in container.demux(stream):
            if stop.is_set():
                raise _Stopped
            if need_pts is not None and pkt.pts is not None:
                want = pkt.pts in need_pts
                if want == skipping:
                    cc.skip_frame = "DEFAULT" if want else "NONREF"
                    skipping = not want
            try:
                frames = cc.decode(pkt)
                consecutive = 0
            except MEDIA_ERRORS:  # corrupt packet: drop it, like ffmpeg
                errors += 1
                consecutive += 1
                if consecutive >= _MAX_CONSECUTIVE_ERRORS:
                    notes.append(f"gave up after {consecutive} consecutive packet errors")
                    break
                continue
            for frame in frames:
                j = last_j + 1
                if index.rank_ok and frame.pts is not None:
                    k = int(np.searchsorted(index.pts, frame.pts))
                    if k < len(index.pts) and index.pts[k] == frame.pts:
                        j = k
                if j <= last_j:
                    continue
                last_j = j
                if asm.hasher is not None:  # per-second PDQ of the whole frame (frame_hash.py)
                    asm.hasher.offer(float(index.times[j]), j, frame)
                conv = (lambda out, f=frame: frame_to_crop(
                    f, cfg.crop_size, cfg.shortest_edge, cfg.interpolation, out))
                asm.offer(j, conv, prev)
                if approx:
                    prev = (j, conv)
            if asm.done():
                break
        if approx:
            asm.finish(prev)
        if errors:
            notes.append(f"{errors} packets failed to decode")
    except _Stopped:
        raise
    except VideoError:
        raise
    except MEDIA_ERRORS as e:  # demux error mid-stream (anything else is our bug: it propagates)
        notes.append(f"read error: {_short(e)}")
    finally:
        container.close()
    return notes


def _decode_decord(src, index, asm: _Assembler, cfg, stop, meta=None) -> list[str]:
    import decord

    bad_media = decord_errors()
    if hasattr(src, "seek"):
        src.seek(0)
    notes: list[str] = []
    try:
        vr = decord.VideoReader(src, ctx=decord.cpu(0), num_threads=cfg.num_threads)
    except bad_media as e:
        raise VideoError(FAILED, f"decord cannot open: {_short(e)}")
    n, cur = len(vr), 0
    for target in asm.needed.tolist():
        if stop.is_set():
            raise _Stopped
        if target >= n:
            notes.append(f"decord reads {n} frames, index has {len(index.pts)}")
            break
        try:  # only the decord calls: a bad_media error from our own code would be a bug
            if target > cur:
                vr.skip_frames(target - cur)
            rgb = vr.next().asnumpy()
        except bad_media as e:  # DECORDError mid-read
            notes.append(f"decode error: {_short(e)}")
            break
        rgb = _unpad(rgb, meta)
        cur = target + 1
        asm.offer(target, lambda out, r=rgb: rgb_to_crop(
            r, cfg.crop_size, cfg.shortest_edge, cfg.interpolation, out))
    return notes


def _unpad(rgb: np.ndarray, meta) -> np.ndarray:
    """decord returns tiny frames with their row padding folded into the last axis
    (a 16x16 frame comes back as (16, 16, 6)); cut the padding off."""
    if rgb.shape[-1] == 3 or meta is None:
        return rgb
    h, w = rgb.shape[0], meta.width
    return rgb.reshape(h, -1)[:, : w * 3].reshape(h, w, 3)


def _produce(uri: str, cfg: DecodeConfig, put) -> None:
    try:
        src, _size = open_source(uri, cfg)
        with open_container(src) as container:
            stream = video_stream(container)
            index = index_stream(container, stream)
            meta = make_meta(stream, index)
            # the video stream's own duration (the container's may include longer audio)
            tb = rate(stream.time_base)
            claimed = float(stream.duration * tb) if stream.duration and tb else None
        put(("meta", meta))
        check_limits(meta, cfg)
        if cfg.segments == "shots":
            return _produce_shots(src, index, cfg, claimed, put)
        plans = plan_clips(index.times, index.duration_s, cfg)
        if not plans:
            raise VideoError(FAILED, "no clips to sample")
        asm = _Assembler(plans, index.times, cfg, lambda clip: put(("clip", clip)))
        if cfg.backend == "pyav":
            asm.hasher = SecondHasher()
        decode = _decode_decord if cfg.backend == "decord" else _decode_pyav  # nvdec: its CPU fallback
        notes = decode(src, index, asm, cfg, _STOP.get(), meta)
        if index.note:  # flagged: the timestamps were rebuilt (meta.rebuilt_index)
            notes.insert(0, index.note)
        if claimed and index.duration_s < 0.9 * claimed - 0.2:
            notes.insert(0, f"truncated: {index.duration_s:.2f} s readable of {claimed:.2f} s")
        if not asm.done():
            notes.append(f"{asm.emitted} of {len(plans)} clips complete")
        if asm.emitted == 0:
            raise VideoError(FAILED, "no complete clip: " + "; ".join(notes or ["no frames decoded"]))
        if asm.hasher is not None:
            put(("hashes", asm.hasher.result()))
        put(("done", OK, ("partial: " + "; ".join(notes)) if notes else None))
    except _Stopped:
        return
    except VideoError as e:
        _put_quiet(put, ("done", e.status, e.reason))
    except MEDIA_ERRORS as e:  # an I/O or FFmpeg error outside the handlers above
        _put_quiet(put, ("done", FAILED, f"read error: {_short(e)}"))
    except BaseException as e:  # a bug (ours or a dependency's): the caller re-raises it
        _put_quiet(put, ("raise", e))


def _produce_shots(src, index, cfg, claimed, put) -> None:
    """``segments = "shots"`` (``xclip_core.video.shot_decode``); same statuses as the fixed path."""
    from xclip_core.video import shot_decode

    hasher = SecondHasher()
    notes, sampler = shot_decode.decode_shots(src, index, cfg, _STOP.get(), lambda clip: put(("clip", clip)),
                                              hasher=hasher)
    if index.note:  # flagged: the timestamps were rebuilt (meta.rebuilt_index)
        notes.insert(0, index.note)
    if claimed and index.duration_s < 0.9 * claimed - 0.2:
        notes.insert(0, f"truncated: {index.duration_s:.2f} s readable of {claimed:.2f} s")
    put(("shots", sampler.shots))
    if sampler.segment_index == 0:
        raise VideoError(FAILED, "no complete clip: " + "; ".join(notes or ["no frames decoded"]))
    put(("hashes", hasher.result()))
    put(("done", OK, ("partial: " + "; ".join(notes)) if notes else None))


def _put_quiet(put, item):
    try:
        put(item)
    except _Stopped:
        pass


class _StopHolder(threading.local):
    event: threading.Event | None = None

    def get(self):
        return self.event


_STOP = _StopHolder()


class ClipStream:
    """Iterate to get clips as they complete (bounded memory: at most
    ``cfg.queue_size`` finished clips wait in the queue). After iteration,
    ``result`` is the VideoResult (``clips`` empty, ``num_clips`` set) and
    ``meta`` the metadata (None if the file could not be indexed)."""

    def __init__(self, uri: str, cfg: DecodeConfig | None = None):
        self.uri, self.cfg = str(uri), cfg or DecodeConfig()
        self.meta = None
        self.frame_hashes = None  # frame_hash.FrameHashes of an ok video (PyAV backend)
        self.result: VideoResult | None = None

    def __iter__(self):
        cfg = self.cfg
        q: queue.Queue = queue.Queue(maxsize=max(1, cfg.queue_size))
        stop = threading.Event()

        def put(item):
            while True:
                if stop.is_set():
                    raise _Stopped
                try:
                    q.put(item, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def run():
            _STOP.event = stop
            _produce(self.uri, cfg, put)

        worker = threading.Thread(target=run, name="xclip-decode", daemon=True)
        worker.start()
        waited, n = 0.0, 0
        shots = None
        try:
            while True:
                t0 = time.monotonic()
                try:
                    item = q.get(timeout=max(0.0, cfg.timeout_s - waited))
                except queue.Empty:
                    stop.set()
                    _ABANDONED.append(worker)
                    self.result = VideoResult(self.uri, FAILED, f"timeout: decoder took over "
                                              f"{cfg.timeout_s:g} s ({n} clips done)",
                                              self.meta, num_clips=n, decode_s=waited)
                    return
                waited += time.monotonic() - t0
                kind = item[0]
                if kind == "meta":
                    self.meta = item[1]
                elif kind == "shots":
                    shots = item[1]
                elif kind == "hashes":
                    self.frame_hashes = item[1]
                elif kind == "clip":
                    n += 1
                    yield item[1]
                elif kind == "raise":  # not a bad video: fail loudly in the caller's thread
                    self.result = VideoResult(self.uri, FAILED, f"internal error: {_short(item[1])}",
                                              self.meta, num_clips=n, decode_s=round(waited, 6))
                    raise item[1]
                else:
                    _, status, reason = item
                    self.result = VideoResult(self.uri, status, reason, self.meta,
                                              num_clips=n, decode_s=round(waited, 6), shots=shots,
                                              frame_hashes=self.frame_hashes)
                    return
        finally:
            stop.set()
            if self.result is None:  # the caller stopped early
                self.result = VideoResult(self.uri, OK, f"partial: caller stopped after {n} clips",
                                          self.meta, num_clips=n, decode_s=round(waited, 6))


def iter_clips(uri: str, cfg: DecodeConfig | None = None) -> ClipStream:
    """Streaming form: ``s = iter_clips(uri, cfg); for clip in s: ...; s.result``."""
    return ClipStream(uri, cfg)


def decode_video(uri: str, cfg: DecodeConfig | None = None) -> VideoResult:
    """All clips of one video in a VideoResult; never raises on bad input."""
    stream = ClipStream(uri, cfg)
    clips = list(stream)
    result = stream.result
    result.clips = clips
    return result
