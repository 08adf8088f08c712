"""The Parquet log agrees with LanceDB (xclip_store.parquet_log): deletions, marks and duplicate repairs appear in
it, so the documented DuckDB views (xclip_store.writer.CURRENT_*_SQL) equal the LanceDB tables; local and moto S3."""
from __future__ import annotations

import datetime as dt
import os

import duckdb
import pyarrow as pa
import pytest

import schemas
from jobs.config import WriterConfig
from xclip_store.writer import CURRENT_SEGMENTS_SQL, CURRENT_VIDEOS_SQL, Writer
from tests.jobs_helpers import open_lance_table, read_lance
from tests.test_xclip_store_writer import P, _segments, _videos
from xclip_core import storage


def _views(log_root: str) -> tuple[set, set]:
    con = duckdb.connect()
    videos = {(v, st) for v, st in con.sql(f"SELECT video_id, status FROM ({CURRENT_VIDEOS_SQL})"
                                              .format(output=log_root)).fetchall()}
    segs = {r[0] for r in con.sql(f"SELECT segment_id FROM ({CURRENT_SEGMENTS_SQL})"
                                  .format(output=log_root)).fetchall()}
    return videos, segs


def _lance(out: str) -> tuple[set, set]:
    return ({(v["video_id"], v["status"]) for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()},
            set(read_lance(out, schemas.SEGMENTS_TABLE).column("segment_id").to_pylist()))


def _local_log(out: str, tmp_path) -> str:
    """The output's Parquet log as a local folder DuckDB can glob (S3 is copied down)."""
    if not storage.is_s3(out):
        return out
    fs = storage.s3_filesystem()
    for key in fs.find(storage.strip_scheme(out) + "/parquet"):
        dst = tmp_path / "parquet" / key.split("/parquet/", 1)[1]
        os.makedirs(dst.parent, exist_ok=True)
        fs.get_file(key, str(dst))
    return str(tmp_path)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_deletions_marks_and_repairs_reach_the_log(where, tmp_path, request):
    out = str(tmp_path / "out") if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/idx"
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P)
    vids = [f"v{i}" for i in range(1, 6)]
    for v in vids:
        w.add("segments", _segments(v, 2, "r1"))
    w.add("videos", _videos(vids, "r1", ok=True))
    w.add("videos", _videos(["v6"], "r1", ok=False))
    w.close()
    assert _views(_local_log(out, tmp_path / "a")) == _lance(out)

    w2 = Writer(WriterConfig(output=out), run_id="r2", dim=P)
    assert w2.delete_videos(["v1", "v2"]) == 2  # gone from the source
    assert w2.delete_videos(["v3"], mark=True) == 1  # on_deleted = "mark"
    w2.close()
    lance = _lance(out)
    assert ("v1", "ok") not in lance[0] and ("v3", "deleted") in lance[0]
    assert _views(_local_log(out, tmp_path / "b")) == lance

    tbl = open_lance_table(out, schemas.VIDEOS_TABLE)  # a duplicate row (concurrent runs of old versions)
    tbl.add(tbl.search().where("video_id = 'v4'").limit(None).to_arrow())
    w3 = Writer(WriterConfig(output=out), run_id="r3", dim=P)
    assert w3.repair_duplicates() == 1  # then the run dies before it reindexes v4
    lance = _lance(out)
    assert not any(v == "v4" for v, _ in lance[0])
    assert _views(_local_log(out, tmp_path / "c")) == lance
    assert any("tombstones" in f for f in w2.parquet_files + w3.parquet_files)


def _labels_views(log_root: str) -> tuple[dict, dict]:
    con = duckdb.connect()
    videos = dict(con.sql(f"SELECT video_id, labels FROM ({CURRENT_VIDEOS_SQL})".format(output=log_root)).fetchall())
    segs = dict(con.sql(f"SELECT segment_id, labels FROM ({CURRENT_SEGMENTS_SQL})".format(output=log_root)).fetchall())
    return videos, segs


def _labels_lance(out: str) -> tuple[dict, dict]:
    return tuple(dict(zip(t.column(k).to_pylist(), t.column("labels").to_pylist()))
                 for t, k in ((read_lance(out, schemas.VIDEOS_TABLE), "video_id"),
                              (read_lance(out, schemas.SEGMENTS_TABLE), "segment_id")))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_relabels_reach_the_log(where, tmp_path, request):
    """A relabel writes label columns only (xclip_search.labelstate); its label rows in the Parquet log
    make the DuckDB views show LanceDB's labels, and a video a later run rewrote keeps that run's."""
    import lancedb

    from xclip_search.labelstate import commit_relabel, label_columns
    from xclip_store import open_output
    from schemas.output import label_text

    out = str(tmp_path / "out") if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/idx"
    w = Writer(WriterConfig(output=out), run_id="r1", dim=P)
    for v in ("v1", "v2", "v3"):
        w.add("segments", _segments(v, 2, "r1"))
    w.add("videos", _videos(["v1", "v2", "v3"], "r1", ok=True))
    w.close()
    db = lancedb.connect(storage.join(out, "lancedb"), storage_options=storage.lancedb_storage_options(out))
    tables = {n: db.open_table(n) for n in (schemas.SEGMENTS_TABLE, schemas.VIDEOS_TABLE)}

    def relabelled(name: str, new: str):
        cols = label_columns(tables[name].to_arrow(), name)
        n = cols.num_rows
        for c, values in (("labels", [[new]] * n), ("label_scores", [[0.9]] * n),
                          ("label_text", label_text([[new]] * n).to_pylist()), ("label_set", ["two"] * n)):
            i = cols.schema.get_field_index(c)
            cols = cols.set_column(i, cols.schema.field(i), pa.array(values, cols.schema.field(i).type))
        return cols

    with open_output(out, mode="w", command="relabel") as owner:  # a relabel commits under the output lease
        commit_relabel(out, {n: owner.table(n) for n in tables}, {"run_id": "20261203T000000Z-relabel-a",
                                                                  "kind": "relabel"},
                       relabelled(schemas.SEGMENTS_TABLE, "b"), relabelled(schemas.VIDEOS_TABLE, "b"))
    lance = _labels_lance(out)
    assert set(map(tuple, lance[1].values())) == {("b",)}  # the relabel reached LanceDB
    assert _labels_views(_local_log(out, tmp_path / "a")) == lance  # and the log's views

    def later(t: pa.Table) -> pa.Table:  # the run's own indexed_at (the helpers' rows share one)
        i = t.schema.get_field_index("indexed_at")
        return t.set_column(i, t.schema.field(i), pa.array([dt.datetime.now(dt.timezone.utc)] * t.num_rows,
                                                             t.schema.field(i).type))

    w2 = Writer(WriterConfig(output=out), run_id="r2", dim=P)  # a later run rewrites v2 with its labels
    w2.add("segments", later(_segments("v2", 2, "r2", labels=[["c"]] * 2)))
    w2.add("videos", later(_videos(["v2"], "r2", ok=True)))
    w2.close()
    lance = _labels_lance(out)
    assert lance[1][schemas.segment_id("v2", 0)] == ["c"] and lance[1][schemas.segment_id("v1", 0)] == ["b"]
    assert _labels_views(_local_log(out, tmp_path / "b")) == lance
