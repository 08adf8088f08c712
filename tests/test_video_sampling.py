"""Samplers: pure functions, no decoding (the resize/crop geometry: tests/test_geometry.py)."""
import numpy as np
import pytest

from xclip_core.video import DecodeConfig, fixed_windows, plan_clips, tsn_indices


def cfr(n, fps=30.0):
    return np.arange(n) / fps, n / fps


def test_fixed_windows_cfr_matches_xclip_segment_midpoints():
    times, dur = cfr(250)
    plans = fixed_windows(times, dur, T=8, window_s=2.0)
    assert len(plans) == 4                     # 8.33 s: tail 0.33 s < 1 s is dropped
    for k, p in enumerate(plans):
        assert p.segment_index == k and p.start_s == 2.0 * k and p.end_s == 2.0 * k + 2
        want = [60 * k + int(i * 60 / 8 + 60 / 16) for i in range(8)]
        assert list(p.frame_indices) == want


def test_tail_window_is_aligned_to_the_end():
    times, dur = cfr(285)                      # 9.5 s: tail 1.5 s >= 1 s
    plans = fixed_windows(times, dur, T=8, window_s=2.0)
    assert len(plans) == 5
    assert plans[-1].start_s == pytest.approx(7.5) and plans[-1].end_s == pytest.approx(9.5)
    assert plans[-1].frame_indices[-1] <= 284 and plans[-1].frame_indices[0] >= 225


def test_short_video_gives_one_clip_over_the_whole_video():
    times, dur = cfr(12, fps=24)               # 0.5 s
    (p,) = fixed_windows(times, dur, T=8, window_s=2.0)
    assert (p.start_s, p.end_s) == (0.0, 0.5)
    assert list(p.frame_indices) == [int(i * 12 / 8 + 12 / 16) for i in range(8)]
    (one,) = fixed_windows(np.array([0.0]), 1 / 30, T=8)
    assert one.frame_indices == (0,) * 8


def test_stride_and_max_clips():
    times, dur = cfr(300)                      # 10 s
    assert len(fixed_windows(times, dur, 8, 2.0, stride_s=1.0)) == 9
    capped = fixed_windows(times, dur, 8, 2.0, max_clips=3)
    assert [p.start_s for p in capped] == [0.0, 4.0, 8.0]
    assert [p.segment_index for p in capped] == [0, 1, 2]


def test_variable_frame_rate_uses_timestamps():
    times = np.array([0.0, 0.1, 0.15, 0.9, 1.0, 1.95])   # frame shown at t = last start <= t
    (p,) = fixed_windows(times, 2.0, T=4, window_s=2.0)
    # t = 0.25, 0.75, 1.25, 1.75
    assert list(p.frame_indices) == [2, 2, 4, 4]


def test_tsn_formula():
    assert tsn_indices(64, 8) == tuple(int(i * 64 / 8 + 64 / 16) for i in range(8))
    assert tsn_indices(1, 8) == (0,) * 8
    times, dur = cfr(100)
    (p,) = plan_clips(times, dur, DecodeConfig(sampler="tsn", frames_per_clip=8))
    assert p.frame_indices == tsn_indices(100, 8) and p.end_s == pytest.approx(dur)


def test_config_validation():
    with pytest.raises(ValueError):
        DecodeConfig(sampler="nope")
    with pytest.raises(ValueError):
        DecodeConfig(crop_size=256, shortest_edge=224)
    with pytest.raises(ValueError):
        DecodeConfig(approximate=True, backend="decord")
