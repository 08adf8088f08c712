"""Decode stage on generated videos: indices, timestamps, pixels, broken inputs."""
import threading
import time
import tracemalloc

import numpy as np
import pytest

import video_fixtures as vf
from xclip_core.video import (FAILED, OK, SKIPPED, DecodeConfig, abandoned_decoders, decode_video,
                              iter_clips, probe)
from xclip_core.video import decode as decode_mod
from xclip_core.video.convert import frame_to_crop, rgb_to_crop

try:
    import decord  # noqa: F401  (optional extra `decord`; PyAV is the default backend)
    HAVE_DECORD = True
except ImportError:
    HAVE_DECORD = False
needs_decord = pytest.mark.skipif(not HAVE_DECORD, reason="decord not installed (optional extra `decord`)")

GOOD = ["h264_mp4", "hevc_mkv", "hevc10_mkv", "vp9_webm", "mpeg4_avi", "portrait", "tiny", "one_frame", "vfr",
        "short_clip", "faststart"]


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    return vf.cached(tmp_path_factory.mktemp("videos"))


def reference_frames(path, indices, cfg):
    """Full decode of every frame (no skipping, default threads) + the same crop."""
    import av

    want = set(int(i) for i in indices)
    out = {}
    with av.open(str(path)) as c:
        for j, frame in enumerate(c.decode(video=0)):
            if j in want:
                out[j] = frame_to_crop(frame, cfg.crop_size, cfg.shortest_edge, cfg.interpolation)
    return out


@pytest.mark.parametrize("name", GOOD)
def test_good_videos_decode_exactly(videos, name):
    cfg = DecodeConfig()
    r = decode_video(str(videos[name]), cfg)
    assert r.status == OK and r.reason is None, r.reason
    assert r.clips and r.num_clips == len(r.clips)
    idx = np.concatenate([c.frame_indices for c in r.clips])
    ref = reference_frames(videos[name], idx, cfg)
    for c in r.clips:
        assert c.frames.shape == (8, 224, 224, 3) and c.frames.dtype == np.uint8
        assert np.all(np.diff(c.frame_indices) >= 0)
        for i, j in enumerate(c.frame_indices):
            np.testing.assert_array_equal(c.frames[i], ref[int(j)], err_msg=f"{name} frame {j}")


def test_metadata(videos):
    m = probe(str(videos["h264_mp4"]))
    assert (m.num_frames, m.width, m.height, m.codec) == (75, 320, 240, "h264")
    assert m.duration_s == pytest.approx(2.5) and m.fps == pytest.approx(30.0)
    assert probe(str(videos["portrait"])).width == 180
    assert probe(str(videos["mpeg4_avi"])).fps == pytest.approx(25.0)
    assert probe(str(videos["vp9_webm"])).codec == "vp9"
    assert probe(str(videos["hevc_mkv"])).codec == "hevc"


def test_variable_frame_rate_timestamps_and_duration(videos):
    r = decode_video(str(videos["vfr"]))
    pts = np.asarray(vf.VFR_PTS) / 1000.0
    # duration from timestamps: last pts + last frame duration (not count/avg fps)
    assert r.meta.num_frames == len(pts)
    assert pts[-1] < r.meta.duration_s <= pts[-1] + 0.081
    assert len(r.clips) == 2                   # 4.7 s: [0,2) [2,4) + tail >= 1 s? no: 0.7 s
    for c in r.clips:
        np.testing.assert_allclose(c.timestamps, pts[c.frame_indices], atol=1e-6)
        targets = c.start_s + (np.arange(8) + 0.5) * (c.end_s - c.start_s) / 8
        want = np.searchsorted(pts, targets + 1e-6, side="right") - 1
        np.testing.assert_array_equal(c.frame_indices, want)


def test_fixed_windows_indices_and_timestamps(videos):
    r = decode_video(str(videos["faststart"]))             # 120 frames, 4 s
    assert [c.segment_index for c in r.clips] == [0, 1]
    assert [(c.start_s, c.end_s) for c in r.clips] == [(0.0, 2.0), (2.0, 4.0)]
    for c in r.clips:
        k = c.segment_index
        assert c.frame_indices.tolist() == [60 * k + int(i * 7.5 + 3.75) for i in range(8)]
        np.testing.assert_allclose(c.timestamps, c.frame_indices / 30.0, atol=1e-5)


