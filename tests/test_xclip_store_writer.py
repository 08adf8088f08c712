import datetime as dt
import os

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import schemas
from jobs.config import WriterConfig
from xclip_store import OutputMismatchError
from xclip_store.writer import CURRENT_SEGMENTS_SQL, CURRENT_VIDEOS_SQL, OutputError, Writer
from schemas.output import from_columns, vectors
from tests.jobs_helpers import open_lance_table, read_lance

P = 4
NOW = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)


def _segments(vid, n, run_id, emb=None, labels=None):
    emb = np.eye(P, dtype=np.float32)[np.arange(n) % P] if emb is None else emb
    dim = emb.shape[1]
    return from_columns({"segment_id": [schemas.segment_id(vid, i) for i in range(n)], "video_id": [vid] * n,
                         "uri": [f"/v/{vid}.mp4"] * n, "segment_index": list(range(n)),
                         "start_s": [float(i) for i in range(n)], "end_s": [i + 1.0 for i in range(n)],
                         "embedding": vectors(emb, dim), "labels": labels or [["a"]] * n, "label_scores": [[0.5]] * n,
                         "model_id": ["m"] * n, "label_set": ["l"] * n, "run_id": [run_id] * n,
                         "indexed_at": [NOW] * n}, schemas.segments_schema(dim), n)


def _videos(vids, run_id, ok=True, dim=P):
    rows = [{"video_id": v, "uri": f"/v/{v}.mp4", "status": "ok" if ok else "failed",
             "error": None if ok else "bad", "num_segments": 1, "model_id": "m", "label_set": "l",
             "run_id": run_id, "indexed_at": NOW} for v in vids]
    t = schemas.to_table(rows, schemas.videos_schema(dim))
    emb = vectors(np.ones((len(vids), dim)) / 2, dim, [ok] * len(vids))
    return t.set_column(t.schema.get_field_index("embedding"), "embedding", emb)


def test_chunks_upserts_and_stale_segments(tmp_path):
    out = str(tmp_path / "out")
    w = Writer(WriterConfig(output=out, chunk_rows=3), run_id="r1", dim=P)
    w.add("segments", _segments("v1", 3, "r1"))  # a full chunk: flushed now
    w.add("segments", _segments("v2", 2, "r1"))
    w.add("videos", _videos(["v1", "v2", "v3"], "r1", ok=True))
    tables = w.close()
    assert tables["segments"]["rows"] == 5 and tables["videos"]["rows"] == 3
    files = sorted(os.listdir(tmp_path / "out" / "parquet" / "segments"))
    assert [f.rsplit("-", 1)[0] for f in files] == ["r1-00000", "r1-00001"]
    assert pq.read_table(tmp_path / "out" / "parquet" / "segments").num_rows == 5
    w2 = Writer(WriterConfig(output=out), run_id="r2", dim=P)
    w2.add("segments", _segments("v1", 2, "r2"))  # v1 now has 2 segments: segment 2 is stale
    w2.add("videos", _videos(["v1"], "r2", ok=True))
    w2.add("videos", _videos(["v2", "v3"], "r2", ok=False))  # v2 is no longer ok: its segments go
    w2.close()
    seg = read_lance(out, "segments").to_pylist()
    assert sorted(s["segment_id"] for s in seg) == [schemas.segment_id("v1", i) for i in range(2)]
    videos = {v["video_id"]: v for v in read_lance(out, "videos").to_pylist()}
    assert len(videos) == 3 and videos["v1"]["run_id"] == "r2" and videos["v2"]["embedding"] is None
    assert videos["v2"]["status"] == "failed"
    names = sorted(os.listdir(tmp_path / "out" / "parquet" / "videos"))
    assert [f.rsplit("-", 1)[0] for f in names] == ["r1-00000", "r2-00000"]
    # the Parquet log's current views agree with LanceDB
    con = duckdb.connect()
    cur_videos = con.sql(CURRENT_VIDEOS_SQL.format(output=out)).fetchall()
    cur_segments = con.sql(CURRENT_SEGMENTS_SQL.format(output=out)).arrow().read_all()
    assert len(cur_videos) == 3
    assert sorted(cur_segments.column("segment_id").to_pylist()) == sorted(s["segment_id"] for s in seg)
    assert {i.columns[0] for i in open_lance_table(out, "videos").list_indices()} >= {"video_id"}


