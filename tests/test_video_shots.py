"""Shot detection and windows inside shots (xclip_core/video/shots.py, shot_decode.py) on generated
videos with known cuts (xclip_core/video/synth_shots.py)."""
import numpy as np
import pytest

from xclip_core.video import DecodeConfig, decode_video
from xclip_core.video.config import decode_identity
from xclip_core.video.shots import ShotDetector, ShotParams, shot_spans, shot_windows, signature_of_array
from xclip_core.video.synth_shots import ShotSpec, write_shots

FPS = 25


@pytest.fixture(scope="module")
def multi_shot(tmp_path_factory):
    """5 shots: calm, FAST (40 px/frame pan at 320 px wide), short (1 s), FAST, calm."""
    path = tmp_path_factory.mktemp("shots") / "multi.mp4"
    specs = [ShotSpec(3.0, 2, 11), ShotSpec(3.2, 40, 12), ShotSpec(1.0, 1, 13), ShotSpec(4.0, 60, 14),
             ShotSpec(2.6, 3, 15)]
    cuts = write_shots(path, specs, fps=FPS)
    fast = [(3.0, 6.2), (7.2, 11.2)]
    result = decode_video(str(path), DecodeConfig(segments="shots", frames_per_clip=4, crop_size=32,
                                                  shortest_edge=32))
    return path, cuts, fast, result


def test_cuts_are_found_and_fast_motion_does_not_fire(multi_shot):
    _, cuts, fast, r = multi_shot
    assert r.ok and r.reason is None
    found = [a for a, _ in r.shots[1:]]
    assert len(found) == len(cuts) == 4
    for f, c in zip(found, cuts):
        assert abs(f - c) <= 0.2, (found, cuts)
    # nothing fired inside the fast-motion shots (away from their own boundaries)
    assert not [f for f in found for a, b in fast if a + 0.2 < f < b - 0.2]
    assert r.shots[0][0] == 0.0 and r.shots[-1][1] == pytest.approx(r.meta.duration_s)
    assert all(a < b for a, b in r.shots) and all(r.shots[k][1] == r.shots[k + 1][0] for k in range(4))


def test_no_window_spans_a_cut_and_short_shots_get_one_window(multi_shot):
    _, _, _, r = multi_shot
    assert [c.segment_index for c in r.clips] == list(range(len(r.clips)))
    for c in r.clips:
        a, b = r.shots[c.shot_index]
        assert a - 1e-6 <= c.start_s < c.end_s <= b + 1e-6
        assert all(a - 1e-6 <= t < b for t in c.timestamps)  # every sampled frame is from the clip's shot
        assert c.frames.shape == (4, 32, 32, 3)
    by_shot = {}
    for c in r.clips:
        by_shot.setdefault(c.shot_index, []).append((c.start_s, c.end_s))
    assert sorted(by_shot) == list(range(len(r.shots)))  # every shot has a window
    short = r.shots[2]  # the 1 s shot: one window over all of it
    assert by_shot[2] == [pytest.approx(short)]
    long = r.shots[3]  # 4 s: the usual 2 s stride from the shot's start
    assert by_shot[3][:2] == [pytest.approx((long[0], long[0] + 2.0)), pytest.approx((long[0] + 2.0, long[0] + 4.0))]


def test_a_cut_free_video_has_one_shot_and_the_fixed_windows(tmp_path):
    path = tmp_path / "one.mp4"
    assert write_shots(path, [ShotSpec(5.2, 30, 3)], fps=FPS) == []  # one fast-panning shot, no cut
    cfg = DecodeConfig(frames_per_clip=4, crop_size=32, shortest_edge=32)
    shots = decode_video(str(path), cfg.with_(segments="shots"))
    fixed = decode_video(str(path), cfg)
    assert shots.ok and shots.shots == [(0.0, pytest.approx(5.2))]
    assert [(c.start_s, c.end_s) for c in shots.clips] == [(c.start_s, c.end_s) for c in fixed.clips]
    assert {c.shot_index for c in shots.clips} == {0} and fixed.shots is None
    assert all(c.shot_index is None for c in fixed.clips)


def test_a_dissolve_is_not_cut(tmp_path):
    """What the README says: a 1 s cross-fade spreads the change over 25 frames, no peak."""
    from xclip_core.video.synth import write_frames
    from xclip_core.video.synth_shots import shot_frames

    a = list(shot_frames(ShotSpec(3.0, 2, 21), fps=FPS, width=320, height=180))
    b = list(shot_frames(ShotSpec(3.0, 2, 22), fps=FPS, width=320, height=180))
    mix = [(x * (1 - k / 25) + y * (k / 25)).astype(np.uint8) for k, (x, y) in enumerate(zip(a[-25:], b[:25]))]
    write_frames(tmp_path / "d.mp4", a[:-25] + mix + b[25:], fps=FPS)
    r = decode_video(str(tmp_path / "d.mp4"), DecodeConfig(segments="shots", frames_per_clip=2, crop_size=16,
                                                            shortest_edge=16))
    assert r.ok and len(r.shots) == 1


