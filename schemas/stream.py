"""Rows that flow between the job's stages inside Ray Data (never persisted).

Defined here so every stage agrees on one column list. Three schemas, one per
hop:

``INPUT_SCHEMA`` (reader -> decoder): one row per listed input
    video_id, uri, source_size, source_etag, source_mtime,
    status/error (null, or ``failed`` already at listing, e.g. "not found")

``decoded_schema()`` (decoder -> encoder): per video, its clip rows
(``kind="clip"``) and exactly one status row (``kind="video"``). Failed and
skipped videos emit only the status row.
    kind, video_id, uri
    clip rows:   segment_index, start_s, end_s, frame_timestamps, shot_index (segments = "shots"),
                 frames (bytes of uint8 [T,S,S,3], C order), frames_shape [T,S,S,3]
                 thumbnail (JPEG of the middle frame, ``jobs.thumbnails``; null when off)
    status rows: status, error, duration_s, fps, num_frames, width, height, codec,
                 num_segments (clip rows emitted for the video; a video
                 that failed midway may have emitted some, to be dropped), source_size, source_etag,
                 source_mtime, decode_s (seconds spent on this video),
                 decode_backend, decode_fallback (``schemas.output``), shots (segments = "shots"),
                 pdq_times, pdq_frame_numbers, pdq_hashes, pdq_mirror, pdq_quality: per-second
                 PDQ of the whole frame (``schemas.moderation``; null when not hashed)
    nvdec rows (``kind="nvdec"``): video_id, uri, the fingerprint and
                 decode_config (the DecodeConfig as JSON): an
                 input the decode stage left to the GPU encoder actor, which
                 decodes it with NVDEC and replaces the row by the video's
                 clip rows and status row (``jobs.gpu_decode``)

``encoded_schema(dim, num_labels)`` (encoder -> writer): the same rows with
``frames``/``frames_shape`` replaced by
    embedding  fixed_size_list<float32>[P] (L2-normalised; clip rows only)
    probs      fixed_size_list<float32>[K] (softmax over the label set)
    error      (on a clip row: the encoder failed on its batch)
    encode_s   seconds of model time attributed to the row
    thumbnail  passed through from the decoder
    visual_tokens  fixed_size_list<float16>[N*P] (only with ``--store-prompt-features``:
               ``encoded_schema(..., num_tokens=N)``): the clip's ``encode_video().visual_tokens``
    policy_probs fixed_size_list<float32>[C] (only under a moderation policy: softmax over the
               policy's category + neutral classes, exact; ``moderation.policy``)
"""
from __future__ import annotations

import pyarrow as pa

from schemas.moderation import PDQ_STREAM_FIELDS
from schemas.output import (DECODE_FIELDS, FINGERPRINT_FIELDS, MEDIA_FIELDS, SHOT_INDEX_FIELD, SHOTS_FIELD,
                            clip_fields, vector_type)

KIND_CLIP = "clip"
KIND_VIDEO = "video"
KIND_NVDEC = "nvdec"  # an input row passed through undecoded: the GPU encoder decodes it (jobs.gpu_decode)

INPUT_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    *FINGERPRINT_FIELDS,
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
])

_COMMON = [
    pa.field("kind", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("uri", pa.string(), nullable=False),
    *clip_fields(nullable=True),  # clip rows
    SHOT_INDEX_FIELD,             # clip rows, segments = "shots"
]

_STATUS = [
    pa.field("status", pa.string()),
    pa.field("error", pa.string()),
    *MEDIA_FIELDS,
    pa.field("num_segments", pa.int32()),
    *FINGERPRINT_FIELDS,
    pa.field("decode_s", pa.float64()),
    *DECODE_FIELDS,
    SHOTS_FIELD,                  # segments = "shots": the video's shots
    *PDQ_STREAM_FIELDS,
]

FRAMES = "frames"
FRAMES_SHAPE = "frames_shape"
THUMBNAIL = "thumbnail"
VISUAL_TOKENS = "visual_tokens"
DECODE_CONFIG = "decode_config"  # nvdec rows: the job's DecodeConfig as JSON, for the actor to decode with


def decoded_schema() -> pa.Schema:
    return pa.schema(_COMMON + [
        pa.field(FRAMES, pa.large_binary()),
        pa.field(FRAMES_SHAPE, pa.list_(pa.int32())),
    ] + _STATUS + [pa.field(THUMBNAIL, pa.binary()), pa.field(DECODE_CONFIG, pa.string())])


POLICY_PROBS = "policy_probs"


def encoded_schema(dim: int, num_labels: int, *, num_tokens: int = 0, num_policy_classes: int = 0) -> pa.Schema:
    """Optional columns: ``num_tokens`` > 0 adds ``visual_tokens`` (N = num_tokens patch tokens of
    dimension ``dim``); ``num_policy_classes`` > 0 adds ``policy_probs``."""
    tokens = [pa.field(VISUAL_TOKENS, pa.list_(pa.float16(), int(num_tokens) * int(dim)))] if num_tokens else []
    return pa.schema(_COMMON + _STATUS + [
        pa.field("embedding", vector_type(dim)),
        pa.field("probs", vector_type(num_labels)),
        pa.field("encode_s", pa.float64()),
        pa.field(THUMBNAIL, pa.binary()),
    ] + tokens
      + ([pa.field(POLICY_PROBS, vector_type(num_policy_classes))] if num_policy_classes else []))
