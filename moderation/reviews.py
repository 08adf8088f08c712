"""Human reviews of moderation decisions: the append-only ``reviews`` table
(``schemas.reviews``) and the decisions as they stand after review.

    from moderation.reviews import add_review, current_decisions, pending
    add_review(index, video_id, "block", reason="weapon at 0:12", reviewer="ana")
    rows = current_decisions(index)        # every video's moderation row, with its effective decision
    queue = pending(rows, decision="block")  # what still needs a human, oldest first

Effective decision (``effective_decision``): the action of the video's latest review (``block``,
``allow`` or ``escalate``), else the model's decision (``allow | review | block | error``).
Pending: the model said ``review``, ``block`` or ``error`` and no reviewer has blocked or allowed
it since (an ``escalate`` keeps it pending, shown as ``escalate``). ``--review-out`` and the
moderation reports use the effective decisions of every current video, not only the last run's.
"""
from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa

from schemas.output import VIDEOS_TABLE, from_columns
from schemas.reviews import REVIEW_ACTIONS, REVIEWS_TABLE, reviews_schema
from xclip_core import storage

PENDING = ("review", "block", "error")
MAX_REASON = 2000


class ReviewError(ValueError):
    """A review that cannot be recorded (unknown video, bad action, empty reason); says the fix."""


def _db(output: str):
    import lancedb

    return lancedb.connect(storage.join(output, "lancedb"), storage_options=storage.lancedb_storage_options(output))


def write_reviews(output: str, table: pa.Table) -> dict:
    """Append ``table`` (``reviews`` rows) to the Parquet log, then to the LanceDB table (created
    when missing), through the store (``xclip_store.output.side_table``; the lease is not taken:
    no run writes this append-only table). Never updates or deletes a row. Returns
    ``{"version", "parquet"}``."""
    from xclip_store.output import side_table
    from xclip_store.parquet_log import append_log

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    parquet = append_log(output, REVIEWS_TABLE, table, run_id=stamp, tag="review")
    tbl = side_table(output, REVIEWS_TABLE, reviews_schema())
    tbl.add(table)
    return {"version": int(tbl.version), "parquet": parquet}


def read_reviews(output: str, video_ids=None) -> list[dict]:
    """Every review (of ``video_ids`` when given), oldest first; [] before the first review."""
    from schemas.sql import sql_list

    db = _db(output)
    if REVIEWS_TABLE not in set(db.list_tables().tables):
        return []
    q = db.open_table(REVIEWS_TABLE).search()
    if video_ids is not None:
        ids = list(video_ids)
        if not ids:
            return []
        q = q.where(f"video_id IN ({sql_list(ids)})")
    rows = q.limit(None).to_arrow().to_pylist()
    return sorted(rows, key=lambda r: (r["reviewed_at"], r["review_id"]))


def latest_reviews(reviews: list[dict]) -> dict[str, dict]:
    """video_id -> its latest review (``reviews`` oldest first, as ``read_reviews`` returns them)."""
    return {r["video_id"]: r for r in reviews}


def effective_decision(row: dict | None, review: dict | None) -> str | None:
    """The latest review's action, else the model's decision (None: neither)."""
    if review is not None:
        return review["action"]
    return row["decision"] if row is not None else None


def current_decisions(output: str) -> list[dict]:
    """Every ``moderation`` row of a video still in the index (any run, not only the latest), with
    ``effective`` (``effective_decision``), ``review`` (the latest review or None) and ``reviews``
    (how many). [] without a ``moderation`` table."""
    from moderation.store import open_table

    tbl = open_table(output, create=False)
    if tbl is None:
        return []
    rows = tbl.search().limit(None).to_arrow().to_pylist()
    db = _db(output)
    if VIDEOS_TABLE in set(db.list_tables().tables):
        videos = db.open_table(VIDEOS_TABLE).search().select(["video_id", "status"]).limit(None).to_arrow()
        live = {v for v, s in zip(videos.column("video_id").to_pylist(), videos.column("status").to_pylist())
                if s != "deleted"}
        rows = [r for r in rows if r["video_id"] in live]
    return with_reviews(rows, *review_index(output))


