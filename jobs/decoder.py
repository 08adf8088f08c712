"""Stage 2: read, decode and sample each video (Ray CPU tasks).

``decode_batch(batch, cfg=DecodeConfig)`` is a Ray Data ``map_batches``
generator: for each input row (``schemas.stream.INPUT_SCHEMA``) it yields
tables of ``schemas.stream.decoded_schema()``: the video's clip rows (a few at
a time, as ``iter_clips`` produces them) and then exactly one status row whose
``num_segments`` counts the clip rows emitted. It never raises on a bad input:
a missing file, an unreadable container, a decoder timeout all become a
``failed`` status row with the reason (``skipped`` for inputs over a
configured limit). Only media and I/O errors are bad inputs
(``xclip_core.video.errors.MEDIA_ERRORS``): any other exception is a bug in us
or a dependency and fails the task, and so the run (no row claims the input was
bad). An ``ok`` video decoded only in part keeps its ``partial: ...`` reason
in ``error``. Failed and skipped videos emit no clip rows, except a video
that fails after some clips were already emitted: the writer side drops those.

Frames leave here as uint8 ``[T, S, S, 3]`` at the model's input size
(``S`` = the model's crop size, ``T`` = its ``num_frames``; see
``decode_config``), so only model-sized pixels cross the object store.
"""
from __future__ import annotations

import logging
import time
from typing import Iterator

import pyarrow as pa

from jobs import gpu_decode
from jobs.config import DecoderConfig
from jobs.decoded_rows import _clip_row, _meta_fields, _status_row
from jobs.reader import stat_source
from xclip_core.video.errors import MEDIA_ERRORS, short
from schemas import STATUS_FAILED, STATUS_OK
from schemas.moderation import pdq_stream_values
from schemas.stream import decoded_schema

log = logging.getLogger(__name__)

_SCHEMA = decoded_schema()


def decode_config(cfg: DecoderConfig, *, frames_per_clip: int, crop_size: int, shortest_edge: int):
    """The ``xclip_core.video.DecodeConfig`` for this job: the job's sampling knobs
    (``cfg.decode``), geometry and frame count from the model."""
    return cfg.decode.with_(frames_per_clip=int(frames_per_clip), crop_size=int(crop_size),
                            shortest_edge=max(int(shortest_edge), int(crop_size)))


def decode_one(row: dict, cfg, *, clips_per_table: int = 8, thumbnails: bool = False) -> Iterator[pa.Table]:
    """One input row -> tables of its clip rows (``clips_per_table`` at a time,
    so memory stays bounded for long videos; with ``thumbnails`` each carries a JPEG of its middle
    frame, ``jobs.thumbnails``), then one table with its status
    row. Clips already yielded for a video that later fails are dropped by the
    writer side (the status row says failed)."""
    from xclip_core.video import iter_clips

    t0 = time.perf_counter()
    paused = [0.0]  # time suspended at a yield (Ray Data backpressure) is not decode time

    def status(**fields) -> pa.Table:
        return pa.Table.from_pylist([_status_row(row, decode_s=time.perf_counter() - t0 - paused[0], **fields)],
                                    schema=_SCHEMA)

    def emit(rows: list) -> Iterator[pa.Table]:
        table = pa.Table.from_pylist(rows, schema=_SCHEMA)
        t = time.perf_counter()
        yield table
        paused[0] += time.perf_counter() - t

    if row.get("status") == STATUS_FAILED:  # already failed while listing
        yield status(status=STATUS_FAILED, error=row.get("error"))
        return
    if row.get("source_size") is None:
        try:
            size, etag, mtime = stat_source(row["uri"])
            row = dict(row, source_size=size, source_etag=etag, source_mtime=mtime)
        except FileNotFoundError:
            yield status(status=STATUS_FAILED, error="not found")
            return
        except MEDIA_ERRORS as e:  # permissions, S3 errors after retries; a bug propagates
            yield status(status=STATUS_FAILED, error=f"cannot stat: {short(e)}")
            return
    if gpu_decode.route_to_nvdec(row, cfg):  # the GPU encoder actor decodes this one
        yield gpu_decode.passthrough_table(row, cfg)
        return
    pending, n, emitted, hashes = [], 0, 0, {}
    try:
        stream = iter_clips(row["uri"], cfg)
        for clip in stream:
            pending.append(_clip_row(row, clip, thumbnails))
            n += 1
            if len(pending) >= clips_per_table:
                yield from emit(pending)
                emitted += len(pending)
                pending = []
        result = stream.result
        st, reason, meta = result.status, result.reason, result.meta
        shots = result.shots
        hashes = pdq_stream_values(result.frame_hashes)  # per-second PDQ (xclip_core.video.frame_hash)
    except MEDIA_ERRORS as e:  # iter_clips turns these into results; kept as a last guard
        st, reason, meta, shots = STATUS_FAILED, f"decode error: {short(e)}", None, None
    if st == STATUS_OK and n == 0:
        st, reason = STATUS_FAILED, reason or "no clips decoded"
    if st != STATUS_OK:
        pending = []  # not emitted; the status row counts only the clip rows already out
    if pending:
        yield from emit(pending)
        emitted += len(pending)
    # an ok video keeps its "partial: ..." reason (counted as partial in the manifest)
    yield status(status=st, error=reason if st == STATUS_OK else (reason or st), num_segments=emitted,
                 decode_backend=cfg.backend, shots=_shot_rows(shots) if st == STATUS_OK else None,
                 **_meta_fields(meta), **(hashes if st == STATUS_OK else {}))


def _shot_rows(shots) -> list[dict] | None:
    """``VideoResult.shots`` -> the ``shots`` column's value (``schemas.output.SHOTS_FIELD``)."""
    return None if shots is None else [{"start_s": float(a), "end_s": float(b)} for a, b in shots]


def decode_batch(batch: pa.Table, *, cfg, thumbnails: bool = False) -> Iterator[pa.Table]:
    """Ray Data UDF (``batch_format="pyarrow"``): one yielded table per video."""
    for row in batch.to_pylist():
        yield from decode_one(row, cfg, thumbnails=thumbnails)
