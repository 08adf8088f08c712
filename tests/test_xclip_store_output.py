"""xclip_store.output on real LanceDB: leased commits (every commit, optimize and index builds
included, is refused once another run took the lease over), atomic manifests, table folders
without versions, damaged tables named in one line."""
from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from jobs.config import WriterConfig
from tests.jobs_helpers import open_lance_table, read_lance
from tests.test_xclip_store_writer import P, _segments, _videos
from xclip_store import DamagedTableError, LeaseConfig, LeaseError, Output, OutputError, open_output
from xclip_core import storage
from xclip_store.lease import LOCK_NAME, Lease, _Store
from xclip_store.writer import Writer

SLOW = LeaseConfig(heartbeat_s=30, stale_after_s=300)  # no heartbeat during a test: takeovers are staged


def _take_over(uri: str) -> Lease:
    """Another run takes the lease over (local or S3), as after this one stalled past ``stale_after_s``."""
    store = _Store(storage.join(uri, LOCK_NAME))
    info, token = store.read()
    info["heartbeat_at"] = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    assert store.replace(json.dumps(info).encode(), token) is not None
    return Lease(uri, "thief", SLOW).acquire()


def _state(uri: str) -> dict:
    import pyarrow.fs as pafs

    fs, base = storage.pyarrow_filesystem(uri)
    files = fs.get_file_info(pafs.FileSelector(f"{base}/parquet/segments", allow_not_found=True))
    return {"segments": open_lance_table(uri, "segments").version, "videos": open_lance_table(uri, "videos").version,
            "parquet": sorted(f.path for f in files)}


@pytest.mark.parametrize("point", ["chunk", "optimize", "index"])
def test_no_commit_after_the_lease_was_taken_over(tmp_path, point):
    uri = str(tmp_path / "out")
    out = open_output(uri, mode="w", command="run", run_id="r1", lease=SLOW)
    w = Writer(WriterConfig(output=uri, chunk_rows=3, optimize=point != "index", vector_index_min_rows=256),
               run_id="r1", dim=P, output=out)
    w.add("segments", _segments("v1", 3, "r1"))  # a full chunk: committed
    w.add("videos", _videos(["v1"], "r1"))
    w.flush()
    before = _state(uri)
    thief = _take_over(uri)
    want = {"chunk": "write segments Parquet", "optimize": "optimize videos", "index": "build the video_id index"}
    with pytest.raises(LeaseError, match=f"refused to {want[point]}") as e:
        if point == "chunk":
            w.add("segments", _segments("v2", 3, "r1"))
        else:
            w.close()
    assert "generation 2; ours was 1" in str(e.value)
    assert _state(uri) == before  # nothing committed after the takeover
    assert json.load(open(os.path.join(uri, LOCK_NAME)))["run_id"] == "thief"
    out.close()  # does not delete the thief's lease
    assert json.load(open(os.path.join(uri, LOCK_NAME)))["run_id"] == "thief"
    thief.release()


class _DiskFullFS:
    """A pyarrow filesystem whose output streams take half the bytes of a write, then fail (ENOSPC)."""

    def __init__(self, fs):
        self._fs = fs

    def __getattr__(self, name):
        return getattr(self._fs, name)

    def open_output_stream(self, path, *args, **kwargs):
        stream = self._fs.open_output_stream(path, *args, **kwargs)

        class Half:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                stream.close()

            def write(self, data):
                stream.write(data[:len(data) // 2])
                raise OSError(28, "No space left on device")
        return Half()


def test_a_manifest_is_replaced_whole_or_not_at_all(tmp_path):
    uri = str(tmp_path / "out")
    w = Writer(WriterConfig(output=uri), run_id="r1", dim=P)
    w.write_text("runs/r1.json", json.dumps({"run_id": "r1", "status": "running"}))
    full = _DiskFullFS(w.fs)
    w.fs = full
    if hasattr(w, "out"):
        w.out.fs = full
    with pytest.raises(OutputError, match="cannot write runs/r1.json .*No space left"):
        w.write_text("runs/r1.json", json.dumps({"run_id": "r1", "status": "finished", "tables": {"x": 1}}))
    with open(os.path.join(uri, "runs", "r1.json")) as f:
        assert json.load(f) == {"run_id": "r1", "status": "running"}  # the old manifest, whole
    assert os.listdir(os.path.join(uri, "runs")) == ["r1.json"]  # no temporary file left


def test_a_table_folder_without_versions_is_absent_on_s3(s3_bucket):
    import boto3

    uri = f"s3://{s3_bucket}/index"
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="index/lancedb/videos.lance/data/0001.lance", Body=b"\0" * 100)
    assert "videos" not in Output(uri).table_names()
    w = Writer(WriterConfig(output=uri), run_id="r1", dim=P)
    w.add("segments", _segments("v1", 2, "r1"))
    w.add("videos", _videos(["v1"], "r1"))
    w.close()
    assert read_lance(uri, "videos").column("video_id").to_pylist() == ["v1"]
    assert {"videos", "segments"} <= Output(uri).table_names()


def test_a_table_folder_without_versions_is_absent(tmp_path):
    # what a disk-full failure during the very first commit leaves: videos.lance, data, no version
    uri = str(tmp_path / "out")
    folder = tmp_path / "out" / "lancedb" / "videos.lance"
    (folder / "_versions").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "0001.lance").write_bytes(b"\0" * 100)
    assert "videos" not in Output(uri).table_names()
    w = Writer(WriterConfig(output=uri), run_id="r1", dim=P)  # before: "Table 'videos' was not found", exit 4
    w.add("segments", _segments("v1", 2, "r1"))
    w.add("videos", _videos(["v1"], "r1"))
    w.close()
    assert read_lance(uri, "videos").column("video_id").to_pylist() == ["v1"]
    assert not (folder / "data" / "0001.lance").exists()