def test_tsn_and_one_frame(videos):
    r = decode_video(str(videos["h264_mp4"]), DecodeConfig(sampler="tsn"))
    (c,) = r.clips
    assert c.frame_indices.tolist() == [int(i * 75 / 8 + 75 / 16) for i in range(8)]
    (c,) = decode_video(str(videos["one_frame"])).clips
    assert c.frame_indices.tolist() == [0] * 8 and (c.frames == c.frames[0]).all()


@needs_decord
def test_threads_and_decord_backend_agree(videos):
    path = str(videos["h264_mp4"])
    base = decode_video(path)
    threaded = decode_video(path, DecodeConfig(num_threads=2))
    for a, b in zip(base.clips, threaded.clips):
        np.testing.assert_array_equal(a.frames, b.frames)
    for name in ["h264_mp4", "tiny", "portrait"]:
        p = str(videos[name])
        ours, dec = decode_video(p), decode_video(p, DecodeConfig(backend="decord"))
        assert dec.status == OK, dec.reason
        for a, b in zip(ours.clips, dec.clips):
            assert a.frame_indices.tolist() == b.frame_indices.tolist()
            # decord: RGB at native size, then resized from RGB (PyAV: from YUV, so
            # chroma is upsampled differently; 16x16 -> 224 magnifies that 14x)
            diff = np.abs(a.frames.astype(int) - b.frames.astype(int))
            assert diff.mean() < (10.0 if name == "tiny" else 2.0), (name, diff.mean())


@pytest.mark.parametrize("name", ["h264_mp4", "hevc_mkv", "vfr", "faststart"])
def test_approximate_takes_the_nearest_decoded_frame(videos, name):
    path = str(videos[name])
    exact = decode_video(path)
    approx = decode_video(path, DecodeConfig(approximate=True))
    assert approx.status == OK and len(approx.clips) == len(exact.clips)
    idx = np.concatenate([c.frame_indices for c in approx.clips])
    ref = reference_frames(path, idx, DecodeConfig())
    for a, e in zip(approx.clips, exact.clips):
        assert np.abs(a.frame_indices - e.frame_indices).max() <= 2
        if name == "vfr":
            want = (np.asarray(vf.VFR_PTS) / 1000.0)[a.frame_indices]
        else:
            want = a.frame_indices / 30.0
        np.testing.assert_allclose(a.timestamps, want, atol=1e-3)
        for i, j in enumerate(a.frame_indices):            # real frames, reported honestly
            np.testing.assert_array_equal(a.frames[i], ref[int(j)])


def test_without_usable_timestamps_every_frame_is_decoded(videos, monkeypatch):
    """Packets without unique pts: no skipping, frames indexed in output order."""
    from xclip_core.video import meta as meta_mod

    real = meta_mod.index_stream

    def no_rank(*a, **k):
        idx = real(*a, **k)
        idx.rank_ok = False
        return idx

    monkeypatch.setattr(decode_mod, "index_stream", no_rank)
    path = str(videos["h264_mp4"])
    r = decode_video(path)
    assert r.status == OK
    ref = reference_frames(path, r.clips[0].frame_indices, DecodeConfig())
    for i, j in enumerate(r.clips[0].frame_indices):
        np.testing.assert_array_equal(r.clips[0].frames[i], ref[int(j)])


@needs_decord
def test_against_independent_decord_reference(videos):
    """decord native-size decode of the same indices + the same resize/crop."""
    import decord

    path = str(videos["hevc_mkv"])
    r = decode_video(path)
    idx = r.clips[0].frame_indices.tolist()
    rgb = decord.VideoReader(path, num_threads=1).get_batch(idx).asnumpy()
    for i in range(len(idx)):
        ref = rgb_to_crop(rgb[i], 224, 224)
        assert np.abs(ref.astype(int) - r.clips[0].frames[i].astype(int)).mean() < 2.0


BAD = [
    ("zero", FAILED, "empty file"),
    ("random", FAILED, "cannot open container"),
    ("text", FAILED, "cannot open container"),
    ("truncated", FAILED, "cannot open container"),
    ("audio_only", SKIPPED, "no video stream"),
    ("unknown_codec", FAILED, "unsupported codec"),
]


@pytest.mark.parametrize("name,status,reason", BAD)
def test_bad_inputs_are_results_not_crashes(videos, name, status, reason):
    for backend in ("pyav", "decord"):
        r = decode_video(str(videos[name]), DecodeConfig(backend=backend))
        assert r.status == status and reason in r.reason, (backend, r)
        assert r.clips == []


