"""xclip_store.flat_commit and the writer's consistency order on it, on real LanceDB (local and moto
S3): the reader guarantees at every commit, kills between commits repaired by a rerun, chunks
staged by parallel processes and committed by the writer, flat commit cost."""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time

import lance
import lancedb
from lancedb.index import BTree
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from jobs.config import WriterConfig
from schemas import STATUS_FAILED, STATUS_INDEXING, STATUS_OK, segments_schema, videos_schema
from schemas.output import from_columns, segment_id
from xclip_core import storage
from xclip_store import flat_commit as fc
from xclip_store import open_output
from xclip_store.writer import Writer, per_video_columns

DIM = 8
MODEL = "m@000000000000"
LABELS = "l@000000000000"


def segs(vid: str, n: int, run: str, dim: int = DIM, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    return from_columns({
        "segment_id": [segment_id(vid, i) for i in range(n)], "video_id": [vid] * n,
        "uri": [f"/v/{vid}.mp4"] * n, "segment_index": list(range(n)), "start_s": [2.0 * i for i in range(n)],
        "end_s": [2.0 * i + 2 for i in range(n)], "frame_timestamps": [[2.0 * i] for i in range(n)],
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        "labels": [["a"]] * n, "label_scores": [[1.0]] * n, "model_id": [MODEL] * n, "label_set": [LABELS] * n,
        "run_id": [run] * n, "indexed_at": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
    }, segments_schema(dim), n)


def videos(rows: list[tuple[str, str, int]], run: str, dim: int = DIM) -> pa.Table:
    """(video_id, status, num_segments) -> videos rows."""
    n = len(rows)
    return from_columns({
        "video_id": [r[0] for r in rows], "uri": [f"/v/{r[0]}.mp4" for r in rows], "status": [r[1] for r in rows],
        "num_segments": [r[2] for r in rows], "model_id": [MODEL] * n, "label_set": [LABELS] * n,
        "run_id": [run] * n, "indexed_at": pa.array([0] * n, pa.timestamp("us", tz="UTC")),
    }, videos_schema(dim), n)


def make_output(db_uri: str, dim: int = DIM) -> lancedb.DBConnection:
    """An output holding run r1: videos A (3 segments), C (2 segments) ok, with scalar indexes."""
    db = lancedb.connect(db_uri, storage_options=storage.lancedb_storage_options(db_uri))
    v = db.create_table("videos", videos([("A", STATUS_OK, 3), ("C", STATUS_OK, 2)], "r1"))
    s = db.create_table("segments", pa.concat_tables([segs("A", 3, "r1"), segs("C", 2, "r1")]))
    v.create_index("video_id", config=BTree())
    s.create_index("video_id", config=BTree())
    return db


def state(db_uri: str) -> tuple[pa.Table, pa.Table]:
    so = storage.lancedb_storage_options(db_uri) or None
    v = lance.dataset(fc.table_uri(db_uri, "videos"), storage_options=so).to_table(
        columns=["video_id", "status", "run_id"])
    s = lance.dataset(fc.table_uri(db_uri, "segments"), storage_options=so).to_table(
        columns=["segment_id", "video_id", "run_id"])
    return v, s


def check_reader_view(v: pa.Table, s: pa.Table) -> None:
    """What a reader may see between any two commits."""
    rows = dict(zip(v.column("video_id").to_pylist(), v.column("status").to_pylist()))
    assert len(rows) == v.num_rows, "duplicate videos rows"
    assert len(set(s.column("segment_id").to_pylist())) == s.num_rows, "duplicate segments"
    for vid in set(s.column("video_id").to_pylist()):
        assert vid in rows, f"segments of {vid} without its videos row"
    for vid, st in rows.items():
        if st == STATUS_OK:  # a visible video has segments, all of one run
            mine = s.filter(pc.equal(s.column("video_id"), vid))
            assert mine.num_rows > 0, f"ok video {vid} without segments"
            assert len(set(mine.column("run_id").to_pylist())) == 1, f"{vid}: two generations of segments"


def run_r2(out: str, output=None, chunk_rows: int = 10 ** 6) -> None:
    """Run r2 through the Writer: A again with 2 segments (one stale), B new (2 segments), C now failed."""
    w = Writer(WriterConfig(output=out, chunk_rows=chunk_rows), run_id="r2", dim=DIM, output=output)
    w.add("segments", pa.concat_tables([segs("A", 2, "r2", seed=1), segs("B", 2, "r2", seed=2)]))
    w.add("videos", videos([("A", STATUS_OK, 2), ("B", STATUS_OK, 2), ("C", STATUS_FAILED, 0)], "r2"))
    w.flush()


EXPECTED_VIDEOS = {("A", STATUS_OK, "r2"), ("B", STATUS_OK, "r2"), ("C", STATUS_FAILED, "r2")}
EXPECTED_SEGMENTS = {(segment_id(v, i), v, "r2") for v in "AB" for i in range(2)}


def as_sets(v: pa.Table, s: pa.Table):
    return set(zip(*[v.column(c).to_pylist() for c in v.column_names])), \
        set(zip(*[s.column(c).to_pylist() for c in s.column_names]))


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path):
    """An output location (its LanceDB database is ``<out>/lancedb``)."""
    if request.param == "local":
        return str(tmp_path / "out")
    return f"s3://{request.getfixturevalue('s3_bucket')}/out"


