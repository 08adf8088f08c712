"""The job with ``[decoder] segments = "shots"`` end to end (real Ray, real LanceDB): shots in the
outputs, shots as a unit of search, the schema "3" -> "4" migration, and reruns when the mode changes."""
from __future__ import annotations

import os

import numpy as np
import pytest

import schemas
from jobs.runner import index_videos
from tests.jobs_helpers import open_lance_table, read_lance


@pytest.fixture(scope="module")
def ray_session():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _rows(out, table):
    return {os.path.basename(r["uri"]): r for r in read_lance(out, table).to_pylist()}


@pytest.mark.slow
def test_shots_outputs_search_migration_and_reruns(ray_session, tmp_path):
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth_shots import ShotSpec, write_shots
    from xclip_search import open_index

    model = str(write_random_checkpoint(tmp_path / "model", preset="tiny", num_frames=4))
    videos = tmp_path / "videos"
    cuts = write_shots(videos / "multi.mp4", [ShotSpec(2.4, 2, 1), ShotSpec(2.2, 30, 2), ShotSpec(1.2, 2, 3)],
                       fps=25, width=128, height=72)
    write_shots(videos / "one.mp4", [ShotSpec(2.6, 20, 4)], fps=25, width=128, height=72)
    out = str(tmp_path / "out")
    opts = {"encoder": {"batch_size": 4}, "decoder": {"thumbnails": False}}
    shots = {"encoder": {"batch_size": 4}, "decoder": {"thumbnails": False, "segments": "shots"}}

    first = index_videos(str(videos), out, model, run_id="r1", **opts)
    assert first.counts["ok"] == 2
    # make it an output of schema "3": no videos.shots, no segments.shot_index
    for name, col in (("videos", "shots"), ("segments", "shot_index")):
        open_lance_table(out, name).drop_columns([col])
    assert "shots" not in read_lance(out, "videos").column_names

    # a fixed rerun keeps every video (same processing ids), migrates the tables, and search still works
    again = index_videos(str(videos), out, model, run_id="r2", **opts)
    assert again.counts["ok"] == 0 and again.num_unchanged == 2
    schemas.check_table(read_lance(out, "videos"), schemas.videos_schema(read_lance(out, "videos")
                                                                         .schema.field("embedding").type.list_size))
    assert read_lance(out, "segments").column("shot_index").null_count == read_lance(out, "segments").num_rows
    idx = open_index(out)
    vec = np.asarray(read_lance(out, "segments").column("embedding")[0].as_py(), np.float32)
    assert len(idx.search(vec).limit(3).to_list()) == 3
    with pytest.raises(ValueError, match="--segments shots"):
        idx.search(vec).per_shot()

    # segments = "shots": a new processing identity, every video runs again
    s1 = index_videos(str(videos), out, model, run_id="r3", **shots)
    assert s1.counts["ok"] == 2 and s1.num_unchanged == 0
    v = _rows(out, "videos")
    found = [s["start_s"] for s in v["multi.mp4"]["shots"][1:]]
    assert len(found) == len(cuts) and all(abs(f - c) <= 0.2 for f, c in zip(found, cuts))
    assert len(v["one.mp4"]["shots"]) == 1
    segs = [s for s in read_lance(out, "segments").to_pylist() if s["run_id"] == "r3"]
    assert len(segs) == read_lance(out, "segments").num_rows  # the fixed run's segments are gone
    by_vid = {r["video_id"]: r for r in v.values()}
    for s in segs:  # no segment spans a cut
        span = by_vid[s["video_id"]]["shots"][s["shot_index"]]
        assert span["start_s"] - 1e-6 <= s["start_s"] < s["end_s"] <= span["end_s"] + 1e-6
    # shots table: one row per shot, its embedding the normalised mean of its segments' embeddings
    shot_rows = read_lance(out, "shots").to_pylist()
    assert len(shot_rows) == sum(len(r["shots"]) for r in v.values())
    for row in shot_rows:
        mine = [np.asarray(s["embedding"]) for s in segs
                if s["video_id"] == row["video_id"] and s["shot_index"] == row["shot_index"]]
        assert row["num_segments"] == len(mine) >= 1
        mean = np.mean(mine, axis=0)
        np.testing.assert_allclose(row["embedding"], mean / np.linalg.norm(mean), atol=1e-5)
        span = by_vid[row["video_id"]]["shots"][row["shot_index"]]
        assert (row["start_s"], row["end_s"]) == (span["start_s"], span["end_s"])

    # per_shot search returns shot ranges, best first
    target = next(r for r in shot_rows if r["shot_index"] == 1)
    hits = open_index(out).search(np.asarray(target["embedding"], np.float32)).per_shot().limit(10).to_list()
    assert hits[0]["shot_id"] == target["shot_id"] and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert (hits[0]["start_s"], hits[0]["end_s"]) == (target["start_s"], target["end_s"])
    assert len(hits) == len(shot_rows) and "segment_id" not in hits[0]

    # same mode: unchanged; back to fixed: reprocessed, and the stale shots rows are not returned
    assert index_videos(str(videos), out, model, run_id="r4", **shots).num_unchanged == 2
    back = index_videos(str(videos), out, model, run_id="r5", **opts)
    assert back.counts["ok"] == 2 and back.num_unchanged == 0
    assert all(r["shots"] is None for r in _rows(out, "videos").values())
    assert read_lance(out, "segments").column("shot_index").null_count == read_lance(out, "segments").num_rows
    assert open_index(out).search(np.asarray(target["embedding"], np.float32)).per_shot().to_list() == []