def test_missing_file():
    r = decode_video("/nonexistent/x.mp4")
    assert r.status == FAILED and r.reason == "not found"


def test_partial_reads_are_ok_with_a_reason(videos):
    r = decode_video(str(videos["truncated_faststart"]))
    assert r.status == OK and r.reason.startswith("partial: truncated")
    assert len(r.clips) == 1 and r.meta.duration_s < 4.0
    g = decode_video(str(videos["garbled"]))
    assert g.status == OK and "packets failed to decode" in g.reason
    assert all(c.frames.shape == (8, 224, 224, 3) for c in g.clips)


def test_limits_skip_with_reason(videos):
    p = str(videos["h264_mp4"])
    r = decode_video(p, DecodeConfig(max_duration_s=1.0))
    assert r.status == SKIPPED and r.reason.startswith("too long") and r.meta.num_frames == 75
    r = decode_video(p, DecodeConfig(min_duration_s=3.0))
    assert r.status == SKIPPED and r.reason.startswith("too short")
    r = decode_video(p, DecodeConfig(max_pixels=320 * 200))
    assert r.status == SKIPPED and "resolution over limit" in r.reason
    r = decode_video(p, DecodeConfig(max_width=300))
    assert r.status == SKIPPED and "resolution over limit" in r.reason
    r = decode_video(str(videos["long_lowres"]), DecodeConfig(max_clips_per_video=5))
    assert r.status == OK and len(r.clips) == 5
    assert r.clips[-1].start_s == 78.0


def test_timeout_on_a_hung_decoder(videos, monkeypatch):
    release = threading.Event()

    def hung(*args, **kwargs):                 # stands for a native call that never returns
        release.wait(10)
        return []

    monkeypatch.setattr(decode_mod, "_decode_pyav", hung)
    t0 = time.monotonic()
    r = decode_video(str(videos["h264_mp4"]), DecodeConfig(timeout_s=0.5))
    assert time.monotonic() - t0 < 3
    assert r.status == FAILED and r.reason.startswith("timeout") and r.meta is not None
    assert abandoned_decoders() >= 1
    release.set()


def test_iter_clips_streams_and_reports(videos):
    s = iter_clips(str(videos["long_lowres"]))
    n = 0
    for clip in s:
        n += 1
        if n == 3:
            break
    assert s.result.status == OK and "caller stopped" in s.result.reason
    s = iter_clips(str(videos["faststart"]))
    assert len(list(s)) == 2 and s.result.num_clips == 2 and s.result.reason is None
    assert s.meta.num_frames == 120


def _peak_bytes(path):
    tracemalloc.start()
    n = 0
    for clip in iter_clips(path):
        n += 1
        del clip
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return n, peak


def test_memory_is_bounded_on_a_long_video(videos):
    n_short, short = _peak_bytes(str(videos["faststart"]))   # 2 clips
    n_long, long_ = _peak_bytes(str(videos["long_lowres"]))  # 40 clips
    clip_bytes = 8 * 224 * 224 * 3
    assert (n_short, n_long) == (2, 40)
    # queue (2) + one being filled + one held by the caller, whatever the length
    assert long_ < 6 * clip_bytes, long_
    assert long_ < short + 3 * clip_bytes, (short, long_)


def test_s3_read_through_loopback(videos, s3_bucket):
    import boto3

    from xclip_core import storage

    path = videos["h264_mp4"]
    boto3.client("s3", endpoint_url=storage.endpoint_url()).upload_file(
        str(path), s3_bucket, "v/h264.mp4")
    uri = f"s3://{s3_bucket}/v/h264.mp4"
    local = decode_video(str(path))
    for mode in ("memory", "stream"):
        r = decode_video(uri, DecodeConfig(s3_read=mode))
        assert r.status == OK, (mode, r.reason)
        for a, b in zip(local.clips, r.clips):
            np.testing.assert_array_equal(a.frames, b.frames)
    if HAVE_DECORD:
        r = decode_video(uri, DecodeConfig(backend="decord"))
        assert r.status == OK and len(r.clips) == len(local.clips)
    missing = decode_video(f"s3://{s3_bucket}/nope.mp4")
    assert missing.status == FAILED and missing.reason == "not found"
