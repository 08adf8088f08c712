"""xclip_store.restore on real LanceDB, local and S3 (moto): every table back to one run's
recorded versions, also when the newest table manifest is truncated; one-line errors."""
from __future__ import annotations

import json

import pytest

from jobs.config import WriterConfig
from tests.jobs_helpers import read_lance
from tests.test_xclip_store_writer import P, _segments, _videos
from xclip_store import DamagedTableError, LeaseError, RestoreError, open_output, restore
from xclip_store.writer import Writer


@pytest.fixture(params=["local", "s3"])
def uri(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    return f"s3://{request.getfixturevalue('s3_bucket')}/index"


def _run(uri: str, run_id: str, videos: dict[str, int], when: str, **cfg) -> dict:
    """A run writing ``videos`` (video -> number of segments) and its manifest; returns its tables."""
    w = Writer(WriterConfig(output=uri, **cfg), run_id=run_id, dim=P)
    for vid, n in videos.items():
        w.add("segments", _segments(vid, n, run_id))
    w.add("videos", _videos(list(videos), run_id))
    tables = w.close()
    w.write_text(f"runs/{run_id}.json", json.dumps({"run_id": run_id, "kind": "run", "status": "finished",
                                                   "finished_at": when, "tables": tables}))
    return tables


def _rows(uri: str) -> tuple[list, list]:
    videos = sorted((r["video_id"], r["run_id"]) for r in read_lance(uri, "videos").to_pylist())
    segments = sorted((r["segment_id"], r["run_id"]) for r in read_lance(uri, "segments").to_pylist())
    return videos, segments


def test_restore_brings_every_table_back_to_one_run(uri):
    _run(uri, "r1", {"v1": 3, "v2": 2}, "2026-12-01T01")
    want = _rows(uri)
    _run(uri, "r2", {"v1": 1, "v3": 2}, "2026-12-01T02")  # v1 shrank, v3 is new
    assert _rows(uri) != want
    result = restore(uri, "r1")
    assert _rows(uri) == want
    assert set(result.tables) == {"videos", "segments"} and result.run_id == "r1"
    assert all(t["after"] > t["before"] for t in result.tables.values())  # new versions: history is kept
    record = json.loads(open_output(uri).read_text(f"runs/{result.restore_id}.json"))
    assert record["kind"] == "restore" and record["restored_run"] == "r1"
    assert "r1" in result.format() and "videos" in result.format()
    # the output is usable after it: a rerun writes on top of the restored tables
    _run(uri, "r3", {"v2": 1}, "2026-12-01T03")
    videos, _ = _rows(uri)
    assert videos == [("v1", "r1"), ("v2", "r3")]


def test_restore_when_the_newest_table_manifest_is_truncated(tmp_path):
    uri = str(tmp_path / "out")
    _run(uri, "r1", {"v1": 2}, "2026-12-01T01")
    want = _rows(uri)
    _run(uri, "r2", {"v2": 2}, "2026-12-01T02")
    versions = tmp_path / "out" / "lancedb" / "segments.lance" / "_versions"
    newest = sorted(p for p in versions.iterdir() if p.suffix == ".manifest")[0]  # v2 naming: newest first
    newest.write_bytes(newest.read_bytes()[:20])
    with pytest.raises(DamagedTableError, match=r"table 'segments' is damaged.*--run r1"):
        Writer(WriterConfig(output=uri), run_id="r3", dim=P)  # names the last run that is still whole
    restore(uri, "r1")
    assert _rows(uri) == want
    assert (tmp_path / "out" / "lancedb" / "segments.lance" / "_versions_damaged" / newest.name).exists()
    _run(uri, "r3", {"v3": 1}, "2026-12-01T03")  # writable again
    assert [v for v, _ in _rows(uri)[0]] == ["v1", "v3"]


def test_restore_errors_are_one_line(tmp_path):
    uri = str(tmp_path / "out")
    _run(uri, "r1", {"v1": 2}, "2026-12-01T01")
    with pytest.raises(RestoreError, match="no manifest runs/nope.json; runs with recorded table versions: r1"):
        restore(uri, "nope")
    # a run with keep_versions_days = 0 cleans up every older version: r1's are gone
    _run(uri, "r2", {"v2": 1}, "2026-12-01T02", keep_versions_days=0)
    with pytest.raises(RestoreError) as e:
        restore(uri, "r1")
    assert "no longer has version" in str(e.value) and "\n" not in str(e.value)
    with open_output(uri, mode="w", command="run"):  # a run holds the lease: restore waits its turn
        with pytest.raises(LeaseError, match="in use by run"):
            restore(uri, "r2")
