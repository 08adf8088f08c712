"""The ``reviews`` table: what human reviewers decided (``xclip-index serve``, ``moderation.reviews``).

Append-only: one row per review action, never updated or deleted by any run (reruns, ``moderate``
and deletions of videos leave it alone). LanceDB table ``reviews`` plus its Parquet log under
``<output>/parquet/reviews/``.

    review_id        string   random id of this action (uuid4 hex)
    video_id         string   as in ``videos`` / ``moderation``
    uri              string   the video's URI when it was reviewed
    action           string   ``block`` (confirm) | ``allow`` (overturn) | ``escalate``
    reason           string   the reviewer's reason (required, free text)
    reviewer         string   who acted (the name given at login, or the API caller's ``reviewer``)
    reviewed_at      timestamp[us, UTC]
    policy_hash      string   the policy of the model decision that was reviewed (null: none)
    model_decision   string   the model's decision at that time (``moderation.decision``; null: none)
    model_run_id     string   the run that made that decision (null: none)

The effective decision of a video is the action of its latest review, else the model's
decision (``moderation.reviews.effective_decision``).
"""
from __future__ import annotations

import pyarrow as pa

from schemas.output import TIMESTAMP, _with_meta

REVIEWS_TABLE = "reviews"
REVIEW_ACTIONS = ("block", "allow", "escalate")


def reviews_schema() -> pa.Schema:
    return _with_meta([
        pa.field("review_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string()),
        pa.field("action", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("reviewer", pa.string(), nullable=False),
        pa.field("reviewed_at", TIMESTAMP, nullable=False),
        pa.field("policy_hash", pa.string()),
        pa.field("model_decision", pa.string()),
        pa.field("model_run_id", pa.string()),
    ], REVIEWS_TABLE)
