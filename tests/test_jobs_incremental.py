"""Incremental reindex (--skip-unchanged): unchanged inputs are kept, the rest runs."""
from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pytest

import schemas
from jobs.incremental import changed_mask
from jobs.runner import index_videos
from schemas.stream import INPUT_SCHEMA
from tests.jobs_helpers import read_lance

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _inputs(*rows):
    return pa.Table.from_pylist([dict(video_id=v, uri=f"s3://b/{v}", source_size=s, source_etag=e, source_mtime=m,
                                      status=None, error=None) for v, s, e, m in rows], schema=INPUT_SCHEMA)


def _indexed(*rows):
    return pa.Table.from_pylist([dict(video_id=v, model_id=mi, label_set=ls, source_size=s, source_etag=e,
                                      source_mtime=m) for v, mi, ls, s, e, m in rows])


def test_changed_mask_compares_model_labels_and_fingerprint():
    indexed = _indexed(("same-etag", "m", "l", 10, "e1", None), ("new-etag", "m", "l", 10, "e1", None),
                       ("new-size", "m", "l", 10, "e1", None), ("same-mtime", "m", "l", 5, None, T0),
                       ("new-mtime", "m", "l", 5, None, T0), ("other-model", "m2", "l", 10, "e1", None),
                       ("other-labels", "m", "l2", 10, "e1", None), ("no-fingerprint", "m", "l", 10, "e1", None))
    inputs = _inputs(("same-etag", 10, "e1", None), ("new-etag", 10, "e2", None), ("new-size", 11, "e1", None),
                     ("same-mtime", 5, None, T0), ("new-mtime", 5, None, T0 + dt.timedelta(seconds=1)),
                     ("other-model", 10, "e1", None), ("other-labels", 10, "e1", None),
                     ("no-fingerprint", None, None, None), ("never-indexed", 10, "e1", None))
    keep = dict(zip(inputs.column("video_id").to_pylist(), changed_mask(inputs, indexed, model_id="m",
                                                                          label_set="l")))
    assert [k for k, v in keep.items() if not v] == ["same-etag", "same-mtime"]


@pytest.fixture(scope="module")
def ray_session():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_rerun_skips_unchanged_and_processes_new_changed_and_failed(ray_session, tmp_path):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    model = str(write_random_checkpoint(tmp_path / "model", preset="tiny", num_frames=4))
    videos = tmp_path / "videos"
    for name, n in (("a.mp4", 60), ("b.mp4", 45), ("c.mkv", 30)):
        write_video(videos / name, num_frames=n, width=48, height=40, fps=15)
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = str(tmp_path / "out")
    opts = {"encoder": {"batch_size": 4}, "writer": {"skip_unchanged": True}}

    first = index_videos(str(videos), out, model, run_id="r1", **opts)
    assert first.counts == {"ok": 3, "failed": 1, "skipped": 0} and first.num_unchanged == 0
    segments_before = read_lance(out, schemas.SEGMENTS_TABLE).num_rows

    second = index_videos(str(videos), out, model, run_id="r2", **opts)
    assert second.num_unchanged == 3 and second.counts == {"ok": 0, "failed": 1, "skipped": 0}
    assert second.num_segments == 0
    rows = {os.path.basename(v["uri"]): v for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()}
    assert len(rows) == 4 and rows["a.mp4"]["run_id"] == "r1" and rows["broken.mp4"]["run_id"] == "r2"
    assert read_lance(out, schemas.SEGMENTS_TABLE).num_rows == segments_before

    write_video(videos / "b.mp4", num_frames=90, width=48, height=40, fps=15)  # changed: 6 s instead of 3 s
    write_video(videos / "d.webm", num_frames=30, width=32, height=32, fps=15, codec="libvpx-vp9")  # new
    third = index_videos(str(videos), out, model, run_id="r3", **opts)
    assert third.num_unchanged == 2 and third.counts == {"ok": 2, "failed": 1, "skipped": 0}
    rows = {os.path.basename(v["uri"]): v for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()}
    assert len(rows) == 5
    assert {k: v["run_id"] for k, v in rows.items()} == {"a.mp4": "r1", "c.mkv": "r1", "b.mp4": "r3",
                                                         "d.webm": "r3", "broken.mp4": "r3"}
    assert rows["b.mp4"]["num_segments"] == 3 and rows["b.mp4"]["duration_s"] > 5
    segs = read_lance(out, schemas.SEGMENTS_TABLE).to_pylist()
    assert sum(1 for s in segs if s["video_id"] == rows["b.mp4"]["video_id"]) == 3

    # without the flag everything runs again
    full = index_videos(str(videos), out, model, run_id="r4", encoder={"batch_size": 4})
    assert full.num_unchanged == 0 and full.counts == {"ok": 4, "failed": 1, "skipped": 0}