def test_other_dimension_and_unwritable(tmp_path):
    out = str(tmp_path / "out")
    Writer(WriterConfig(output=out), run_id="r1", dim=P).close()
    with pytest.raises(OutputMismatchError, match="does not match"):
        Writer(WriterConfig(output=out), run_id="r2", dim=P * 2)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="cannot open or create"):
        Writer(WriterConfig(output=str(tmp_path / "f" / "out")), run_id="r", dim=P)


def test_vector_index_once_the_table_is_large_enough(tmp_path):
    out, dim = str(tmp_path / "out"), 32
    emb = np.random.default_rng(0).normal(size=(300, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    w = Writer(WriterConfig(output=out, vector_index_min_rows=256), run_id="r1", dim=dim)
    w.add("segments", _segments("a", 200, "r1", emb[:200]))
    w.close()
    table = open_lance_table(out, "segments")
    types = [i.index_type for i in table.list_indices()]
    assert "BTree" in types and not any(t.startswith("Ivf") for t in types)  # 200 < 256: no vector index yet
    w = Writer(WriterConfig(output=out, vector_index_min_rows=256), run_id="r2", dim=dim)
    w.add("segments", _segments("b", 100, "r2", emb[200:]))
    w.close()
    table = open_lance_table(out, "segments")
    types = sorted(i.index_type for i in table.list_indices())
    assert types.count("IvfHnswSq") == 1 and "LabelList" in types  # xclip_store.indexes: one builder
    hit = table.search(emb[250]).limit(1).to_list()[0]
    assert hit["segment_id"] == schemas.segment_id("b", 50)


LANCE_503 = ("lance error: LanceError(IO): Generic S3 error: Error after 0 retries: Server returned non-2xx status "
             "code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>, "
             "/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/lance-io-0.20.0/src/object_store.rs:912:31")
LANCE_403 = ("lance error: LanceError(IO): Generic S3 error: Client error with status 403 Forbidden: "
             "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error> Some(Error { kind: Io }), "
             "/root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/lance-io-0.20.0/src/object_store.rs:912:31")


def _failing(w, message, times, table=None):
    """Make the writer's next ``times`` LanceDB commits (of ``table``, or any) raise ``message``."""
    real, calls = w._replace, {"n": 0}

    def replace(name, *args, **kwargs):
        if (table is None or name == table) and calls["n"] < times:
            calls["n"] += 1
            raise OSError(message)
        return real(name, *args, **kwargs)
    w._replace = replace
    return calls


def test_transient_commit_errors_are_retried(tmp_path):
    out = str(tmp_path / "out")
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P)
    calls = _failing(w, LANCE_503, 2)
    w.add("segments", _segments("v1", 2, "r1"))
    w.add("videos", _videos(["v1"], "r1"))
    w.close()
    assert calls["n"] == 2
    assert read_lance(out, "segments").num_rows == 2 and read_lance(out, "videos").num_rows == 1


def test_failed_commit_keeps_the_chunk_and_says_why_in_one_line(tmp_path):
    out = str(tmp_path / "out")
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P)
    w.add("segments", _segments("v1", 3, "r1"))
    w.add("videos", _videos(["v1"], "r1"))
    calls = _failing(w, LANCE_403, 1)
    with pytest.raises(OutputError) as err:
        w.flush()
    msg = str(err.value)
    assert calls["n"] == 1  # a 403 is not retried
    assert "\n" not in msg and "AccessDenied" in msg and ".rs:" not in msg and "Some(" not in msg
    assert read_lance(out, "segments").num_rows == 0  # nothing was committed ...
    w.close()  # ... and nothing was dropped: the same writer commits it once storage is back
    assert read_lance(out, "segments").num_rows == 3
    assert read_lance(out, "videos").column("status").to_pylist() == ["ok"]


