"""End to end: S3 in, S3 out, real local Ray (one session for the module), tiny model."""
from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.runner import index_videos
from xclip_store.writer import CURRENT_SEGMENTS_SQL, CURRENT_VIDEOS_SQL
from schemas.manifest import RunManifest
from tests.jobs_helpers import SECRET_ENV, all_output_bytes, make_corpus, open_lance_table, read_lance, \
    reference_clip_embeddings
from xclip_core import storage

pytestmark = pytest.mark.slow

NUM_FRAMES = 4  # not the default 8: proves frames per clip come from the model config
TOP_K = 3


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    return str(write_random_checkpoint(tmp_path_factory.mktemp("model") / "tiny-xclip", preset="tiny",
                                       num_frames=NUM_FRAMES))


@pytest.fixture(scope="module")
def corpus(s3_server, tmp_path_factory):
    import boto3

    bucket = "jobs-e2e"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    c = make_corpus(s3_server, bucket, tmp_path_factory.mktemp("corpus"))
    c["ok"].remove(c["long"])  # over this module's max_duration_s
    return {"bucket": bucket, "skipped": [c["long"]], **c}


OPTIONS = {"encoder": {"batch_size": 3, "top_k": TOP_K}, "decoder": {"max_duration_s": 4.0}}


@pytest.fixture(scope="module")
def first_run(ray_session, tiny_model, corpus):
    output = f"s3://{corpus['bucket']}/index out/"
    summary = index_videos(corpus["inputs"], output, tiny_model, run_id="run-1", **OPTIONS)
    return output, summary


def test_accounting_and_statuses(first_run, corpus):
    output, summary = first_run
    n_inputs = len(corpus["ok"]) + len(corpus["failed"]) + len(corpus["skipped"])
    assert summary.num_inputs == n_inputs
    assert summary.counts == {"ok": len(corpus["ok"]), "failed": len(corpus["failed"]), "skipped": 1,
                              "unchanged": 0, "deleted": 0}
    videos = read_lance(output, schemas.VIDEOS_TABLE).to_pylist()
    assert len(videos) == n_inputs and len({v["video_id"] for v in videos}) == n_inputs
    by_uri = {v["uri"]: v for v in videos}
    assert set(by_uri) == set(corpus["ok"]) | set(corpus["failed"]) | set(corpus["skipped"])
    skipped = by_uri[corpus["long"]]
    assert skipped["status"] == "skipped" and "4" in skipped["error"] and skipped["embedding"] is None
    for uri in corpus["ok"]:
        v = by_uri[uri]
        assert v["status"] == "ok" and v["error"] is None and v["num_segments"] >= 1, v
        assert v["duration_s"] > 0 and v["width"] > 0 and v["source_size"] > 0 and v["source_etag"]
        assert v["video_id"] == schemas.video_id(uri) and v["run_id"] == "run-1"
    for uri, reason in corpus["failed"].items():
        v = by_uri[uri]
        assert v["status"] == "failed" and v["error"], v
        assert v["embedding"] is None and v["num_segments"] == 0 and v["labels"] is None
        if reason:
            assert reason in v["error"]
    assert sum(v["num_segments"] for v in videos) == summary.num_segments
    assert set(summary.stage_seconds) >= {"list", "decode", "encode", "write_lancedb", "total"}


def test_schemas_of_every_output(first_run):
    output, _ = first_run
    for name in (schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE):
        expected = schemas.schema_for(name, 32)
        schemas.check_table(read_lance(output, name), expected)
        fs, base = storage.pyarrow_filesystem(output)
        table = pq.read_table(f"{base.rstrip('/')}/parquet/{name}", filesystem=fs)
        schemas.check_table(table, expected)
        assert table.schema.metadata[b"xclip_index.schema_version"] == schemas.SCHEMA_VERSION.encode()


def test_segments_times_norms_labels(first_run, tiny_model):
    from xclip_core.labels import load_labels

    output, _ = first_run
    label_set = set(load_labels("kinetics400").labels)
    videos = {v["video_id"]: v for v in read_lance(output, schemas.VIDEOS_TABLE).to_pylist()}
    segments = read_lance(output, schemas.SEGMENTS_TABLE).to_pylist()
    assert segments
    per_video: dict[str, list] = {}
    for s in segments:
        v = videos[s["video_id"]]
        assert v["status"] == "ok" and s["uri"] == v["uri"]
        assert s["segment_id"] == schemas.segment_id(s["video_id"], s["segment_index"])
        assert 0.0 <= s["start_s"] < s["end_s"] <= v["duration_s"] + 1e-6, (s, v["duration_s"])
        assert len(s["frame_timestamps"]) == NUM_FRAMES
        assert all(s["start_s"] - 1e-6 <= t <= s["end_s"] + 1e-6 for t in s["frame_timestamps"])
        assert abs(np.linalg.norm(s["embedding"]) - 1.0) < 1e-4
        assert len(s["labels"]) == TOP_K and set(s["labels"]) <= label_set
        assert s["label_scores"] == sorted(s["label_scores"], reverse=True) and sum(s["label_scores"]) <= 1.0 + 1e-5
        per_video.setdefault(s["video_id"], []).append(s)
    for vid, segs in per_video.items():
        v = videos[vid]
        assert sorted(s["segment_index"] for s in segs) == list(range(v["num_segments"]))
        mean = np.mean([s["embedding"] for s in segs], axis=0)
        np.testing.assert_allclose(v["embedding"], mean / np.linalg.norm(mean), atol=1e-5)
        assert len(v["labels"]) == TOP_K and set(v["labels"]) <= label_set