def _index(tmp_path, uri: str | None = None) -> str:
    uri = uri or str(tmp_path / "out")
    w = Writer(WriterConfig(output=uri), run_id="r1", dim=P)
    w.add("segments", _segments("v1", 2, "r1"))
    w.add("videos", _videos(["v1"], "r1"))
    tables = w.close()
    w.write_text("runs/r1.json", json.dumps({"run_id": "r1", "kind": "run", "status": "finished",
                                            "finished_at": "2026-12-01T00:00:00", "tables": tables}))
    return uri


def test_a_deleted_data_file_names_the_table_and_the_restore_command(tmp_path):
    uri = _index(tmp_path)
    data = tmp_path / "out" / "lancedb" / "videos.lance" / "data"
    for f in data.iterdir():
        f.unlink()
    w = Writer(WriterConfig(output=uri), run_id="r2", dim=P)
    with pytest.raises(DamagedTableError) as e:
        w.indexed()  # the run's first read of the videos table
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600, msg
    assert "table 'videos' is damaged" in msg and f"xclip-index restore --index {uri} --run r1" in msg


def test_a_truncated_table_manifest_names_the_table(tmp_path):
    uri = _index(tmp_path)
    versions = tmp_path / "out" / "lancedb" / "segments.lance" / "_versions"
    newest = sorted(p for p in versions.iterdir() if p.suffix == ".manifest")[0]  # v2 naming: newest first
    newest.write_bytes(newest.read_bytes()[:20])
    with pytest.raises(DamagedTableError) as e:
        Writer(WriterConfig(output=uri), run_id="r2", dim=P)
    msg = str(e.value)
    # r1 itself recorded the damaged version: no restore can help, and the line says what can
    assert "\n" not in msg and "table 'segments' is damaged" in msg and "aside and reindex" in msg, msg


def test_open_output_validates_and_read_mode_cannot_commit(tmp_path):
    with pytest.raises(ValueError, match="mode must be one of"):
        open_output(str(tmp_path), mode="a")
    with pytest.raises(ValueError, match="command must be one of"):
        open_output(str(tmp_path), mode="w", command="delete-everything")
    with pytest.raises(LeaseError, match="read-only"):
        Output(str(tmp_path), mode="r").commit("delete videos", lambda: None)
    with open_output(str(tmp_path / "o"), mode="w", command="relabel") as out:
        with pytest.raises(LeaseError, match=r"in use by run .*xclip-index relabel"):
            open_output(str(tmp_path / "o"), mode="w", command="run")
        out.check("commit")
    assert not (tmp_path / "o" / LOCK_NAME).exists()  # released


@pytest.mark.parametrize("where", ["local", "s3"])
def test_tables_handed_out_in_write_mode_check_the_lease(tmp_path, request, where):
    uri = _index(tmp_path, None if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/index")
    out = open_output(uri, mode="w", command="relabel", lease=SLOW)
    seg = out.table("segments")
    rows = seg.to_arrow()  # reads pass through
    seg.merge_insert("segment_id").when_matched_update_all().execute(rows)  # ours: committed
    before = _state(uri)
    thief = _take_over(uri)
    with pytest.raises(LeaseError, match="refused to merge into segments"):
        seg.merge_insert("segment_id").when_matched_update_all().execute(rows)
    with pytest.raises(LeaseError, match="refused to optimize segments"):
        seg.optimize()
    with pytest.raises(LeaseError, match="refused to update segments"):
        seg.update(where="video_id = 'v1'", values={"label_set": "other"})
    assert _state(uri) == before
    out.close()
    thief.release()