@pytest.mark.parametrize("table", ["segments", "videos"])
def test_a_commit_that_landed_before_its_error_is_not_committed_twice(tmp_path, monkeypatch, table):
    """The commit lands, then the storage answers 503 (a lost response): the retry finds its staged
    files in the table's last transactions and commits nothing again (segments are added without a
    lookup for videos that had no row: a second commit would duplicate them)."""
    import lance

    out = str(tmp_path / "out")
    real, calls = lance.LanceDataset.commit, []

    def commit_then_fail(ds, tx, **kwargs):
        result = real(ds, tx, **kwargs)
        if tx.transaction_properties.get("lance.commit.message") == f"commit {table}" and not calls:
            calls.append(1)
            raise OSError(LANCE_503)
        return result

    monkeypatch.setattr(lance.LanceDataset, "commit", commit_then_fail)
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P)
    w.add("segments", _segments("v1", 3, "r1"))
    w.add("videos", _videos(["v1"], "r1"))
    w.close()
    assert calls == [1]
    seg = read_lance(out, "segments").column("segment_id").to_pylist()
    assert sorted(seg) == [schemas.segment_id("v1", i) for i in range(3)]
    assert read_lance(out, "videos").column("status").to_pylist() == ["ok"]


def test_segments_never_without_their_videos_row(tmp_path):
    """A crash between the segments and the videos commit leaves placeholder rows, not orphans;
    the rerun replaces them."""
    out = str(tmp_path / "out")
    w = Writer(WriterConfig(output=out, chunk_rows=2), run_id="r1", dim=P)
    w.add("segments", _segments("v1", 2, "r1"))  # committed now (a full chunk)
    w.add("segments", _segments("v2", 3, "r1"))  # committed now
    _failing(w, LANCE_403, 10, table="videos")  # the final videos rows never make it
    with pytest.raises(OutputError):
        w.add("videos", _videos(["v1", "v2"], "r1"))
    segs = read_lance(out, "segments")
    videos = {v["video_id"]: v for v in read_lance(out, "videos").to_pylist()}
    assert segs.num_rows == 5 and set(segs.column("video_id").to_pylist()) <= set(videos)
    assert {v["status"] for v in videos.values()} == {schemas.STATUS_INDEXING}
    w2 = Writer(WriterConfig(output=out), run_id="r2", dim=P)
    w2.add("segments", _segments("v1", 2, "r2"))
    w2.add("segments", _segments("v2", 3, "r2"))
    w2.add("videos", _videos(["v1", "v2"], "r2"))
    w2.close()
    videos = read_lance(out, "videos")
    assert sorted(videos.column("status").to_pylist()) == ["ok", "ok"]
    assert read_lance(out, "segments").num_rows == 5


def test_same_run_id_never_overwrites_parquet(tmp_path):
    out = str(tmp_path / "out")
    for _ in range(2):
        w = Writer(WriterConfig(output=out), run_id="same", dim=P)
        w.add("videos", _videos(["v1"], "same"))
        w.close()
    files = os.listdir(tmp_path / "out" / "parquet" / "videos")
    assert len(files) == 2 and all(f.startswith("same-00000-") for f in files)
    assert pq.read_table(tmp_path / "out" / "parquet" / "videos").num_rows == 2


def test_duplicate_rows_are_reset_for_reindexing(tmp_path):
    """Duplicates (as two concurrent runs left them before the lease) cannot be fixed by upserts;
    repair_duplicates removes the affected videos entirely so the run reindexes them."""
    out = str(tmp_path / "out")
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P)
    w.add("segments", _segments("v1", 2, "r1"))
    w.add("segments", _segments("v2", 2, "r1"))
    w.add("videos", _videos(["v1", "v2", "v3"], "r1"))
    w.close()
    assert w.repair_duplicates() == 0
    # a second writer appending (not upserting) the same keys, as a concurrent run's insert did
    open_lance_table(out, "videos").add(_videos(["v1"], "r2"))
    open_lance_table(out, "segments").add(_segments("v2", 2, "r2"))
    w2 = Writer(WriterConfig(output=out), run_id="r3", dim=P)
    assert w2.repair_duplicates() == 2
    videos, segs = read_lance(out, "videos"), read_lance(out, "segments")
    assert videos.column("video_id").to_pylist() == ["v3"] and segs.num_rows == 0
    w2.add("segments", _segments("v1", 2, "r3"))
    w2.add("segments", _segments("v2", 2, "r3"))
    w2.add("videos", _videos(["v1", "v2"], "r3"))
    w2.close()
    assert sorted(read_lance(out, "videos").column("video_id").to_pylist()) == ["v1", "v2", "v3"]
    assert read_lance(out, "segments").num_rows == 4 and w2.repair_duplicates() == 0


