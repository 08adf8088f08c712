"""moderation.store: review-queue order, and the moderation table upserted by video_id into
LanceDB on S3 (moto) with an append-only Parquet log."""
from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq

from moderation.collector import rows_table
from moderation.store import open_table, review_queue, write_decisions, write_review_queue
from xclip_core import storage


def _row(vid, decision, peaks, run_id="r1"):
    flags = [{"category": "c", "confidence": p, "start_s": float(i), "end_s": float(i + 2)}
             for i, p in enumerate(peaks)]
    return {"video_id": vid, "uri": f"s3://b/{vid}.mp4", "decision": decision,
            "action": decision if decision in ("review", "block") else None, "flags": flags,
            "policy_hash": "sha256:x", "model_id": "m", "run_id": run_id, "coverage": 1.0,
            "error": "failed: bad" if decision == "error" else None,
            "decided_at": dt.datetime.now(dt.timezone.utc), "score_mode": None}


ROWS = [_row("a", "review", [0.9]), _row("b", "block", [0.6, 0.7]), _row("c", "allow", []),
        _row("d", "block", [0.95]), _row("e", "error", []), _row("f", "review", [0.5, 0.99])]


def test_review_queue_most_severe_first_then_errors_with_names_and_reasons():
    q = review_queue(ROWS)
    assert [i["video_id"] for i in q] == ["d", "b", "f", "a", "e"]
    assert q[1]["confidence"] == 0.7 and [r["start_s"] for r in q[1]["ranges"]] == [0.0, 1.0]
    assert (q[-1]["decision"], q[-1]["name"], q[-1]["error"]) == ("error", "e.mp4", "failed: bad")
    assert q[0]["name"] == "d.mp4" and q[0]["error"] is None


def test_decisions_upserted_on_s3_and_logged_to_parquet(s3_server, s3_bucket):
    out = f"s3://{s3_bucket}/index"
    first = write_decisions(out, "r1", rows_table(ROWS))
    assert first["rows"] == 6
    again = write_decisions(out, "r2", rows_table([_row("a", "block", [0.8], run_id="r2")]))
    assert again["rows"] == 6  # upserted by video_id
    table = {r["video_id"]: r for r in open_table(out, create=False).to_arrow().to_pylist()}
    assert table["a"]["decision"] == "block" and table["a"]["run_id"] == "r2" and table["b"]["run_id"] == "r1"
    fs, _ = storage.pyarrow_filesystem(out)
    assert pq.read_table(storage.strip_scheme(first["parquet"]), filesystem=fs).num_rows == 6
    assert pq.read_table(storage.strip_scheme(again["parquet"]), filesystem=fs).num_rows == 1
    uri = f"s3://{s3_bucket}/review/q.jsonl"
    assert write_review_queue(uri, ROWS) == 5
    lines = [json.loads(x) for x in storage.read_bytes(uri).decode().splitlines()]
    assert [x["decision"] for x in lines] == ["block", "block", "review", "review", "error"]


def test_summary_in_chunks_equals_one_pass_and_spills_sorted_chunks_on_s3(s3_server, s3_bucket, monkeypatch):
    """moderation.summary: ROWS fed in 3 chunks (spilled to S3) give the queue of one sort over all of
    them (merged from the chunks), the counts, the top items; errors listed are bounded."""
    import moderation.summary as summary_mod
    from moderation.policy import load_policy
    from moderation.summary import Summary

    monkeypatch.setattr(summary_mod, "TOP_ITEMS", 3)
    spill = f"s3://{s3_bucket}/stage"
    chunked, whole = Summary(load_policy("example"), spill=spill), Summary(load_policy("example"))
    for rows in (ROWS[:2], ROWS[2:5], ROWS[5:]):
        chunked.add_current([dict(r) for r in rows])
    whole.add_current([dict(r) for r in ROWS])
    assert all(storage.exists(f"{spill}/queue/c{k:05d}.jsonl") for k in range(3))
    want = [json.dumps(i, ensure_ascii=False) + "\n" for i in review_queue(ROWS)]
    assert list(chunked.queue_lines()) == list(whole.queue_lines()) == want
    assert [i["video_id"] for i in chunked.top] == ["d", "b", "f"] and chunked.queued == 5
    assert chunked.model == whole.model and chunked.model["block"] == 2 and chunked.videos == 6
    assert chunked.errors == 1 and chunked.error_rows == [("s3://b/e.mp4", "e", "failed: bad")]
    monkeypatch.setattr(summary_mod, "ERRORS_SHOWN", 1)
    bounded = Summary(load_policy("example"))
    bounded.add_current([_row("y", "error", []), _row("x", "error", [])])
    assert bounded.errors == 2 and bounded.error_rows == [("s3://b/x.mp4", "x", "failed: bad")]