def db(out: str) -> str:
    return storage.join(out, "lancedb")


def test_every_commit_keeps_the_reader_guarantees(out, monkeypatch):
    make_output(db(out))
    views = []
    real = Writer._replace

    def snapshot(self, *args, **kwargs):  # the reader's view just before each Lance commit
        views.append(state(db(out)))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Writer, "_replace", snapshot)
    with open_output(out, mode="w", command="run", run_id="r2") as leased:
        run_r2(out, leased)
        generation = leased.lease.generation
    views.append(state(db(out)))
    assert len(views) == 5  # placeholders A and B, segments, videos, C's segments, final
    for v, s in views:
        check_reader_view(v, s)
    assert as_sets(*views[-1]) == (EXPECTED_VIDEOS, EXPECTED_SEGMENTS)
    # LanceDB reads the same tables; the lease generation is in the transactions
    so = storage.lancedb_storage_options(out)
    assert lancedb.connect(db(out), storage_options=so).open_table("segments").count_rows() == 4
    ds = lance.dataset(fc.table_uri(db(out), "segments"), storage_options=so)
    props = ds.read_transaction(ds.version).transaction_properties
    assert props["xclip.lease_generation"] == str(generation) and props["xclip.run_id"] == "r2"
    assert props["lance.commit.message"] == "delete segments of videos not ok"


class Killed(BaseException):  # as a kill: no retry, no cleanup catches it
    pass


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4])
def test_killed_before_the_nth_commit_is_repaired_by_a_rerun(tmp_path, monkeypatch, kill_at):
    out = str(tmp_path / "out")
    make_output(db(out))
    real, calls = Writer._replace, []

    def stop(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == kill_at:
            raise Killed
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Writer, "_replace", stop)
    with pytest.raises(Killed):
        run_r2(out)
    monkeypatch.undo()
    check_reader_view(*state(db(out)))
    run_r2(out)  # the rerun repairs
    assert as_sets(*state(db(out))) == (EXPECTED_VIDEOS, EXPECTED_SEGMENTS)


def test_replace_is_one_transaction_and_drops_duplicate_keys(tmp_path):
    db_uri = str(tmp_path / "lancedb")
    db = make_output(db_uri)
    db.open_table("segments").add(segs("A", 1, "r0"))  # a duplicate key left by an old concurrent run
    uri = fc.table_uri(db_uri, "segments")
    v0 = lance.dataset(uri).version
    fc.commit_replace(uri, fc.write(uri, segs("A", 2, "r2")))
    ds = lance.dataset(uri)
    assert ds.version == v0 + 1
    got = ds.to_table(filter="video_id = 'A'", columns=["segment_id", "run_id"])
    assert sorted(got.column("segment_id").to_pylist()) == [segment_id("A", 0), segment_id("A", 1)]
    assert set(got.column("run_id").to_pylist()) == {"r2"}
    assert ds.to_table(filter="video_id = 'C'").num_rows == 2  # other videos untouched


