"""The ``shots`` table (decoder ``segments = "shots"``): one row per shot of an ``ok`` video.

    shot_id         string     ``<video_id>:<shot_index, 6 digits>`` (key)
    video_id, uri   string
    shot_index      int32      index into ``videos.shots``
    start_s, end_s  float64    the shot's span in seconds
    num_segments    int32      clips inside the shot
    embedding       fixed_size_list<float32>[P]  L2-normalised mean of the shot's clip embeddings
    labels          list<string>   top-k of the mean clip probabilities of the shot
    label_scores    list<float32>
    model_id, label_set, run_id  string
    indexed_at      timestamp[us, UTC]

Written like the per-segment side tables (``xclip_store.writer``: a video's rows replaced as a whole,
removed with a video that is no longer ``ok``). Added in schema "4"; an older output
simply has no ``shots`` table until a shots run creates it.
"""
from __future__ import annotations

import pyarrow as pa

from schemas.output import TIMESTAMP, _with_meta, result_fields

SHOTS_TABLE = "shots"
SHOTS_KEY = "shot_id"


def shot_id(vid: str, shot_index: int) -> str:
    return f"{vid}:{int(shot_index):06d}"


def shots_schema(dim: int) -> pa.Schema:
    return _with_meta([
        pa.field(SHOTS_KEY, pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("shot_index", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("num_segments", pa.int32(), nullable=False),
        *result_fields(dim),
        pa.field("indexed_at", TIMESTAMP, nullable=False),
    ], SHOTS_TABLE)
