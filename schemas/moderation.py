"""The ``moderation`` table (written under ``--policy`` and by ``xclip-index moderate``): one row
per input video, key ``video_id``; LanceDB (upserted) and Parquet (``parquet/moderation/``).

    video_id     string   as in ``videos``
    uri          string
    decision     string   ``allow`` | ``review`` | ``block`` | ``error`` (video not scored)
    action       string   strictest action that fired (``review`` | ``block``); null if none
    flags        list<struct<category string, confidence float64, start_s float64, end_s float64>>
                          merged time ranges per category (``moderation.decide``), in time order
    policy_hash  string   ``sha256:<hex>`` of the normalised policy
    model_id     string
    run_id       string
    coverage     float64  fraction of the video's duration that was scored
    error        string   why the video could not be scored (decision ``error``); else null
    decided_at   timestamp[us, UTC]
    score_mode   string   ``exact`` (with visual tokens) | ``approximate`` (embeddings only)

Blocklist matches (``--blocklist``) are flags too: category ``blocklist:<item id>``,
confidence = the smaller of the two match shares, the upload's matching time range.

``frame_hashes`` (written under ``--blocklist``): per-second perceptual hashes of each ``ok``
video (``moderation.hashing``), key ``video_id``.
    video_id     string
    uri          string
    times        list<float64>              second of each hash (0, 1, 2, ...)
    hashes       list<fixed_size_binary[32]>  256-bit PDQ-style hash of the sampled frame nearest that second
    run_id       string
    indexed_at   timestamp[us, UTC]
"""
from __future__ import annotations

import pyarrow as pa

from schemas.output import TIMESTAMP, _with_meta

MODERATION_TABLE = "moderation"
MODERATION_KEY = "video_id"

FLAG_TYPE = pa.struct([
    pa.field("category", pa.string()),
    pa.field("confidence", pa.float64()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
])


def moderation_schema() -> pa.Schema:
    return _with_meta([
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("decision", pa.string(), nullable=False),
        pa.field("action", pa.string()),
        pa.field("flags", pa.list_(FLAG_TYPE)),
        pa.field("policy_hash", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("coverage", pa.float64()),
        pa.field("error", pa.string()),
        pa.field("decided_at", TIMESTAMP, nullable=False),
        pa.field("score_mode", pa.string()),
    ], MODERATION_TABLE)


FRAME_HASHES_TABLE = "frame_hashes"
FRAME_HASH_TYPE = pa.binary(32)


def frame_hashes_schema() -> pa.Schema:
    return _with_meta([
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("times", pa.list_(pa.float64())),
        pa.field("hashes", pa.list_(FRAME_HASH_TYPE)),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("indexed_at", TIMESTAMP, nullable=False),
    ], FRAME_HASHES_TABLE)
