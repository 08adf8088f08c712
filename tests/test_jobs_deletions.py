"""Deletion guards (jobs.deletions) and the listing they rely on (jobs.reader), on real LanceDB and Ray:
a shrunken, empty or broken listing never deletes indexed videos."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

import schemas
from jobs.config import ConfigError, ReaderConfig, WriterConfig
from jobs.reader import list_inputs
from jobs.runner import index_videos
from tests.conftest import own_ray
from tests.jobs_helpers import read_lance

pytestmark = pytest.mark.slow

NAMES = [f"v{i}.mp4" for i in range(6)] + ["sub/s0.mp4", "sub/s1.mp4"]
OPTS = {"encoder": {"batch_size": 4}, "decoder": {"thumbnails": False}}
CLI = str(Path(sys.executable).parent / "xclip-index")


@pytest.fixture(scope="module")
def ray_session(s3_server):
    with own_ray():
        yield


@pytest.fixture(scope="module")
def base(ray_session, tmp_path_factory):
    """8 videos (2 in a sub-folder) indexed once; each test copies the output and moves videos away."""
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    root = tmp_path_factory.mktemp("deletions")
    model = str(write_random_checkpoint(root / "model", preset="tiny", num_frames=4))
    videos = root / "videos"
    for name in NAMES:
        write_video(videos / name, num_frames=15, width=32, height=32, fps=15)
    out = root / "base-out"
    summary = index_videos(str(videos), str(out), model, run_id="base", **OPTS)
    assert summary.counts["ok"] == len(NAMES)
    return {"root": root, "model": model, "videos": videos, "out": out, "stash": root / "stash"}


@pytest.fixture
def index(base, tmp_path):
    """A copy of the base output; videos moved away by the test come back afterwards."""
    out = tmp_path / "out"
    shutil.copytree(base["out"], out)
    moved: list[str] = []

    def move_away(*names):
        for n in names:
            dst = base["stash"] / n
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(base["videos"] / n, dst)
            moved.append(n)

    yield {**base, "out": str(out), "move_away": move_away}
    for n in moved:
        shutil.move(base["stash"] / n, base["videos"] / n)


def _state(out):
    videos = read_lance(out, schemas.VIDEOS_TABLE).to_pylist()
    return sorted((v["uri"].rsplit("/", 1)[-1], v["status"]) for v in videos), \
        read_lance(out, schemas.SEGMENTS_TABLE).num_rows


def test_a_shrunken_listing_is_refused_and_deletes_nothing(index):
    before = _state(index["out"])
    index["move_away"](*NAMES[1:])  # 7 of 8 gone: a wrong prefix or a half-mounted share
    from jobs.deletions import DeletionRefused

    with pytest.raises(DeletionRefused, match="--max-delete-share") as e:
        index_videos(str(index["videos"]), index["out"], index["model"], run_id="shrunk", **OPTS)
    assert "7 of the 8" in str(e.value) and "\n" not in str(e.value)
    assert _state(index["out"]) == before  # every video and segment still there


def test_the_cli_names_the_override_in_one_line_and_the_override_deletes(index):
    index["move_away"](*NAMES[1:])
    args = [CLI, "run", "--input", str(index["videos"]), "--output", index["out"], "--model", index["model"],
            "--no-thumbnails", "--run-id", "cli-shrunk"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("xclip-index: error:")]
    assert p.returncode == 6 and len(lines) == 1 and "--max-delete-share 1" in lines[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert len(_state(index["out"])[0]) == len(NAMES)
    summary = index_videos(str(index["videos"]), index["out"], index["model"], run_id="allowed",
                           writer={"max_delete_share": 1.0}, **OPTS)
    assert summary.counts["deleted"] == 7
    assert _state(index["out"])[0] == [("v0.mp4", "ok")]


def test_an_empty_listing_deletes_nothing(index):
    before = _state(index["out"])
    index["move_away"](*NAMES)  # an unmounted share: the folder is there, empty
    summary = index_videos(str(index["videos"]), index["out"], index["model"], run_id="empty",
                           writer={"max_delete_share": 1.0}, **OPTS)
    assert summary.counts["deleted"] == 0
    assert _state(index["out"]) == before


def test_an_unreadable_folder_is_reported_and_deletes_nothing(index, monkeypatch):
    before = _state(index["out"])
    sub = str(index["videos"] / "sub")
    real_scandir = os.scandir

    def scandir(path="."):  # exact fault point: reading the sub-folder fails (root ignores chmod)
        if os.fspath(path) == sub:
            raise PermissionError(13, "Permission denied", sub)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    summary = index_videos(str(index["videos"]), index["out"], index["model"], run_id="unreadable",
                           writer={"max_delete_share": 1.0}, **OPTS)
    monkeypatch.undo()
    assert summary.counts["deleted"] == 0 and summary.counts["unchanged"] == 6
    assert _state(index["out"]) == before  # sub/s0, sub/s1 were not listed, yet kept
    with open(os.path.join(index["out"], "runs", "unreadable.json")) as f:
        errors = json.load(f)["listing_errors"]
    assert len(errors) == 1 and sub in errors[0] and "Permission denied" in errors[0]


def test_a_file_that_cannot_be_stated_is_reported_and_deletes_nothing(index):
    before = _state(index["out"])
    index["move_away"]("v5.mp4")
    os.symlink(index["root"] / "nowhere.mp4", index["videos"] / "dangling.mp4")
    try:
        errors: list[str] = []
        listed = list_inputs(ReaderConfig(inputs=(str(index["videos"]),)), errors=errors)
        assert listed.num_rows == 7 and len(errors) == 1 and "dangling.mp4" in errors[0]
        summary = index_videos(str(index["videos"]), index["out"], index["model"], run_id="dangling",
                               writer={"max_delete_share": 1.0}, **OPTS)
    finally:
        os.remove(index["videos"] / "dangling.mp4")
    assert summary.counts["deleted"] == 0
    assert _state(index["out"]) == before


def test_symlink_loops_and_links_list_each_file_once(tmp_path):
    d = tmp_path / "in"
    (d / "a" / "b").mkdir(parents=True)
    for p in ("x.mp4", "a/y.mp4", "a/b/z.mp4"):
        (d / p).write_bytes(b"v")
    os.symlink(d, d / "a" / "b" / "loop")  # a folder loop
    os.symlink(d / "a", d / "also-a")  # a second path to a folder
    os.symlink(d / "x.mp4", d / "a" / "x-link.mp4")  # a second path to a file
    os.link(d / "x.mp4", d / "x-hard.mp4")  # and a hard link
    errors: list[str] = []
    t = list_inputs(ReaderConfig(inputs=(str(d),)), errors=errors)
    names = sorted(u.rsplit("/", 1)[-1] for u in t.column("uri").to_pylist())
    assert names == ["x-hard.mp4", "y.mp4", "z.mp4"] and errors == []  # x: its first path in sorted order


def test_max_delete_share_is_validated_up_front(tmp_path):
    for bad in (-0.1, 1.5, "all", True):
        with pytest.raises(ConfigError, match="max_delete_share"):
            WriterConfig(output=str(tmp_path), max_delete_share=bad)


def test_s3_prefix_shrunk_is_refused(base, s3_server, s3_bucket):
    from jobs.deletions import DeletionRefused

    s3 = boto3.client("s3", endpoint_url=s3_server)
    for n in NAMES[:4]:
        s3.upload_file(str(base["videos"] / n), s3_bucket, f"in/{n}")
    out = f"s3://{s3_bucket}/index"
    assert index_videos(f"s3://{s3_bucket}/in/", out, base["model"], run_id="s3", **OPTS).counts["ok"] == 4
    for n in NAMES[1:4]:
        s3.delete_object(Bucket=s3_bucket, Key=f"in/{n}")
    with pytest.raises(DeletionRefused, match="3 of the 4"):
        index_videos(f"s3://{s3_bucket}/in/", out, base["model"], run_id="s3-shrunk", **OPTS)
    assert len(read_lance(out, schemas.VIDEOS_TABLE)) == 4
    s3.delete_object(Bucket=s3_bucket, Key=f"in/{NAMES[0]}")  # a prefix listing nothing deletes nothing
    summary = index_videos(f"s3://{s3_bucket}/in/", out, base["model"], run_id="s3-empty",
                           writer={"max_delete_share": 1.0}, **OPTS)
    assert summary.counts["deleted"] == 0 and len(read_lance(out, schemas.VIDEOS_TABLE)) == 4


def test_marked_deleted_videos_are_not_similar_results(index):
    from xclip_search import open_index

    index["move_away"]("v5.mp4")
    summary = index_videos(str(index["videos"]), index["out"], index["model"], run_id="mark",
                           writer={"on_deleted": "mark", "max_delete_share": 1.0}, **OPTS)
    assert summary.counts["deleted"] == 1
    rows = {v["uri"].rsplit("/", 1)[-1]: v for v in read_lance(index["out"], schemas.VIDEOS_TABLE).to_pylist()}
    assert rows["v5.mp4"]["status"] == "deleted"
    hits = open_index(index["out"]).similar(rows["v0.mp4"]["video_id"]).limit(20).to_arrow()
    ids = hits.column("video_id").to_pylist()
    assert len(ids) == len(NAMES) - 1 and rows["v5.mp4"]["video_id"] not in ids