def test_non_finite_vectors_are_nulled_or_refused(tmp_path):
    db_uri = str(tmp_path / "lancedb")
    make_output(db_uri)
    uri = fc.table_uri(db_uri, "segments")
    bad = segs("B", 2, "r2")
    emb = np.ones((2, DIM), np.float32)
    emb[1, 3] = np.nan
    bad = bad.set_column(bad.schema.get_field_index("embedding"), "embedding",
                         pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM))
    with pytest.raises(ValueError, match="non-finite"):
        fc.write(uri, bad, cfg=fc.FlatCommitConfig(on_bad_vectors="error"))
    fc.commit_replace(uri, fc.write(uri, bad))
    t = lance.dataset(uri).to_table(filter="video_id = 'B'").sort_by("segment_id")
    assert t.column("embedding").is_valid().to_pylist() == [True, False]


def _stage_chunk(args):
    """A write-pool worker: a chunk's Lance data files, staged for the writer's commit_staged."""
    out, vid, n = args
    return fc.write(fc.table_uri(db(out), "segments"), segs(vid, n, "r2", seed=sum(map(ord, vid))),
                    storage_options=storage.lancedb_storage_options(out), per_video=per_video_columns("segments"))


def test_chunks_staged_in_parallel_and_committed_by_the_writer_equal_one_writer(out):
    """Five chunks staged by 2 worker processes and committed in order by ``Writer.commit_staged``;
    vs the same chunks added to one Writer: the same tables."""
    chunks = [(f"P{i}", 3 + i) for i in range(4)] + [("A", 2)]
    results = {}
    for mode in ("one", "parallel"):
        uri = f"{out}-{mode}"
        make_output(db(uri))
        w = Writer(WriterConfig(output=uri), run_id="r2", dim=DIM)
        if mode == "one":
            for vid, n in chunks:
                w.add("segments", segs(vid, n, "r2", seed=sum(map(ord, vid))))
                w.flush()
        else:
            with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
                staged = list(pool.map(_stage_chunk, [(uri, vid, n) for vid, n in chunks]))
            for s in staged:
                w.commit_staged("segments", s)
        so = storage.lancedb_storage_options(uri)
        t = lancedb.connect(db(uri), storage_options=so).open_table("segments").to_arrow().sort_by("segment_id")
        v = lancedb.connect(db(uri), storage_options=so).open_table("videos").to_arrow().sort_by("video_id")
        results[mode] = (t, v.select(["video_id", "status", "run_id"]))
        check_reader_view(v, t)
    assert results["one"][0].num_rows == 2 + 3 + 4 + 5 + 6 + 2  # C's 2 rows stay
    assert results["one"][0].equals(results["parallel"][0])
    assert results["one"][1].equals(results["parallel"][1])
    assert set(results["one"][1].column("status").to_pylist()) == {STATUS_OK, STATUS_INDEXING}  # C ok, others placeholders


def _min_commit(uri: str, first: int, reps: int, replace_from: list[str] | None, dim: int) -> float:
    times = []
    for r in range(reps):
        vids = replace_from[r * 8:(r + 1) * 8] if replace_from else [f"N{first + r}-{j}" for j in range(8)]
        chunk = pa.concat_tables([segs(v, 64, f"c{r}", dim=dim, seed=r) for v in vids])  # 512 rows
        staged = fc.write(uri, chunk)
        t0 = time.perf_counter()
        fc.commit_replace(uri, staged)
        times.append(time.perf_counter() - t0)
    return min(times)  # load on a shared box only adds time: the minimum is the commit's own cost


