"""Timestamp sanity (xclip_core.video.meta.rebuilt_index): a file whose frames all carry pts 0 is indexed over
its whole length from the frame rate, flagged in its reason, never as one frame with coverage 1.0."""
from __future__ import annotations

import numpy as np
import pytest

from jobs.assembler import coverage
from xclip_core.video import decode_video
from xclip_core.video.config import DecodeConfig
from xclip_core.video.synth import write_video

FRAMES, FPS = 105, 15  # 7 s
CFG = DecodeConfig(frames_per_clip=4, crop_size=32, shortest_edge=32)


def _all_pts_zero(src, dst):
    """Remux ``src`` with every packet's pts and dts set to 0 (what some broken muxers write)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.size:
                p.pts, p.dts, p.stream = 0, 0, out
                o.mux(p)
    return dst


@pytest.mark.parametrize("ext", ["mkv", "mp4", "ts"])
def test_all_frames_at_pts_zero_are_rebuilt_from_the_frame_rate(tmp_path, ext):
    src = write_video(tmp_path / "src.mkv", num_frames=FRAMES, width=32, height=32, fps=FPS, gop=1)
    bad = _all_pts_zero(src, tmp_path / f"zero.{ext}")
    good, got = decode_video(str(src), CFG), decode_video(str(bad), CFG)
    assert got.status == "ok" and "timestamps rebuilt" in got.reason  # flagged
    assert got.meta.num_frames == FRAMES and got.meta.duration_s == pytest.approx(7.0, rel=0.02)
    assert got.num_clips >= 3
    cov = coverage([(c.start_s, c.end_s) for c in got.clips], got.meta.duration_s)
    assert cov >= 0.8  # of 7 s, not 1.0 of one 0.07 s frame
    for a, b in zip(good.clips, got.clips):  # the same frames as the intact file, in display order
        ia, ib = np.asarray(a.frame_indices), np.asarray(b.frame_indices)
        assert np.abs(ia - ib).max() <= 1  # mkv stores 66 ms for 66.7 ms: a frame off at most
        same = ia == ib
        assert same.any()
        np.testing.assert_array_equal(a.frames[same], b.frames[same])