def test_time_travel_to_a_recorded_version_and_retention(tmp_path):
    out = str(tmp_path / "out")
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P)
    w.add("videos", _videos(["v1"], "r1"))
    night1 = w.close()["videos"]["version"]
    w = Writer(WriterConfig(output=out), run_id="r2", dim=P)
    w.add("videos", _videos(["v1", "v2"], "r2"))
    night2 = w.close()["videos"]["version"]
    tbl = open_lance_table(out, "videos")
    tbl.checkout(night1)
    assert [(r["video_id"], r["run_id"]) for r in tbl.to_arrow().to_pylist()] == [("v1", "r1")]
    tbl.checkout_latest()
    assert tbl.count_rows() == 2
    n_versions = len(tbl.list_versions())
    w = Writer(WriterConfig(output=out, keep_versions_days=0), run_id="r3", dim=P)  # keep nothing old
    w.add("videos", _videos(["v3"], "r3"))
    with pytest.warns(UserWarning, match="removes every version"):  # LanceDB's own warning for 0
        w.close()
    tbl = open_lance_table(out, "videos")
    assert len(tbl.list_versions()) < n_versions and tbl.count_rows() == 3
    with pytest.raises(Exception):
        tbl.checkout(night2)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_older_output_gets_the_new_columns_and_label_text_from_its_labels(tmp_path, where, request):
    """An index written before schema "3" (no ``label_text``): opening a Writer on it adds the
    column to both tables, derived from the rows' labels by LanceDB SQL, equal to what new rows get."""
    import pyarrow.fs as pafs

    from xclip_core import storage

    out = str(tmp_path / "out") if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/out"
    seg = _segments("v1", 4, "r1", labels=[["Swimming", "riding a bike"], None, [], ["Éclair au café", "o'brien"]])
    w = Writer(WriterConfig(output=out, optimize=False), run_id="r1", dim=P)
    w.add("segments", seg)
    w.add("videos", _videos(["v1"], "r1"))
    w.close()
    new_rows = read_lance(out, "segments").sort_by("segment_index").column("label_text").to_pylist()
    assert new_rows == ["swimming; riding a bike", None, "", "éclair au café; o'brien"]
    fs, base = storage.pyarrow_filesystem(out)
    since_2 = ["label_text", "shots", "shot_index"]  # columns added after schema "2"
    for name in ("segments", "videos"):
        tbl = open_lance_table(out, name)
        tbl.drop_columns([c for c in since_2 if c in tbl.schema.names])  # as a schema "2" index had it
        for f in fs.get_file_info(pafs.FileSelector(f"{base}/parquet/{name}")):  # and its Parquet log
            old = pq.read_table(f.path, filesystem=fs)
            pq.write_table(old.drop_columns([c for c in since_2 if c in old.column_names]), f.path, filesystem=fs)
    assert "label_text" not in read_lance(out, "segments").column_names
    w2 = Writer(WriterConfig(output=out), run_id="r2", dim=P)
    w2.add("segments", _segments("v2", 1, "r2", labels=[["Juggling balls"]]))
    w2.add("videos", _videos(["v2"], "r2"))
    w2.close()
    migrated = read_lance(out, "segments").filter(pc.equal(pc.field("video_id"), "v1")).sort_by("segment_index")
    schemas.check_table(migrated, schemas.segments_schema(P))
    schemas.check_table(read_lance(out, "videos"), schemas.videos_schema(P))
    assert migrated.column("label_text").to_pylist() == new_rows
    if where == "s3":
        return  # DuckDB here has no S3 extension (no internet to fetch it)
    # the Parquet log's views read old files (no label_text) and new ones together
    con = duckdb.connect()
    seg = con.sql(CURRENT_SEGMENTS_SQL.format(output=out) + " ORDER BY segment_id").arrow().read_all()
    assert seg.column("label_text").to_pylist() == [None] * 4 + ["juggling balls"]
    assert "label_text" in con.sql(CURRENT_VIDEOS_SQL.format(output=out)).arrow().read_all().column_names