def _sig(seed, shift=0):
    rng = np.random.default_rng(seed)  # a scene: its own palette, random blocks of texture
    base = rng.integers(40, 180, 3)
    blocks = (base + rng.integers(0, 70, (12, 20, 3))).astype(np.uint8)
    img = np.repeat(np.repeat(blocks, 16, 0), 16, 1)
    return signature_of_array(np.roll(img, shift, axis=1))


def test_detector_min_shot_length_and_adaptive_threshold():
    det = ShotDetector(ShotParams(threshold=3.0, min_score=4.0, min_shot_s=0.6))
    times = np.arange(40) / 10
    scene = [0] * 10 + [1] * 3 + [2] * 27  # cut at 1.0 s, another only 0.3 s later (too short: no cut)
    cuts = []
    for t, s in zip(times, scene):
        cuts += det.push(float(t), _sig(s, shift=int(t * 10) % 3))
    cuts += det.finish()
    assert cuts == [pytest.approx(1.0)]
    # fast motion: every frame a big shift of the same scene, then a cut
    det = ShotDetector(ShotParams())
    found = []
    for k in range(30):
        found += det.push(k / 10, _sig(7 if k < 20 else 8, shift=37 * k))
    assert found + det.finish() == [pytest.approx(2.0)]


def test_shot_windows_follow_the_fixed_rule_inside_the_shot():
    assert shot_windows(1.0, 2.5, 2.0, 2.0) == [(1.0, 2.5)]                  # short: one window, whole shot
    assert shot_windows(1.0, 6.0, 2.0, 2.0) == [(1.0, 3.0), (3.0, 5.0), (4.0, 6.0)]  # tail 1 s >= 0.5 window
    assert shot_windows(1.0, 5.4, 2.0, 2.0) == [(1.0, 3.0), (3.0, 5.0)]      # tail 0.4 s dropped
    assert shot_windows(0.0, 4.0, 2.0, 1.0) == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    assert shot_spans([0.0, 2.0, 9.0], 0.0, 5.0) == [(0.0, 2.0), (2.0, 5.0)]


def test_config_is_validated_and_fixed_identity_is_unchanged():
    for bad, match in (({"backend": "decord"}, "backend"), ({"sampler": "tsn"}, "sampler"),
                       ({"max_clips_per_video": 3}, "max_clips_per_video"), ({"nvdec_share": 0.5}, "nvdec_share")):
        with pytest.raises(ValueError, match=f"segments: .*{match}"):
            DecodeConfig(segments="shots", **bad)
    with pytest.raises(ValueError, match="segments: expected one of"):
        DecodeConfig(segments="scenes")
    with pytest.raises(ValueError, match="shot_threshold"):
        DecodeConfig(shot_threshold=1.0)
    fixed = decode_identity(DecodeConfig())
    assert "segments" not in fixed and "shot_threshold" not in fixed
    assert decode_identity(DecodeConfig(segments="shots"))["segments"] == "shots"
    assert decode_identity(DecodeConfig(segments="shots")) != decode_identity(DecodeConfig(segments="shots",
                                                                                           shot_min_s=1.0))


def test_shots_mode_hashes_the_same_seconds_as_fixed(multi_shot):
    """Frame PDQ is stored for every ok video whatever the segmentation: the shots pass offers its
    frames to the same per-second hasher, so both modes hash the same seconds with the same bits."""
    path, _, _, r = multi_shot
    fixed = decode_video(str(path), DecodeConfig(frames_per_clip=4, crop_size=32, shortest_edge=32))
    assert r.frame_hashes is not None and fixed.frame_hashes is not None
    assert len(r.frame_hashes) == len(fixed.frame_hashes) >= int(r.meta.duration_s)
    np.testing.assert_allclose(r.frame_hashes.times, fixed.frame_hashes.times)
    assert np.array_equal(np.asarray(r.frame_hashes.hashes), np.asarray(fixed.frame_hashes.hashes))
def test_batched_frame_path_finds_the_same_cuts_as_per_frame_signatures(multi_shot):
    """``push_frame`` (gathers, 16 frames scored at once) against ``push`` of each frame's own
    ``frame_signature``, on every decoded frame of the 5-shot video; both near the true cuts. An
    rgb24 copy of the frames goes through the swscale path and must find the same cuts too."""
    import av

    from xclip_core.video.shots import frame_signature

    path, cuts, _, _ = multi_shot
    with av.open(str(path)) as c:
        frames = [(float(f.pts * f.time_base), f) for f in c.decode(video=0)]
    one, batched, rgb = ShotDetector(), ShotDetector(batch=16), ShotDetector(batch=16)
    a, b, d = [], [], []
    for t, f in frames:
        a += one.push(t, frame_signature(f))
        b += batched.push_frame(t, f)
        d += rgb.push_frame(t, f.reformat(format="rgb24"))
    a, b, d = a + one.finish(), b + batched.finish(), d + rgb.finish()
    assert a == b and len(a) == len(cuts)
    assert all(abs(x - y) <= 0.2 for x, y in zip(a, cuts)) and len(d) == len(cuts)
    assert all(abs(x - y) <= 0.2 for x, y in zip(d, cuts))
