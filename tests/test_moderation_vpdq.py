"""vPDQ both ways: ``xclip-index hash --out s3://.../ URI...`` writes ``<stem>.vpdq`` files in
the vPDQ text format, with hashes equal to reference PDQ (``pdqhash``) on the frames PyAV
decodes independently; a blocklist prefix mixing such files, a video and a ``.pdq`` list is
loaded and matched (the .vpdq item finds a mirrored copy through the upload's mirror hash)."""
from __future__ import annotations

import re

import numpy as np
import pdqhash
import pytest

from tests.moderation_helpers import encode, rich_frames
from xclip_core import storage

LINE = re.compile(r"^(\d+),([0-9a-f]{64}),(\d{1,3}),(\d+\.\d{3})$")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("vpdq")
    return {"bad1": encode(root / "src" / "bad1.mp4", rich_frames(1)),
            "bad2": encode(root / "src2" / "bad2.webm", rich_frames(2), codec="libvpx-vp9",
                           options={"crf": "30", "b:v": "0"}),
            "mirror1": encode(root / "up" / "mirror1.mp4", rich_frames(1)[:, :, ::-1]),
            # no B-frames: the decoder's hook sees the frame at each whole second exactly
            "with_frame3": encode(root / "up" / "with_frame3.mp4", np.concatenate([rich_frames(11, 40),
                                  rich_frames(3, 40)]), options={"x264-params": "bframes=0:log-level=none"}),
            "other": encode(root / "up" / "other.mp4", rich_frames(12)), "root": root}


def _reference_lines(uri):
    """Reference PDQ of the frame each line names, decoded here with PyAV directly."""
    import av

    with av.open(uri) as c:
        return [pdqhash.compute(np.ascontiguousarray(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]


def test_hash_command_writes_vpdq_files_equal_to_reference(videos, s3_server, s3_bucket, capsys):
    from xclip_cli import main

    out = f"s3://{s3_bucket}/shared/"
    assert main(["hash", "--out", out, "--every-s", "1", videos["bad1"], str(videos["root"] / "src2")]) == 0
    text = storage.read_bytes(out + "bad1.vpdq").decode()
    lines = [LINE.match(ln) for ln in text.splitlines()]
    assert len(lines) == 8 and all(lines), text[:200]
    ref = _reference_lines(videos["bad1"])
    for k, m in enumerate(lines):
        frame, hx, q, t = int(m[1]), m[2], int(m[3]), float(m[4])
        assert frame == 10 * k and t == float(k)  # 10 fps: the first frame at or after each second
        rh, rq = ref[frame]
        assert hx == bytes(np.packbits(np.asarray(rh, np.uint8))).hex() and q == rq
    assert storage.exists(out + "bad2.vpdq") and len(capsys.readouterr().out.splitlines()) == 2
    assert main(["hash", "--out", out, videos["bad1"]]) == 0  # default: every frame, as the vPDQ tool
    lines = [LINE.match(ln) for ln in storage.read_bytes(out + "bad1.vpdq").decode().splitlines()]
    assert [int(m[1]) for m in lines] == list(range(80)) and [float(m[4]) for m in lines] == [k / 10 for k in range(80)]
    assert all(m[2] == bytes(np.packbits(np.asarray(ref[k][0], np.uint8))).hex() for k, m in enumerate(lines))
    # errors: one line, non-zero
    assert main(["hash", "--out", out, str(videos["root"] / "missing.mp4")]) == 4
    err = capsys.readouterr().err
    assert err.startswith("xclip-index: error: hash: ") and "missing.mp4" in err and err.count("\n") == 1


def test_blocklist_prefix_mixing_vpdq_video_and_pdq(videos, s3_server, s3_bucket):
    import boto3

    from xclip_cli import main
    from moderation.blocklist import load_blocklist
    from xclip_core.pdq import pdq, to_hex
    from xclip_core.video import DecodeConfig, decode_video

    prefix = f"s3://{s3_bucket}/list/"
    assert main(["hash", "--out", prefix, videos["bad1"]]) == 0            # a shared .vpdq
    s3 = boto3.client("s3", endpoint_url=s3_server)
    s3.upload_file(videos["bad2"], s3_bucket, "list/videos/bad2.webm")   # a video
    frame3 = rich_frames(3, 40)[20]                          # an image hash (.pdq): the upload's 6th second
    s3.put_object(Bucket=s3_bucket, Key="list/images.pdq", Body=f"{to_hex(pdq(frame3)[0])},img-3\n".encode())
    bl = load_blocklist(prefix)
    assert sorted((i.id, i.kind) for i in bl.items) == [("bad1", "vpdq"), ("bad2.webm", "video"), ("img-3", "image")]

    def match(uri):
        r = decode_video(uri, DecodeConfig(crop_size=32, shortest_edge=32, frames_per_clip=4, max_clips_per_video=None))
        return bl.match(r.frame_hashes)

    (m,) = match(videos["mirror1"])  # the .vpdq item has no dihedral hashes: the upload's mirror finds it
    assert m.item_id == "bad1" and m.mode == "mirror" and m.matched_s >= 6
    (m,) = match(videos["with_frame3"])
    assert m.item_id == "img-3" and m.start_s == 6.0 and m.matched_s == 1 and m.best_distance <= 20
    assert match(videos["other"]) == []
    assert [m.item_id for m in match(videos["bad2"])] == ["bad2.webm"]
