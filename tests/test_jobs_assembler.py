import datetime as dt

import numpy as np
import pyarrow as pa

import schemas
from jobs.assembler import RunIdentity, VideoAssembler
from jobs.labeler import Labeler
from schemas.output import vectors
from schemas.stream import INPUT_SCHEMA, KIND_CLIP, KIND_VIDEO, encoded_schema

P, LABELS = 4, ("run", "swim", "jump")


def _clip(vid, idx, emb, probs, error=None):
    return {"kind": KIND_CLIP, "video_id": vid, "uri": f"s3://b/{vid}.mp4", "segment_index": idx,
            "start_s": float(idx), "end_s": idx + 1.0, "frame_timestamps": [idx + 0.5], "error": error,
            "embedding": emb, "probs": probs, "encode_s": 0.01}


def _status(vid, status="ok", n=0, error=None):
    return {"kind": KIND_VIDEO, "video_id": vid, "uri": f"s3://b/{vid}.mp4", "status": status, "error": error,
            "duration_s": 3.0, "fps": 30.0, "num_frames": 90, "width": 64, "height": 48, "codec": "h264",
            "num_segments": n, "source_size": 10, "source_etag": "e",
            "source_mtime": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "decode_s": 0.5}


def _batch(rows):
    schema = encoded_schema(P, len(LABELS))
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema if f.name not in ("embedding", "probs")}
    for name, width in (("embedding", P), ("probs", len(LABELS))):
        valid = [r.get(name) is not None for r in rows]
        cols[name] = vectors([r[name] if r.get(name) is not None else [0.0] * width for r in rows], width, valid)
    return pa.Table.from_pydict(cols, schema=schema)


def _assembler():
    return VideoAssembler(dim=P, labeler=Labeler(LABELS, 2), identity=RunIdentity("r", "m@1", "k@2"))


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_out_of_order_rows_make_one_video_and_its_segments():
    a = _assembler()
    e0, e1 = _unit([1, 0, 0, 0]), _unit([0, 1, 0, 0])
    segs, vids = a.add(_batch([_clip("v1", 1, e1, [0.1, 0.1, 0.8]), _status("v1", n=2),
                               _clip("v2", 0, e0, [1.0, 0, 0])]))
    assert segs == [] and vids == []  # v1 still misses a clip, v2 its status
    segs, vids = a.add(_batch([_status("v2", n=1), _clip("v1", 0, e0, [0.6, 0.3, 0.1])]))
    videos = pa.concat_tables(vids).to_pylist()
    seg = pa.concat_tables(segs)
    schemas.check_table(seg, schemas.segments_schema(P))
    assert {v["video_id"] for v in videos} == {"v1", "v2"} and a.counts["ok"] == 2
    v1 = next(v for v in videos if v["video_id"] == "v1")
    np.testing.assert_allclose(v1["embedding"], _unit(e0 + e1), atol=1e-6)
    assert v1["labels"] == ["jump", "run"]  # mean probs [0.35, 0.2, 0.45]
    np.testing.assert_allclose(v1["label_scores"], [0.45, 0.35], atol=1e-6)
    assert v1["num_segments"] == 2 and v1["run_id"] == "r" and v1["model_id"] == "m@1"
    rows = [r for r in seg.to_pylist() if r["video_id"] == "v1"]
    assert [r["segment_index"] for r in rows] == [0, 1]
    assert rows[1]["labels"][0] == "jump"
    assert rows[0]["segment_id"] == schemas.segment_id("v1", 0)
    assert a.num_segments == 3 and a.finish(pa.table({"video_id": ["v1", "v2"], "uri": ["x", "y"]})) == []


def test_failed_midway_and_encoder_errors_give_failed_videos_without_segments():
    a = _assembler()
    e = _unit([1, 1, 0, 0])
    segs, vids = a.add(_batch([_status("v3", status="failed", n=1, error="decode error: boom"),
                               _clip("v4", 0, None, None, error="encode failed: OOM"), _status("v4", n=1)]))
    assert segs == []
    assert pa.concat_tables(vids).column("video_id").to_pylist() == ["v4"]  # v3 waits for its emitted clip
    segs2, vids2 = a.add(_batch([_clip("v3", 0, e, [1, 0, 0])]))  # the clip emitted before it failed
    assert segs2 == []
    videos = {v["video_id"]: v for v in pa.concat_tables(vids + vids2).to_pylist()}
    assert videos["v3"]["status"] == "failed" and videos["v3"]["num_segments"] == 0
    assert videos["v4"]["status"] == "failed" and videos["v4"]["error"] == "encode failed: OOM"
    assert videos["v4"]["embedding"] is None and a.counts["failed"] == 2 and not a._pending


def test_finish_accounts_for_every_input():
    a = _assembler()
    a.add(_batch([_status("v5", n=2), _clip("v5", 0, _unit([1, 0, 0, 0]), [1, 0, 0])]))
    inputs = pa.Table.from_pylist([{"video_id": v, "uri": f"s3://b/{v}.mp4"} for v in ("v5", "v6")],
                                  schema=INPUT_SCHEMA)
    videos = {v["video_id"]: v for v in pa.concat_tables(a.finish(inputs)).to_pylist()}
    assert "incomplete: 1 of 2" in videos["v5"]["error"] and videos["v5"]["duration_s"] == 3.0
    assert videos["v6"]["error"].startswith("no result from the pipeline")
    assert a.counts == {"failed": 2}
    b = _assembler()
    (t,) = b.finish(inputs, reason="pipeline error: X")
    assert set(t.column("error").to_pylist()) == {"pipeline error: X"}


def test_coverage_is_the_union_of_windows_over_the_duration():
    from jobs.assembler import coverage

    assert coverage([(0.0, 1.0), (0.5, 1.5), (2.0, 3.0)], 4.0) == 0.625  # overlap counted once: 2.5 / 4
    assert coverage([(0.0, 2.0), (1.0, 5.0)], 4.0) == 1.0  # clipped to the duration
    assert coverage([], 4.0) == 0.0
    assert coverage([(0.0, 1.0)], None) is None and coverage([(0.0, 1.0)], 0.0) is None


def test_videos_rows_carry_coverage():
    a = _assembler()
    e0 = _unit([1, 0, 0, 0])
    # duration 3 s; clips [0,1] and [2,3]: two thirds covered
    _, vids = a.add(_batch([_clip("v1", 0, e0, [1.0, 0, 0]), _clip("v1", 2, e0, [1.0, 0, 0]), _status("v1", n=2),
                            _status("v2", status="failed", error="bad")]))
    rows = {r["video_id"]: r for r in pa.concat_tables(vids).to_pylist()}
    assert abs(rows["v1"]["coverage"] - 2 / 3) < 1e-9
    assert rows["v2"]["coverage"] == 0.0