def _grow(out: str, n_videos: int, dim: int) -> list[str]:
    """The output's tables grown to ``n_videos`` ok videos of 64 segments each by one Lance append
    per table (the fragment API: seconds for 300k rows), then indexed as ``build-index`` leaves
    them (BTree, Bitmap, LabelList, FTS; no vector index). Returns the video ids."""
    import lance
    from lance.fragment import write_fragments

    from xclip_store.indexes import ensure_indexes

    Writer(WriterConfig(output=out, optimize=False), run_id="r0", dim=dim).close()  # the empty tables
    vids = [f"V{i:06d}" for i in range(n_videos)]
    n = 64 * n_videos
    col = np.repeat(np.array(vids, dtype=object), 64)
    idx = np.tile(np.arange(64), n_videos)
    seg = from_columns({"segment_id": [schemas.segment_id(v, i) for v, i in zip(col, idx)], "video_id": col.tolist(),
                        "uri": [f"/v/{v}.mp4" for v in col], "segment_index": idx.tolist(),
                        "start_s": idx.astype(float).tolist(), "end_s": (idx + 1.0).tolist(),
                        "embedding": vectors(np.eye(dim, dtype=np.float32)[idx % dim], dim), "labels": [["a"]] * n,
                        "label_scores": [[0.5]] * n, "model_id": ["m"] * n, "label_set": ["l"] * n,
                        "run_id": ["r0"] * n, "indexed_at": [NOW] * n}, schemas.segments_schema(dim), n)
    for name, rows in (("segments", seg), ("videos", _videos(vids, "r0", dim=dim))):
        ds = lance.dataset(os.path.join(out, "lancedb", f"{name}.lance"))
        lance.LanceDataset.commit(ds, lance.LanceOperation.Append(write_fragments(rows, ds)), read_version=ds.version)
        ensure_indexes(open_lance_table(out, name), name, min_vector_rows=10 ** 9)
    return vids


def _chunk_seconds(out: str, dim: int, reps: int, rewrite: list[str] | None, run_id: str) -> float:
    """Fastest of ``reps`` chunks (8 videos x 64 segments, then their 8 videos rows) committed by a
    Writer: new videos, or (``rewrite``) videos the table already holds. The minimum: load on a
    shared box only adds time."""
    w = Writer(WriterConfig(output=out, chunk_rows=512, optimize=False), run_id=run_id, dim=dim)
    times = []
    for r in range(reps):
        vids = rewrite[8 * r:8 * r + 8] if rewrite else [f"{run_id}-{r}-{j}" for j in range(8)]
        emb = np.eye(dim, dtype=np.float32)[np.arange(64) % dim]
        segs = pa.concat_tables([_segments(v, 64, run_id, emb) for v in vids])
        t0 = w.seconds["lancedb"]
        w.add("segments", segs)  # a full chunk: committed now
        w.add("videos", _videos(vids, run_id, dim=dim))
        w.flush()
        times.append(w.seconds["lancedb"] - t0)
    return min(times)


def test_chunk_commit_cost_does_not_grow_with_the_table(tmp_path):
    """One chunk's commit (placeholders, segments, videos rows) on an output of ~300k segments vs
    one of 4k: at most 3x (issue 16 asks <= 2x at 100x the rows; 3x leaves room for a shared box).
    The merge_insert(..., when_not_matched_by_source_delete) writer it replaced fails it: 0.036 s ->
    0.60 s (new videos), 0.038 s -> 0.68 s (rewritten); the flat commits: 0.013 s -> 0.022 s and
    0.024 s -> 0.039 s (this 2-core box, fastest of 5). ~30 s."""
    out, dim = {}, 256  # the old writer's cost grew with the bytes it joined: 64-d hid it under the bound
    for n_videos in (64, 4_688):  # 4,096 and 300,032 segments
        root = str(tmp_path / f"out{n_videos}")
        vids = _grow(root, n_videos, dim)
        _chunk_seconds(root, dim, 1, None, "warm")
        out[n_videos] = (_chunk_seconds(root, dim, 5, None, "new"),
                         _chunk_seconds(root, dim, 5, vids[::len(vids) // 40][:40], "again"))
    for i, what in enumerate(("new videos", "rewritten videos")):
        small, large = out[64][i], out[4_688][i]
        print(f"{what}: {small:.3f} s at 4k segments, {large:.3f} s at 300k")
        assert large < 3 * small + 0.03, f"{what}: {large:.3f} s at 300k segments vs {small:.3f} s at 4k"