def test_commit_cost_does_not_grow_with_the_table(tmp_path):
    """The commit of a 512-row chunk (new videos, and videos rewritten in the big indexed fragment)
    on a table of 300k rows vs 4k rows, fastest of 5: at most 3x (the issue asks <= 2x at 100x the rows). 16-d
    vectors keep the table's bytes (and the test's time) small: the cost measured is the commit's
    lookup, deletion vectors and manifest, which depend on rows and fragments, not vector width.
    Checked to fail for today's merge_insert(..., when_not_matched_by_source_delete) (10x at 300k
    rows here; bench/RESULTS.md, Scale). ~20 s on the shared 2-core box."""
    dim, big = 16, 300_032
    out = {}
    for rows in (4_096, big):
        db_uri = str(tmp_path / f"db{rows}")
        db = lancedb.connect(db_uri)
        n_vid = rows // 64
        bulk = pa.concat_tables([segs(f"V{i}", 64, "r1", dim=dim) for i in range(min(n_vid, 64))])
        vid_col = pa.array(np.repeat([f"V{i}" for i in range(n_vid)], 64).tolist())
        reps = -(-rows // bulk.num_rows)
        full = pa.concat_tables([bulk] * reps).slice(0, rows)
        full = full.set_column(1, "video_id", vid_col)
        full = full.set_column(0, "segment_id", pc.binary_join_element_wise(
            vid_col, pa.array((np.arange(rows) % 64).astype(str).tolist()), ":"))
        tbl = db.create_table("segments", full)
        tbl.create_index("video_id", config=BTree())
        uri = fc.table_uri(db_uri, "segments")
        _min_commit(uri, 0, 1, None, dim)  # warm-up
        old = [f"V{i}" for i in range(0, n_vid, max(1, n_vid // 40))][:40]
        out[rows] = (_min_commit(uri, 100, 5, None, dim), _min_commit(uri, 200, 5, old, dim))
    for i, what in enumerate(("new videos", "rewritten videos")):
        small, large = out[4_096][i], out[big][i]
        assert large < 3 * small + 0.05, f"{what}: {large:.3f} s at 300k rows vs {small:.3f} s at 4k"


def test_a_run_never_looks_up_its_own_rows_nor_new_videos(tmp_path, monkeypatch):
    """The hot path (xclip_store.commit_plan): after ``indexed()``, a chunk of new videos costs no
    index lookup, and a rewritten video is looked up once per table and chunk, never in the
    fragments the run appended (their number grows with the run: scanning them made the commit's cost
    grow). Counted by wrapping ``flat_commit.lookup_fragments`` (instrumentation: it still runs).
    Without ``indexed()`` every video is looked up, but still only outside the run's fragments. The
    tables end as they must (reader view, A rewritten, C kept, no duplicates)."""
    calls = []
    real = fc.lookup_fragments

    def counted(ds, video_ids, fragments=None):
        scanned = {f.fragment_id for f in (fragments if fragments is not None else ds.get_fragments())}
        calls.append((ds.uri.rstrip("/").rsplit("/", 1)[-1], sorted(video_ids), scanned))
        return real(ds, video_ids, fragments)

    monkeypatch.setattr(fc, "lookup_fragments", counted)
    for indexed in (True, False):
        out = str(tmp_path / f"out{indexed}")
        make_output(db(out))
        start = {n: {f.fragment_id for f in lance.dataset(fc.table_uri(db(out), n)).get_fragments()}
                 for n in ("videos", "segments")}
        w = Writer(WriterConfig(output=out, chunk_rows=4), run_id="r2", dim=DIM)
        if indexed:
            w.indexed()
        calls.clear()
        for i in range(6):  # 6 chunks of new videos: a full chunk each, committed now
            w.add("segments", segs(f"N{i}", 4, "r2"))
        new_chunks = list(calls)
        w.add("segments", segs("A", 4, "r2", seed=1))  # A: the output has it
        rewrite = calls[len(new_chunks):]
        w.add("videos", videos([(f"N{i}", STATUS_OK, 4) for i in range(6)] + [("A", STATUS_OK, 4)], "r2"))
        w.close()
        for table, _, scanned in calls:  # never one of the run's own fragments
            assert scanned <= start[table.split(".")[0]], (indexed, table, scanned)
        if indexed:
            assert new_chunks == [] and [(t, v) for t, v, _ in rewrite] == [("videos.lance", ["A"]),
                                                                         ("segments.lance", ["A"])]
            assert all(v == ["A"] for _, v, _ in calls)  # the videos chunk looks up A only
        else:
            assert len(new_chunks) == 12  # every chunk: videos (placeholders) and segments, once each
        v, s = state(db(out))
        check_reader_view(v, s)
        assert sorted(v.column("video_id").to_pylist()) == ["A", "C", *(f"N{i}" for i in range(6))]
        assert set(v.column("status").to_pylist()) == {STATUS_OK}
        a = s.filter(pc.equal(s.column("video_id"), "A"))
        assert a.num_rows == 4 and set(a.column("run_id").to_pylist()) == {"r2"}
        assert s.num_rows == 7 * 4 + 2  # C's 2 stay