def review_index(output: str) -> tuple[dict[str, dict], dict[str, int]]:
    """(video_id -> latest review, video_id -> number of reviews) of every review (people's work:
    one entry per reviewed video, not per video of the index)."""
    reviews = read_reviews(output)
    counts: dict[str, int] = {}
    for r in reviews:
        counts[r["video_id"]] = counts.get(r["video_id"], 0) + 1
    return latest_reviews(reviews), counts


def with_reviews(rows: list[dict], latest: dict, counts: dict) -> list[dict]:
    """``rows`` (``moderation`` rows, changed in place) with ``review``, ``reviews`` and ``effective``
    (``current_decisions``) from ``review_index``."""
    for r in rows:
        r["review"] = latest.get(r["video_id"])
        r["reviews"] = counts.get(r["video_id"], 0)
        r["effective"] = effective_decision(r, r["review"])
    return rows


def is_pending(row: dict) -> bool:
    review = row.get("review")
    return row["decision"] in PENDING and (review is None or review["action"] == "escalate")


def pending(rows: list[dict], *, decision: str | None = None, category: str | None = None) -> list[dict]:
    """Rows that still need a human (module doc), oldest decision first. ``decision``: ``review``,
    ``block``, ``error`` (the model's, not escalated) or ``escalate``; ``category``: a flag category."""
    out = []
    for r in rows:
        if not is_pending(r):
            continue
        shown = "escalate" if r.get("review") else r["decision"]
        if decision and shown != decision:
            continue
        if category and category not in {f["category"] for f in (r["flags"] or [])}:
            continue
        out.append(r)
    return sorted(out, key=lambda r: (r["decided_at"], r["uri"]))


def queue_rows(rows: list[dict]) -> list[dict]:
    """Rows for ``--review-out`` (``moderation.store.write_review_queue``): ``decision`` set to the
    effective decision (an escalated video stays ``review``), ``reviewed`` the latest review's
    action (or null). Allowed videos leave the queue; confirmed blocks stay ``block``."""
    out = []
    for r in rows:
        eff = r.get("effective", r["decision"])
        out.append({**r, "decision": "review" if eff == "escalate" else eff})
    return out


def add_review(output: str, video_id: str, action: str, *, reason: str, reviewer: str) -> dict:
    """Record one review of ``video_id`` (which must have a ``moderation`` row or be in ``videos``);
    returns the row written."""
    from moderation.store import open_table
    from schemas.sql import sql_str

    if action not in REVIEW_ACTIONS:
        raise ReviewError(f"action: expected one of {', '.join(REVIEW_ACTIONS)}, got {action!r}")
    reason = (reason or "").strip()
    if not reason:
        raise ReviewError("reason: a non-empty reason is required")
    if len(reason) > MAX_REASON:
        raise ReviewError(f"reason: at most {MAX_REASON} characters, got {len(reason)}")
    reviewer = (reviewer or "").strip()[:200]
    if not reviewer:
        raise ReviewError("reviewer: a non-empty reviewer name is required")
    where = f"video_id = {sql_str(video_id)}"
    row = None
    tbl = open_table(output, create=False)
    if tbl is not None:
        found = tbl.search().where(where).select(["uri", "decision", "policy_hash", "run_id"]).limit(1) \
            .to_arrow().to_pylist()
        row = found[0] if found else None
    if row is None:
        db = _db(output)
        found = db.open_table(VIDEOS_TABLE).search().where(where).select(["uri"]).limit(1).to_arrow().to_pylist() \
            if VIDEOS_TABLE in set(db.list_tables().tables) else []
        if not found:
            raise ReviewError(f"video {video_id!r} is not in this index")
        row = {"uri": found[0]["uri"], "decision": None, "policy_hash": None, "run_id": None}
    review = {"review_id": uuid.uuid4().hex, "video_id": video_id, "uri": row["uri"], "action": action,
              "reason": reason, "reviewer": reviewer, "reviewed_at": dt.datetime.now(dt.timezone.utc),
              "policy_hash": row["policy_hash"], "model_decision": row["decision"], "model_run_id": row["run_id"]}
    schema = reviews_schema()
    write_reviews(output, from_columns({n: [review[n]] for n in schema.names}, schema, 1))
    return review
