"""writer.writers > 1 in the real job (xclip_store.pooled): S3 in, S3 out, real local Ray, tiny
model, small chunks. Two writers produce the same LanceDB tables (videos, segments, the side
tables, frame_pdq) and the same Parquet rows as one, and the chunks were written by Ray tasks."""
from __future__ import annotations

import json
import math

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.runner import index_videos
from tests.jobs_helpers import make_corpus, open_lance_table
from xclip_core import storage

pytestmark = pytest.mark.slow

DIFFERS = ("run_id", "indexed_at")  # per run by design; everything else must match
KEYS = ("video_id", "segment_id", "shot_id")
OPTIONS = {"encoder": {"batch_size": 3, "top_k": 3, "store_prompt_features": True},
           "decoder": {"max_duration_s": 4.0, "thumbnails": True}}


BUCKET = "jobs-pool"


@pytest.fixture(scope="module")
def corpus(s3_server, tmp_path_factory):
    import boto3

    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=BUCKET)
    return make_corpus(s3_server, BUCKET, tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def runs(ray_session, corpus, tiny_model):
    out = {}
    for writers in (1, 2):
        output = f"s3://{BUCKET}/out{writers}/"
        summary = index_videos(corpus["inputs"], output, tiny_model, run_id=f"w{writers}", **OPTIONS,
                               writer={"writers": writers, "chunk_rows": 2})
        out[writers] = (output, summary)
    return out


def rows(table) -> list[dict]:
    keys = [k for k in KEYS if k in table.column_names]
    t = table.drop_columns([c for c in DIFFERS if c in table.column_names])
    return sorted(t.to_pylist(), key=lambda r: tuple(r[k] for k in keys))


def same(a, b) -> bool:
    """Equal, floats to 1e-5 (encoder batches may be cut differently between runs)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_rows(a, b, what: str) -> None:
    ra, rb = rows(a), rows(b)
    assert len(ra) == len(rb), (what, len(ra), len(rb))
    for x, y in zip(ra, rb):
        assert same(x, y), (what, {k: (x[k], y.get(k)) for k in x if not same(x[k], y.get(k))})


def read_manifest(uri: str) -> dict:
    fs, path = storage.pyarrow_filesystem(uri)
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def parquet_rows(output: str) -> dict:
    fs, base = storage.pyarrow_filesystem(output)
    out = {}
    for d in fs.get_file_info(pafs.FileSelector(f"{base.rstrip('/')}/parquet")):
        if d.type == pafs.FileType.Directory:
            files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(d.path)) if i.path.endswith(".parquet"))
            out[d.base_name] = [pq.read_table(f, filesystem=fs) for f in files]
    return out


def lance_tables(output: str) -> set[str]:
    fs, base = storage.pyarrow_filesystem(output)
    return {i.base_name.removesuffix(".lance") for i in fs.get_file_info(pafs.FileSelector(f"{base.rstrip('/')}/lancedb"))
            if i.base_name.endswith(".lance")}


def test_two_writers_write_the_same_tables_and_parquet_rows_as_one(runs):
    import pyarrow as pa

    (one, s1), (two, s2) = runs[1], runs[2]
    assert s1.counts == s2.counts and s1.num_segments == s2.num_segments and s1.num_segments >= 6
    names = lance_tables(one)
    assert {schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE, "thumbnails", "prompt_features", "frame_pdq"} <= names
    assert lance_tables(two) == names
    for name in sorted(names):
        a, b = open_lance_table(one, name).to_arrow(), open_lance_table(two, name).to_arrow()
        assert a.schema == b.schema, name
        assert_same_rows(a, b, name)
        if name == schemas.VIDEOS_TABLE:
            assert set(b.column("status").to_pylist()) >= {"ok", "failed"}
            assert "indexing" not in b.column("status").to_pylist()  # every placeholder replaced
    p1, p2 = parquet_rows(one), parquet_rows(two)
    assert set(p1) == set(p2) and {schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE, "thumbnails"} <= set(p1)
    for name in p1:
        assert_same_rows(pa.concat_tables(p1[name]), pa.concat_tables(p2[name]), f"parquet {name}")
    # the manifest lists every Parquet file of the run once (the pool names them as the writer does)
    listed = read_manifest(s2.manifest_uri)["parquet_files"]
    assert len(set(listed)) == len(listed)
    for name in (schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE, "thumbnails", "prompt_features"):
        assert sum(f"/parquet/{name}/" in u for u in listed) == len(p2[name]) > 0, name
    assert len(p2[schemas.SEGMENTS_TABLE]) > 2  # chunk_rows=2: several segments chunks


def test_the_chunks_were_written_by_ray_tasks(runs):
    import ray

    (_, s1), (_, s2) = runs[1], runs[2]
    assert "write_pool" not in s1.tables  # one writer: the driver stages, no pool
    pool = s2.tables["write_pool"]
    assert pool["writers"] == 2 and pool["max_in_flight"] == 4
    # the planner kept half of this 2-CPU Ray for the 2 write tasks, out of Ray Data's reach (jobs.dataset)
    assert pool["task_cpus"] == 0.5, pool
    assert ray.data.DataContext.get_current().execution_options.exclude_resources.cpu == 1.0
    assert pool["tasks"] > 0 and pool["tasks"] == pool["chunks"], pool  # every chunk by a Ray task
    assert 1 <= pool["commits"] <= pool["chunks"] and 1 <= pool["max_seen_in_flight"] <= 4, pool
    assert s2.stage_seconds["write_parquet"] == 0 and s2.stage_seconds["write_stage"] == 0  # not in the driver
    assert s2.stage_seconds["write_lancedb"] > 0 and "write_wait" in s2.stage_seconds


def test_a_failing_commit_stops_the_pool_and_a_rerun_repairs(runs, corpus, tiny_model, monkeypatch):
    """writers=2: the 2nd segments commit fails for good (disk full): OutputError, manifest failed;
    the reader view holds (no segment without its videos row, every ok video has its segments), the
    Parquet files of chunks written but never committed are gone (every one left is in the manifest).
    A rerun without the fault leaves the same tables as the 1-writer run."""
    from tests.fault_points import fail_at
    from tests.test_xclip_store_flat_commit import check_reader_view
    from xclip_store.errors import OutputError
    from xclip_store.writer import Writer

    output = f"s3://{BUCKET}/failing/"
    calls = fail_at(monkeypatch, Writer, "_replace", n=2, exc=OSError(28, "No space left on device"),
                    when=lambda self, name, *a, **k: name == schemas.SEGMENTS_TABLE)
    with pytest.raises(OutputError, match="No space left"):
        index_videos(corpus["inputs"], output, tiny_model, run_id="f1", **OPTIONS,
                     writer={"writers": 2, "chunk_rows": 2})
    assert calls.raised >= 1
    monkeypatch.undo()
    manifest = read_manifest(f"{output}runs/f1.json")
    assert manifest["status"] == "failed"
    v, s = (open_lance_table(output, n).to_arrow() for n in (schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE))
    check_reader_view(v, s)
    assert s.num_rows < runs[1][1].num_segments  # stopped part-way
    listed = {u.split("://")[-1] for u in manifest["parquet_files"]}
    fs, base = storage.pyarrow_filesystem(output)
    for name in (schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE, "thumbnails", "prompt_features"):
        files = fs.get_file_info(pafs.FileSelector(f"{base.rstrip('/')}/parquet/{name}", allow_not_found=True))
        assert {i.path for i in files} <= listed, name
    index_videos(corpus["inputs"], output, tiny_model, run_id="f2", **OPTIONS, writer={"writers": 2, "chunk_rows": 2})
    for name in (schemas.VIDEOS_TABLE, schemas.SEGMENTS_TABLE, "thumbnails", "prompt_features"):
        assert_same_rows(open_lance_table(runs[1][0], name).to_arrow(), open_lance_table(output, name).to_arrow(),
                         name)
