"""Open a video (local path or s3:// URI) and index it with one demux pass.

The index is the list of video packet timestamps (no decoding), which gives the
true duration (timestamps, right for variable frame rate), the frame count and
the display-order rank of every packet; the decoder uses the ranks to skip
non-reference frames that are not sampled.

S3 objects are read into memory by default (``DecodeConfig.s3_read="auto"``,
objects up to ``s3_memory_max_bytes``): the demux pass and the decode pass then
cost one GET. Streaming through the s3fs file object issues ranged GETs for each
pass (measured in bench/RESULTS.md, "S3 read").
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from xclip_core import storage
from xclip_core.video.errors import MEDIA_ERRORS, VideoError, short as _short
from xclip_core.video.results import VideoMeta


def rate(x) -> float | None:
    """A PyAV rational as float, or None when unset. PyAV < 19 gives None for an
    unset rate or time base; PyAV 19 gives the falsy ``AVRational(0, 1)``. Both,
    and a zero denominator, mean "unknown" here."""
    if x is None:
        return None
    try:
        if not x.denominator or not x.numerator:
            return None
    except AttributeError:  # a plain number
        return float(x) or None
    return float(x)


@dataclass
class FrameIndex:
    """Display-order frame table from the demux pass."""

    pts: np.ndarray          # int64 sorted display-order pts (unique)
    times: np.ndarray        # float64 seconds from the first frame, per display index
    time_base: float
    duration_s: float
    rank_ok: bool            # every packet had a unique pts: per-packet skipping is safe
    note: str = ""           # set when the timestamps were rebuilt (``rebuilt_index``)


def open_source(uri: str, cfg) -> tuple[object, int]:
    """(file object or local path str, size in bytes). Raises VideoError."""
    uri = str(uri)
    if storage.is_s3(uri):
        try:
            fs = storage.s3_filesystem()
            size = int(fs.info(storage.strip_scheme(uri))["size"])
        except FileNotFoundError:
            raise VideoError("failed", "not found")
        except MEDIA_ERRORS as e:
            raise VideoError("failed", f"cannot stat object: {_short(e)}")
        if size == 0:
            raise VideoError("failed", "empty file (0 bytes)")
        mode = cfg.s3_read
        if mode == "memory" or (mode == "auto" and size <= cfg.s3_memory_max_bytes):
            return io.BytesIO(fs.cat_file(storage.strip_scheme(uri))), size  # one GET
        return storage.open_input(uri, block_size=cfg.s3_block_size, cache_type="readahead"), size
    if not os.path.exists(uri):
        raise VideoError("failed", "not found")
    size = os.path.getsize(uri)
    if size == 0:
        raise VideoError("failed", "empty file (0 bytes)")
    return uri, size


def open_container(src):
    import av

    if hasattr(src, "seek"):
        src.seek(0)
    try:
        # no metadata_errors=/metadata_encoding=/stream_options=: PyAV 19 removed them
        return av.open(src, mode="r")
    except MEDIA_ERRORS as e:
        raise VideoError("failed", f"cannot open container: {_short(e)}")


def video_stream(container):
    streams = container.streams.video
    if not streams:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError("skipped", f"no video stream (streams: {', '.join(kinds)})")
    stream = streams[0]
    cc = stream.codec_context
    name = getattr(cc, "name", None) if cc is not None else None
    if cc is None or not name or name == "none":
        raise VideoError("failed", "unsupported codec: no decoder for the video stream")
    return stream


def index_stream(container, stream) -> FrameIndex:
    """Demux every video packet (no decoding) and build the display-order table."""
    pts, durs, dts_only = [], [], 0
    try:
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            p = pkt.pts
            if p is None:
                p = pkt.dts
                dts_only += 1
            if p is None:
                continue
            pts.append(p)
            durs.append(pkt.duration or 0)
    except MEDIA_ERRORS:  # a truncated/garbled tail: keep what was read
        pass
    if not pts:
        raise VideoError("failed", "no video packets")
    arr = np.asarray(pts, dtype=np.int64)
    uniq = np.unique(arr)
    if len(arr) - len(uniq) > max(1, len(arr) // 10):  # many frames share a pts: the timestamps are broken
        return rebuilt_index(stream, len(arr), len(uniq), durs)
    rank_ok = dts_only == 0 and len(uniq) == len(arr)
    tb = rate(stream.time_base) or 1.0 / 1000
    order = np.argsort(arr, kind="stable")
    last_dur = durs[order[-1]]
    if not last_dur:
        deltas = np.diff(uniq)
        last_dur = int(np.median(deltas)) if len(deltas) else 0
        if not last_dur:
            fps = rate(stream.average_rate) or rate(stream.guessed_rate)
            last_dur = int(round(1.0 / (fps * tb))) if fps else 0
    times = (uniq - uniq[0]) * tb
    duration = float((uniq[-1] - uniq[0] + last_dur) * tb)
    return FrameIndex(pts=uniq, times=times, time_base=tb, duration_s=duration,
                      rank_ok=rank_ok)


def rebuilt_index(stream, n: int, distinct: int, durs: list) -> FrameIndex:
    """A display-order table for ``n`` packets whose pts are mostly shared (e.g. every frame at pts 0):
    frame ``i`` at ``i`` frame durations (the packets' median duration, else the stream's frame
    rate), in decode order; never one frame standing for the whole file. Without a frame rate the
    video fails with the reason."""
    tb = rate(stream.time_base) or 1.0 / 1000
    known = [d for d in durs if d]
    step = float(np.median(known)) * tb if known else None
    if not step:
        fps = rate(stream.guessed_rate) or rate(stream.average_rate)
        step = 1.0 / fps if fps else None
    if not step:
        raise VideoError("failed", f"unusable timestamps: {n} frames share {distinct} pts and the stream "
                                   "has no frame rate to rebuild them from")
    return FrameIndex(pts=np.arange(n, dtype=np.int64), times=np.arange(n) * step, time_base=tb,
                      duration_s=n * step, rank_ok=False,
                      note=f"timestamps rebuilt from the frame rate ({n} frames shared {distinct} pts)")


def make_meta(stream, index: FrameIndex) -> VideoMeta:
    n = len(index.pts)
    cc = stream.codec_context
    fps = n / index.duration_s if index.duration_s > 0 else (rate(stream.average_rate) or 0.0)
    return VideoMeta(duration_s=round(index.duration_s, 6), fps=round(fps, 6), num_frames=n,
                     width=int(cc.width), height=int(cc.height), codec=str(cc.name))


def check_limits(meta: VideoMeta, cfg) -> None:
    """Raise VideoError("skipped", ...) when the video is over a limit."""
    if meta.width <= 0 or meta.height <= 0:
        raise VideoError("failed", f"invalid frame size {meta.width}x{meta.height}")
    if cfg.max_duration_s is not None and meta.duration_s > cfg.max_duration_s:
        raise VideoError("skipped", f"too long: {meta.duration_s:.2f} s > max_duration_s "
                                    f"{cfg.max_duration_s}")
    if meta.duration_s < cfg.min_duration_s:
        raise VideoError("skipped", f"too short: {meta.duration_s:.2f} s < min_duration_s "
                                    f"{cfg.min_duration_s}")
    if cfg.max_pixels is not None and meta.width * meta.height > cfg.max_pixels:
        raise VideoError("skipped", f"resolution over limit: {meta.width}x{meta.height} > "
                                    f"max_pixels {cfg.max_pixels}")
    if (cfg.max_width is not None and meta.width > cfg.max_width) or \
            (cfg.max_height is not None and meta.height > cfg.max_height):
        raise VideoError("skipped", f"resolution over limit: {meta.width}x{meta.height} > "
                                    f"{cfg.max_width}x{cfg.max_height}")


def probe(uri: str, cfg=None) -> VideoMeta:
    """Metadata only (raises VideoError on a bad input)."""
    from xclip_core.video.config import DecodeConfig

    cfg = cfg or DecodeConfig()
    src, _ = open_source(uri, cfg)
    with open_container(src) as c:
        stream = video_stream(c)
        return make_meta(stream, index_stream(c, stream))
