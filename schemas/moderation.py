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

    evidence     list<struct<category, item_id, mode, best_distance int32, median_distance float64,
                 matched_s float64, item_share float64, start_s, end_s, item_start_s, item_end_s>>
                 one per blocklist match (``moderation.blocklist.Match``); added as nulls to older tables

Blocklist matches (``--blocklist``) are flags too: category ``blocklist:<item id>``,
confidence = 1 - median Hamming distance / 256 (PDQ similarity), the upload's matching range;
their evidence is in ``evidence``.

``frame_pdq`` (every run, every ``ok`` video decoded by PyAV): per-second PDQ of the whole
decoded frame, bars trimmed (``xclip_core.video.frame_hash``), key ``video_id``; what
``xclip-index moderate --blocklist`` matches without decoding. (The older ``frame_hashes`` table
held a PDQ-like hash of the model's crops; it is no longer written or read.)
    video_id       string
    uri            string
    times          list<float64>              timestamp of each hashed frame (first frame at or after each second)
    frame_numbers  list<int64>                display index of that frame
    hashes         list<fixed_size_binary[32]>  PDQ (bytes of the reference hex)
    mirror         list<fixed_size_binary[32]>  PDQ of the left-right mirror
    quality        list<int16>                PDQ quality 0..100 (< 30 is not matched; 30-49 only closely)
    run_id         string
    indexed_at     timestamp[us, UTC]
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

EVIDENCE_TYPE = pa.struct([
    pa.field("category", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("best_distance", pa.int32()),
    pa.field("median_distance", pa.float64()),
    pa.field("matched_s", pa.float64()),
    pa.field("item_share", pa.float64()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("item_start_s", pa.float64()),
    pa.field("item_end_s", pa.float64()),
])
EVIDENCE_FIELD = pa.field("evidence", pa.list_(EVIDENCE_TYPE))


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
        EVIDENCE_FIELD,
    ], MODERATION_TABLE)


FRAME_PDQ_TABLE = "frame_pdq"
HASH_TYPE = pa.binary(32)
# the same lists ride on the decoder's status rows (schemas.stream), prefixed
PDQ_COLUMNS = {"times": pa.list_(pa.float64()), "frame_numbers": pa.list_(pa.int64()),
               "hashes": pa.list_(HASH_TYPE), "mirror": pa.list_(HASH_TYPE), "quality": pa.list_(pa.int16())}
PDQ_STREAM_PREFIX = "pdq_"
PDQ_STREAM_FIELDS = tuple(pa.field(PDQ_STREAM_PREFIX + k, t) for k, t in PDQ_COLUMNS.items())


def frame_pdq_schema() -> pa.Schema:
    return _with_meta([
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        *(pa.field(k, t) for k, t in PDQ_COLUMNS.items()),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("indexed_at", TIMESTAMP, nullable=False),
    ], FRAME_PDQ_TABLE)


def pdq_stream_values(fh) -> dict:
    """A ``xclip_core.video.frame_hash.FrameHashes`` as the status row's ``pdq_*`` values."""
    if fh is None:
        return {}
    return {"pdq_times": [float(t) for t in fh.times], "pdq_frame_numbers": [int(n) for n in fh.frame_numbers],
            "pdq_hashes": [bytes(h) for h in fh.hashes], "pdq_mirror": [bytes(h) for h in fh.mirror],
            "pdq_quality": [int(q) for q in fh.quality]}