def test_embeddings_match_a_direct_computation(first_run, tiny_model, corpus):
    """The clip pixels survive the object store and batching: same numbers as xclip_core alone."""
    from jobs.config import DecoderConfig
    from jobs.decoder import decode_config

    output, _ = first_run
    segments = read_lance(output, schemas.SEGMENTS_TABLE).to_pylist()
    dcfg = decode_config(DecoderConfig(), frames_per_clip=NUM_FRAMES, crop_size=32, shortest_edge=32)
    for uri in corpus["ok"][:2]:
        emb, probs = reference_clip_embeddings(tiny_model, uri, dcfg)
        got = sorted((s for s in segments if s["uri"] == uri), key=lambda s: s["segment_index"])
        assert len(got) == len(emb)
        np.testing.assert_allclose(np.array([s["embedding"] for s in got]), emb, atol=2e-5)
        assert got[0]["label_scores"][0] == pytest.approx(float(probs[0].max()), abs=1e-5)


def test_parquet_reads_in_duckdb_and_lancedb_search(first_run, corpus):
    output, summary = first_run
    con = duckdb.connect()
    con.register_filesystem(storage.s3_filesystem())
    base = output.rstrip("/")
    rows = con.sql(f"SELECT status, count(*) FROM read_parquet('{base}/parquet/videos/*.parquet') "
                   f"GROUP BY status ORDER BY status").fetchall()
    assert rows == [("failed", len(corpus["failed"])), ("ok", len(corpus["ok"])), ("skipped", 1)]
    n_seg = con.sql(f"SELECT count(*), count(DISTINCT segment_id) FROM "
                    f"read_parquet('{base}/parquet/segments/*.parquet')").fetchall()
    assert n_seg == [(summary.num_segments, summary.num_segments)]
    table = open_lance_table(output, schemas.SEGMENTS_TABLE)
    for s in table.to_arrow().to_pylist()[:4]:
        hit = table.search(s["embedding"]).limit(3).to_list()
        assert hit[0]["segment_id"] == s["segment_id"]
        assert hit[0]["_distance"] == pytest.approx(0.0, abs=1e-5)


def test_manifest_and_no_secret_anywhere(first_run, tiny_model, capsys):
    import os

    from xclip_core.labels import load_labels
    from xclip_core.loading import weights_sha256

    output, summary = first_run
    m = RunManifest.from_json(storage.read_bytes(storage.join(output, "runs", "run-1.json")).decode())
    assert m.status == "finished" and m.run_id == "run-1"
    assert m.counts == summary.counts and m.num_inputs == summary.num_inputs
    assert m.weights_sha256 == weights_sha256(tiny_model) and m.model_source == tiny_model
    assert m.label_set["sha256"] == load_labels("kinetics400").sha256
    assert m.decode_config["frames_per_clip"] == NUM_FRAMES and m.decode_config["sampler"] == "fixed"
    assert all(isinstance(t["version"], int) for t in m.tables.values())
    assert m.tables[schemas.SEGMENTS_TABLE]["rows"] == summary.num_segments
    assert len(m.parquet_files) >= 2 and all(f.startswith("s3://") for f in m.parquet_files)
    assert set(m.stage_seconds) >= {"decode", "encode", "write_parquet", "write_lancedb", "total"}
    secret = os.environ[SECRET_ENV].encode()
    files = all_output_bytes(output)
    assert len(files) > 5
    for key, body in files:
        assert secret not in body, key
    assert os.environ[SECRET_ENV] not in json.dumps(summary.__dict__, default=str)


def test_rerun_leaves_the_same_rows(first_run, tiny_model, corpus):
    output, first = first_run
    before = {n: read_lance(output, n) for n in (schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE)}
    second = index_videos(corpus["inputs"], output, tiny_model, run_id="run-2", writer={"full": True}, **OPTIONS)
    assert second.counts == first.counts and second.num_segments == first.num_segments
    for name, key in ((schemas.VIDEOS_TABLE, schemas.VIDEOS_KEY), (schemas.SEGMENTS_TABLE, schemas.SEGMENTS_KEY)):
        after = read_lance(output, name)
        assert after.num_rows == before[name].num_rows
        assert len(set(after.column(key).to_pylist())) == after.num_rows  # no duplicates
        assert set(after.column("run_id").to_pylist()) == {"run-2"}
        old = {r[key]: r for r in before[name].to_pylist()}
        for r in after.to_pylist():
            o = old[r[key]]
            for col in ("uri", "status", "error", "labels", "num_segments", "segment_index", "start_s"):
                assert r.get(col) == o.get(col), (col, r.get(col), o.get(col))
            if r["embedding"] is not None:
                np.testing.assert_allclose(r["embedding"], o["embedding"], atol=1e-6)
    # Parquet is a log of both runs; the latest-row view equals the LanceDB table
    con = duckdb.connect()
    con.register_filesystem(storage.s3_filesystem())
    base = output.rstrip("/")
    assert con.sql(f"SELECT count(*) FROM read_parquet('{base}/parquet/videos/*.parquet')").fetchall()[0][0] \
        == 2 * first.num_inputs
    current = con.sql(CURRENT_VIDEOS_SQL.format(output=base)).arrow().read_all()
    assert current.num_rows == first.num_inputs and set(current.column("run_id").to_pylist()) == {"run-2"}
    segments = con.sql(CURRENT_SEGMENTS_SQL.format(output=base)).arrow().read_all()
    assert sorted(segments.column("segment_id").to_pylist()) == \
        sorted(read_lance(output, schemas.SEGMENTS_TABLE).column("segment_id").to_pylist())
