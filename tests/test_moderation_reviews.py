"""moderation.reviews: the append-only reviews table (LanceDB + Parquet log, on S3 via moto), the
effective decision, the pending queue and what --review-out gets."""
from __future__ import annotations

import time

import pyarrow.dataset as ds
import pytest

from moderation.collector import rows_table
from moderation.reviews import (ReviewError, add_review, current_decisions, pending, queue_rows, read_reviews)
from moderation.store import review_queue, write_decisions
from tests.test_moderation_store import ROWS, _row
from xclip_core import storage


@pytest.fixture
def index(s3_server, s3_bucket):
    out = f"s3://{s3_bucket}/index"
    write_decisions(out, "r1", rows_table(ROWS))  # a review, b block, c allow, d block, e error, f review
    return out


def test_reviews_are_appended_and_the_latest_decides(index):
    assert read_reviews(index) == [] and {r["video_id"]: r["effective"] for r in current_decisions(index)} == \
        {"a": "review", "b": "block", "c": "allow", "d": "block", "e": "error", "f": "review"}
    add_review(index, "a", "escalate", reason="unsure", reviewer="ana")
    time.sleep(0.002)
    add_review(index, "a", "allow", reason="a toy", reviewer="bo")
    add_review(index, "b", "block", reason="confirmed", reviewer="ana")
    add_review(index, "f", "escalate", reason="ask legal", reviewer="ana")
    reviews = read_reviews(index)
    assert [(r["video_id"], r["action"], r["reviewer"], r["model_decision"], r["model_run_id"]) for r in reviews] == [
        ("a", "escalate", "ana", "review", "r1"), ("a", "allow", "bo", "review", "r1"),
        ("b", "block", "ana", "block", "r1"), ("f", "escalate", "ana", "review", "r1")]
    assert all(r["policy_hash"] == "sha256:x" and r["uri"].startswith("s3://") for r in reviews)
    fs, base = storage.pyarrow_filesystem(index)
    log = ds.dataset(f"{base}/parquet/reviews", format="parquet", filesystem=fs).to_table()
    assert sorted(log.column("review_id").to_pylist()) == sorted(r["review_id"] for r in reviews)

    rows = current_decisions(index)
    eff = {r["video_id"]: r["effective"] for r in rows}
    assert eff == {"a": "allow", "b": "block", "c": "allow", "d": "block", "e": "error", "f": "escalate"}
    # pending: not yet blocked/allowed by a human (escalated stays), oldest decision first
    assert [r["video_id"] for r in pending(rows)] == ["d", "e", "f"]
    assert [r["video_id"] for r in pending(rows, decision="escalate")] == ["f"]
    assert [r["video_id"] for r in pending(rows, decision="block")] == ["d"]
    assert [r["video_id"] for r in pending(rows, category="c")] == ["d", "f"]
    # --review-out: allowed leave, confirmed block stays block, escalated stays review, errors last
    assert [(i["video_id"], i["decision"]) for i in review_queue(queue_rows(rows))] == \
        [("d", "block"), ("b", "block"), ("f", "review"), ("e", "error")]


def test_a_new_model_decision_keeps_the_reviews(index):
    add_review(index, "a", "allow", reason="fine", reviewer="ana")
    write_decisions(index, "r2", rows_table([_row("a", "block", [0.99], run_id="r2")]))  # a rerun
    rows = {r["video_id"]: r for r in current_decisions(index)}
    assert rows["a"]["decision"] == "block" and rows["a"]["effective"] == "allow" and rows["a"]["reviews"] == 1
    assert len(read_reviews(index)) == 1


def test_bad_reviews_are_refused_and_write_nothing(index):
    with pytest.raises(ReviewError, match="action: expected one of block, allow, escalate"):
        add_review(index, "a", "delete", reason="x", reviewer="ana")
    with pytest.raises(ReviewError, match="reason: a non-empty reason"):
        add_review(index, "a", "allow", reason="   ", reviewer="ana")
    with pytest.raises(ReviewError, match="reviewer"):
        add_review(index, "a", "allow", reason="x", reviewer="")
    with pytest.raises(ReviewError, match="'zz' is not in this index"):
        add_review(index, "zz", "allow", reason="x", reviewer="ana")
    assert read_reviews(index) == []
