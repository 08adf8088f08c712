"""Side tables keyed by ``segment_id``, kept out of ``segments`` so the main tables stay small.

``prompt_features`` (written with ``--store-prompt-features``): what X-CLIP's prompt
generator attends to, per segment, so labels and moderation scores can be recomputed
exactly without decoding (``xclip_core.scoring``).
    segment_id      string   key, as in ``segments``
    video_id        string
    visual_tokens   fixed_size_list<float16>[N * P]  ``encode_video().visual_tokens`` of the
                             clip ([N, P] row-major: N patch tokens, P = projection dim)
    num_tokens      int32    N
    model_id, run_id string
    indexed_at      timestamp[us, UTC]

``thumbnails`` (written by default; a flag turns it off): one small JPEG per segment.
    segment_id      string   key
    video_id        string
    jpeg            binary   the clip's middle frame, about 160 px on the long edge
    width, height   int32    of the JPEG
    run_id          string
    indexed_at      timestamp[us, UTC]
"""
from __future__ import annotations

import pyarrow as pa

from schemas.output import TIMESTAMP, _with_meta

PROMPT_FEATURES_TABLE = "prompt_features"
THUMBNAILS_TABLE = "thumbnails"
FEATURES_KEY = "segment_id"


def prompt_features_schema(num_tokens: int, dim: int) -> pa.Schema:
    return _with_meta([
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("visual_tokens", pa.list_(pa.float16(), int(num_tokens) * int(dim))),
        pa.field("num_tokens", pa.int32(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("indexed_at", TIMESTAMP, nullable=False),
    ], PROMPT_FEATURES_TABLE)


def thumbnails_schema() -> pa.Schema:
    return _with_meta([
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("jpeg", pa.binary()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("indexed_at", TIMESTAMP, nullable=False),
    ], THUMBNAILS_TABLE)
