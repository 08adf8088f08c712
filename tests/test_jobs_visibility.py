"""Good rows stay visible (jobs.visibility): a full disk or a pipeline breakdown during a reprocess leaves the
earlier ok rows and their segments readable, on real LanceDB (local and moto S3) with exact fault points."""
from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

import schemas
from jobs.assembler import VideoAssembler
from jobs.runner import PipelineError, index_videos
from jobs.visibility import KeepGood
from xclip_store.writer import OutputError, Writer
from tests.jobs_helpers import read_lance
from tests.fault_points import fail_at

pytestmark = pytest.mark.slow

N = 4
OPTS = {"encoder": {"batch_size": 4}, "decoder": {"thumbnails": False}}
DISK_FULL = OSError(28, "No space left on device")


@pytest.fixture(scope="module")
def base(ray_session, tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    root = tmp_path_factory.mktemp("visible")
    model = str(write_random_checkpoint(root / "model", preset="tiny", num_frames=4))
    videos = root / "videos"
    for i in range(N):
        write_video(videos / f"v{i}.mp4", num_frames=30, width=32, height=32, fps=15)
    out = root / "base-out"
    assert index_videos(str(videos), str(out), model, run_id="base", **OPTS).counts["ok"] == N
    return {"root": root, "model": model, "videos": str(videos), "out": out}


def _visible(out):
    """What a reader filtering status = 'ok' sees: ok videos with an embedding, and their segments."""
    videos = [v for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()
              if v["status"] == "ok" and v["embedding"] is not None]
    segs = read_lance(out, schemas.SEGMENTS_TABLE).to_pylist()
    return sorted(v["uri"] for v in videos), sorted(s["segment_id"] for s in segs)


def _copy(base, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(base["out"], out)
    return str(out)


def _segments_commit(self, name, *args, **kwargs):
    return name == schemas.SEGMENTS_TABLE


def test_disk_full_during_a_full_rerun_keeps_the_ok_rows(base, tmp_path, monkeypatch):
    out = _copy(base, tmp_path)
    before = _visible(out)
    assert len(before[0]) == N
    calls = fail_at(monkeypatch, Writer, "_replace", n=1, exc=DISK_FULL, when=_segments_commit)
    with pytest.raises(OutputError, match="No space left"):
        index_videos(base["videos"], out, base["model"], run_id="full-disk", writer={"full": True}, **OPTS)
    assert calls.raised >= 1
    monkeypatch.undo()
    assert _visible(out) == before  # not 'indexing' with null embeddings
    summary = index_videos(base["videos"], out, base["model"], run_id="after", writer={"full": True}, **OPTS)
    assert summary.counts["ok"] == N and _visible(out) == before


def test_a_breakdown_during_a_reprocess_keeps_the_ok_rows(base, tmp_path, monkeypatch):
    out = _copy(base, tmp_path)
    before = _visible(out)
    fail_at(monkeypatch, VideoAssembler, "add", n=1, exc=RuntimeError("object lost: the node died"))
    with pytest.raises(PipelineError, match="object lost") as e:
        index_videos(base["videos"], out, base["model"], run_id="broken", writer={"full": True}, **OPTS)
    assert f"{N} failed" in str(e.value)  # the run says what happened...
    assert _visible(out) == before  # ...and the earlier ok rows and segments stay readable
    assert {v["run_id"] for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()} == {"base"}


def test_s3_disk_full_keeps_the_ok_rows(base, s3_bucket, monkeypatch):
    out = f"s3://{s3_bucket}/index"
    assert index_videos(base["videos"], out, base["model"], run_id="s3-base", **OPTS).counts["ok"] == N
    before = _visible(out)
    fail_at(monkeypatch, Writer, "_replace", n=1, exc=DISK_FULL, when=_segments_commit)
    with pytest.raises(OutputError):
        index_videos(base["videos"], out, base["model"], run_id="s3-full", writer={"full": True}, **OPTS)
    assert _visible(out) == before


def _videos(rows):
    from schemas.output import from_columns

    cols = {f.name: [r.get(f.name) for r in rows] for f in schemas.videos_schema(4)}
    return from_columns(cols, schemas.videos_schema(4), len(rows))


def test_keep_good_drops_only_failures_that_would_hide_an_ok_row_of_the_same_source():
    indexed = pa.Table.from_pylist([
        {"video_id": "same", "status": "ok", "source_size": 10, "source_etag": "e", "source_mtime": None},
        {"video_id": "changed", "status": "ok", "source_size": 10, "source_etag": "e", "source_mtime": None},
        {"video_id": "was-failed", "status": "failed", "source_size": 10, "source_etag": "e",
         "source_mtime": None}])
    rows = [{"video_id": v, "status": st, "source_size": size, "source_etag": "e", "uri": v}
            for v, st, size in (("same", "failed", 10), ("changed", "failed", 11), ("was-failed", "failed", 10),
                                ("new", "failed", 10), ("same", "ok", 10))]
    kg = KeepGood(indexed)
    assert kg.filter(_videos(rows)).column("video_id").to_pylist() == ["changed", "was-failed", "new", "same"]
    assert kg.filter(_videos(rows), breakdown=True).column("video_id").to_pylist() == ["was-failed", "new", "same"]
    assert kg.kept == 3