def test_shot_rows_are_the_mean_per_shot():
    """jobs.shot_rows alone: a shot without clips (unread end of a partial video) has a null embedding."""
    from jobs.labeler import Labeler
    from jobs.shot_rows import shot_rows

    emb = np.asarray([[1, 0, 0], [0, 1, 0], [0, 0, 2]], np.float32)
    probs = np.asarray([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]], np.float32)
    clips = [{"shot_index": 0}, {"shot_index": 0}, {"shot_index": 1}]
    status = {"video_id": "v", "uri": "/v.mp4",
              "shots": [{"start_s": 0.0, "end_s": 2.0}, {"start_s": 2.0, "end_s": 3.0}, {"start_s": 3.0, "end_s": 3.5}]}
    import datetime as dt

    base = {"model_id": "m", "label_set": "l", "run_id": "r", "indexed_at": dt.datetime.now(dt.timezone.utc)}
    name, t = shot_rows(status, clips, emb, probs, Labeler(("a", "b"), 1), 3, base)
    assert name == "shots" and t.column("shot_id").to_pylist() == ["v:000000", "v:000001", "v:000002"]
    got = t.column("embedding").to_pylist()
    np.testing.assert_allclose(got[0], [2 ** -0.5, 2 ** -0.5, 0], atol=1e-6)
    np.testing.assert_allclose(got[1], [0, 0, 1])
    assert got[2] is None and t.column("num_segments").to_pylist() == [2, 1, 0]
    assert t.column("labels").to_pylist() == [["a"], ["b"], None]


def test_cli_segments_flag_and_config_errors(capsys):
    """``--segments`` reaches the DecodeConfig; an impossible combination is one config error (exit 2)."""
    from xclip_cli import main
    from xclip_cli.cli import parser as _parser
    from xclip_cli.run import config_from_args
    from jobs.config import ConfigError

    base = ["run", "--input", "/v/", "--output", "/o", "--model", "m"]
    assert config_from_args(_parser().parse_args(base)).decoder.decode.segments == "fixed"
    cfg = config_from_args(_parser().parse_args(base + ["--segments", "shots"]))
    assert cfg.decoder.decode.segments == "shots" and cfg.decoder.decode.nvdec_share == 0.0
    with pytest.raises(ConfigError, match="decoder.segments: 'shots' needs sampler"):
        config_from_args(_parser().parse_args(base + ["--segments", "shots", "--sampler", "tsn"]))
    assert main(base + ["--segments", "shots", "--max-clips-per-video", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xclip-index: error: decoder.segments:")

