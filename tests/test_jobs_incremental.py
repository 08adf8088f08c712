"""Incremental reindex (the default): unchanged inputs are kept, the rest runs, gone videos leave."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os

import pyarrow as pa
import pytest

import schemas
from jobs.config import EncoderConfig, ReaderConfig
from jobs.incremental import changed_mask, gone_videos, processing_id
from jobs.runner import index_videos
from schemas.stream import INPUT_SCHEMA
from tests.jobs_helpers import read_lance
from tests.test_jobs_report import report_counts

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _inputs(*rows):
    return pa.Table.from_pylist([dict(video_id=v, uri=f"s3://b/{v}", source_size=s, source_etag=e, source_mtime=m,
                                      status=None, error=None) for v, s, e, m in rows], schema=INPUT_SCHEMA)


def _indexed(*rows):
    return pa.Table.from_pylist([dict(video_id=v, uri=f"s3://b/{v}", status=st, processing_id=p, source_size=s,
                                      source_etag=e, source_mtime=m) for v, st, p, s, e, m in rows])


def test_changed_mask_compares_processing_identity_status_and_fingerprint():
    indexed = _indexed(("same-etag", "ok", "p", 10, "e1", None), ("new-etag", "ok", "p", 10, "e1", None),
                       ("new-size", "ok", "p", 10, "e1", None), ("same-mtime", "ok", "p", 5, None, T0),
                       ("new-mtime", "ok", "p", 5, None, T0), ("other-processing", "ok", "p2", 10, "e1", None),
                       ("was-failed", "failed", "p", 10, "e1", None), ("half-done", "indexing", "p", 10, "e1", None),
                       ("no-fingerprint", "ok", "p", 10, "e1", None))
    inputs = _inputs(("same-etag", 10, "e1", None), ("new-etag", 10, "e2", None), ("new-size", 11, "e1", None),
                     ("same-mtime", 5, None, T0), ("new-mtime", 5, None, T0 + dt.timedelta(seconds=1)),
                     ("other-processing", 10, "e1", None), ("was-failed", 10, "e1", None),
                     ("half-done", 10, "e1", None), ("no-fingerprint", None, None, None),
                     ("never-indexed", 10, "e1", None))
    keep = dict(zip(inputs.column("video_id").to_pylist(), changed_mask(inputs, indexed, processing_id="p")))
    assert [k for k, v in keep.items() if not v] == ["same-etag", "same-mtime"]


def test_processing_id_changes_with_every_part():
    @dataclasses.dataclass(frozen=True)
    class Info:
        weights_sha256: str = "w"
        label_set_sha256: str = "l"

    @dataclasses.dataclass(frozen=True)
    class Decode:
        window_s: float = 2.0
        sampler: str = "fixed"

    enc = EncoderConfig(model="m")
    base = processing_id(Info(), Decode(), enc)
    variants = [processing_id(Info(weights_sha256="w2"), Decode(), enc),
                processing_id(Info(), Decode(window_s=1.0), enc),
                processing_id(Info(), Decode(sampler="tsn"), enc),
                processing_id(Info(), Decode(), dataclasses.replace(enc, precision="fp16")),
                processing_id(Info(), Decode(), dataclasses.replace(enc, prompt_template="a video of {}")),
                processing_id(Info(), Decode(), enc, outputs={"prompt_features": True}),
                processing_id(Info(), Decode(), enc, outputs={"policy": "sha256:1"}),
                processing_id(Info(), Decode(), enc, outputs={"policy": "sha256:2"})]
    assert processing_id(Info(), Decode(), enc) == base
    # not the label set: one per output (jobs.labelset), changed by relabel without decoding
    assert processing_id(Info(label_set_sha256="l2"), Decode(), enc) == base
    assert len({base, *variants}) == 1 + len(variants)


# processing_id of the DecodeConfig the runner builds (jobs.decoder.decode_config) from these [decoder]
# settings, model geometry (frames_per_clip, crop_size, shortest_edge) = (8, 224, 224) unless given.
# The hex values were produced by the pre-refactor code (two decode configs: jobs.config.DecoderConfig
# copied into xclip_core.video.DecodeConfig), commit 'main' 40f9539 at the time. If they change,
# every existing index reprocesses all its videos; a ROWS_VERSION bump changes them on purpose. Changed
# on purpose once more when the label set left the identity (issue 15: one label set per index).
PINNED_PROCESSING_IDS = [
    ({}, None, "85279ecc60a0767d"),
    ({"sampler": "tsn", "window_s": 4.0, "stride_s": 1.0}, None, "de4f9e036800e58c"),
    ({"max_clips_per_video": 16, "max_duration_s": 600.0, "timeout_s": 60.0, "max_pixels": 2073600}, None,
     "07418d7b04f06b4c"),
    ({"nvdec_share": 0.0, "num_threads": 2, "approximate": True}, None, "b8b19e1c3d907954"),
    ({"num_cpus": 2.0, "memory_mb": 2048, "thumbnails": False, "cpu_clips_per_s": 30.0, "breaker_first_n": 0},
     None, "85279ecc60a0767d"),  # job-only settings: same identity as the defaults
    ({"nvdec_share": 0.5}, None, "bd2292683df43f5b"),
    ({"timeout_s": None}, None, "47c0acace5ef2d04"),  # no decoder timeout (programmatic only)
    ({}, (16, 224, 256), "a38283a1c4cb2d2f"),
    ({}, (8, 224, 200), "85279ecc60a0767d"),  # shortest edge below the crop: raised to the crop
]


@pytest.mark.parametrize("settings, geometry, expected", PINNED_PROCESSING_IDS)
def test_processing_id_is_stable_across_the_decoder_config_refactor(settings, geometry, expected):
    from types import SimpleNamespace

    from jobs.config import DecoderConfig, build_config
    from jobs.decoder import decode_config

    info = SimpleNamespace(weights_sha256="w" * 64, label_set_sha256="l" * 64)
    frames, crop, edge = geometry or (8, 224, 224)
    base = {"reader": {"inputs": ["/v"]}, "encoder": {"model": "m"}, "writer": {"output": "/o"}}
    if None in settings.values():  # TOML has no null and a None override means "not given"
        decoder, encoder = DecoderConfig.from_settings(**settings), EncoderConfig(model="m")
    else:
        cfg = build_config({"decoder": settings}, base)
        decoder, encoder = cfg.decoder, cfg.encoder
    dcfg = decode_config(decoder, frames_per_clip=frames, crop_size=crop, shortest_edge=edge)
    assert processing_id(info, dcfg, encoder) == expected


def test_deletions_only_within_the_runs_folder_inputs(tmp_path):
    (tmp_path / "cams").mkdir()
    indexed = pa.Table.from_pylist([
        {"video_id": "kept", "uri": f"{tmp_path}/cams/a.mp4", "status": "ok"},
        {"video_id": "gone", "uri": f"{tmp_path}/cams/b.mp4", "status": "ok"},
        {"video_id": "gone-failed", "uri": f"{tmp_path}/cams/sub/c.mkv", "status": "failed"},
        {"video_id": "other-prefix", "uri": f"{tmp_path}/camsX/d.mp4", "status": "ok"},
        {"video_id": "excluded", "uri": f"{tmp_path}/cams/tmp.mp4", "status": "ok"},
        {"video_id": "not-a-video-ext", "uri": f"{tmp_path}/cams/e.txt", "status": "ok"},
        {"video_id": "s3", "uri": "s3://b/cams/f.mp4", "status": "ok"},
        {"video_id": "already", "uri": f"{tmp_path}/cams/g.mp4", "status": "deleted"}])
    listed = _inputs(("kept", 1, None, T0))
    cfg = ReaderConfig(inputs=(str(tmp_path / "cams"),), exclude=("*/tmp.mp4",))
    assert gone_videos(indexed, listed, cfg) == ["gone", "gone-failed"]
    assert gone_videos(indexed, listed, ReaderConfig(inputs=("s3://b/cams/",))) == ["s3"]
    assert gone_videos(indexed, listed, ReaderConfig(inputs=("s3://b/cams",))) == []  # no slash: no scope
    assert gone_videos(indexed, listed, ReaderConfig(inputs=(str(tmp_path / "list.txt"),))) == []


@pytest.fixture(scope="module")
def ray_session():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # our own, never a `ray start` head nearby
    yield
    ray.shutdown()


def _manifest(out, run_id):
    with open(os.path.join(out, "runs", f"{run_id}.json")) as f:
        return json.load(f)


def _check_counts(out, summary):
    m = _manifest(out, summary.run_id)
    c = m["counts"]
    assert c["ok"] + c["failed"] + c["skipped"] + c["unchanged"] == m["num_inputs"] == summary.num_inputs
    assert m["status"] == "finished" and c == summary.counts
    with open(os.path.join(out, "runs", f"{summary.run_id}.html")) as f:
        assert report_counts(f.read()) == c  # the HTML report beside the manifest agrees
    return c


@pytest.mark.slow
def test_rerun_keeps_unchanged_and_handles_new_changed_failed_gone(ray_session, tmp_path):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    model = str(write_random_checkpoint(tmp_path / "model", preset="tiny", num_frames=4))
    videos, other = tmp_path / "videos", tmp_path / "other"
    for name, n in (("a.mp4", 60), ("b.mp4", 45), ("c.mkv", 30), ("e.mp4", 30)):
        write_video(videos / name, num_frames=n, width=48, height=40, fps=15)
    write_video(other / "x.mp4", num_frames=30, width=32, height=32, fps=15)
    (videos / "broken.mp4").write_bytes(b"not a video")
    out = str(tmp_path / "out")
    opts = {"encoder": {"batch_size": 4}}

    first = index_videos(str(videos), out, model, run_id="r1", **opts)
    assert _check_counts(out, first) == {"ok": 4, "failed": 1, "skipped": 0, "unchanged": 0, "deleted": 0}
    index_videos(str(other), out, model, run_id="r1b", **opts)  # another folder into the same output
    segments_before = read_lance(out, schemas.SEGMENTS_TABLE).num_rows

    second = index_videos(str(videos), out, model, run_id="r2", **opts)
    assert _check_counts(out, second) == {"ok": 0, "failed": 1, "skipped": 0, "unchanged": 4, "deleted": 0}
    assert second.num_segments == 0
    rows = {os.path.basename(v["uri"]): v for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()}
    assert len(rows) == 6 and rows["a.mp4"]["run_id"] == "r1" and rows["broken.mp4"]["run_id"] == "r2"
    assert rows["x.mp4"]["run_id"] == "r1b"  # the other folder is out of this run's scope
    assert read_lance(out, schemas.SEGMENTS_TABLE).num_rows == segments_before

    write_video(videos / "b.mp4", num_frames=90, width=48, height=40, fps=15)  # changed: 6 s instead of 3 s
    write_video(videos / "d.webm", num_frames=30, width=32, height=32, fps=15, codec="libvpx-vp9")  # new
    os.remove(videos / "e.mp4")  # gone from the source
    # 1 of 5 indexed videos goes: above the default deletion guard (10%, jobs.deletions), so allowed here
    third = index_videos(str(videos), out, model, run_id="r3", writer={"max_delete_share": 0.5}, **opts)
    assert _check_counts(out, third) == {"ok": 2, "failed": 1, "skipped": 0, "unchanged": 2, "deleted": 1}
    rows = {os.path.basename(v["uri"]): v for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()}
    assert {k: v["run_id"] for k, v in rows.items()} == {"a.mp4": "r1", "c.mkv": "r1", "b.mp4": "r3",
                                                         "d.webm": "r3", "broken.mp4": "r3", "x.mp4": "r1b"}
    assert rows["b.mp4"]["num_segments"] == 3 and rows["b.mp4"]["duration_s"] > 5
    segs = read_lance(out, schemas.SEGMENTS_TABLE).to_pylist()
    assert sum(1 for s in segs if s["video_id"] == rows["b.mp4"]["video_id"]) == 3  # no stale segment
    assert {s["video_id"] for s in segs} == {v["video_id"] for v in rows.values() if v["status"] == "ok"}

    # another processing identity (sampler settings) reprocesses everything; --full too
    changed = index_videos(str(videos), out, model, run_id="r4", decoder={"window_s": 1.0}, **opts)
    assert changed.num_unchanged == 0 and changed.counts["ok"] == 4
    full = index_videos(str(videos), out, model, run_id="r5", writer={"full": True}, decoder={"window_s": 1.0},
                        **opts)
    assert _check_counts(out, full) == {"ok": 4, "failed": 1, "skipped": 0, "unchanged": 0, "deleted": 0}

    # "mark" keeps the row of a gone video with status 'deleted' and drops its segments
    os.remove(videos / "d.webm")
    marked = index_videos(str(videos), out, model, run_id="r6", writer={"on_deleted": "mark", "max_delete_share": 0.5},
                          decoder={"window_s": 1.0}, **opts)
    assert marked.counts["deleted"] == 1
    rows = {os.path.basename(v["uri"]): v for v in read_lance(out, schemas.VIDEOS_TABLE).to_pylist()}
    assert rows["d.webm"]["status"] == "deleted"
    assert rows["d.webm"]["video_id"] not in {s["video_id"] for s in read_lance(out, schemas.SEGMENTS_TABLE)
                                              .to_pylist()}
