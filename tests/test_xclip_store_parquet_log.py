"""The Parquet log agrees with LanceDB (xclip_store.parquet_log): deletions, marks and duplicate repairs appear in
it, so the documented DuckDB views (xclip_store.writer.CURRENT_*_SQL) equal the LanceDB tables; local and moto S3."""
from __future__ import annotations

import os

import duckdb
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
