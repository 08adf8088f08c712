"""Rows of the decode stage's output (``schemas.stream.decoded_schema``): one per clip, one status
row per video. Shared by the CPU decode tasks (``jobs.decoder``) and the NVDEC actor side
(``jobs.gpu_decode``), so neither imports the other's module (no import circle)."""
from __future__ import annotations

import numpy as np

from schemas.stream import FRAMES, FRAMES_SHAPE, KIND_CLIP, KIND_VIDEO, THUMBNAIL


def _status_row(row: dict, **fields) -> dict:
    out = {"kind": KIND_VIDEO, "video_id": row["video_id"], "uri": row["uri"], "num_segments": 0,
           "source_size": row.get("source_size"), "source_etag": row.get("source_etag"),
           "source_mtime": row.get("source_mtime")}
    out.update(fields)
    return out


def _clip_row(row: dict, c, thumbnails: bool = False) -> dict:
    from jobs.thumbnails import thumbnail_jpeg

    frames = np.ascontiguousarray(c.frames, dtype=np.uint8)
    return {"kind": KIND_CLIP, "video_id": row["video_id"], "uri": row["uri"],
            "segment_index": int(c.segment_index), "start_s": float(c.start_s), "end_s": float(c.end_s),
            "frame_timestamps": [float(t) for t in np.asarray(c.timestamps).tolist()],
            "shot_index": getattr(c, "shot_index", None),
            FRAMES: frames.tobytes(), FRAMES_SHAPE: list(frames.shape),
            THUMBNAIL: thumbnail_jpeg(frames)[0] if thumbnails else None}


def _meta_fields(meta) -> dict:
    if meta is None:
        return {}
    return {"duration_s": None if meta.duration_s is None else float(meta.duration_s),
            "fps": None if meta.fps is None else float(meta.fps), "num_frames": meta.num_frames,
            "width": meta.width, "height": meta.height, "codec": meta.codec}
