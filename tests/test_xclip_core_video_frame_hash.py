"""The decode hook's per-second PDQ (``xclip_core.video.frame_hash.SecondHasher``)."""
from __future__ import annotations

import av
import numpy as np

from tests.moderation_helpers import rich_frames
from xclip_core.pdq import QUALITY_MIN
from xclip_core.video import frame_hash


def _offer_all(frames, times, monkeypatch):
    calls = []
    real = frame_hash.hash_rgb

    def counting(rgb):
        calls.append(1)
        return real(rgb)

    monkeypatch.setattr(frame_hash, "hash_rgb", counting)
    hasher = frame_hash.SecondHasher()
    for n, (t, f) in enumerate(zip(times, frames)):
        hasher.offer(float(t), n, av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24"))
    return hasher.result(), len(calls)


def test_a_low_quality_first_frame_is_retried_within_its_second(monkeypatch):
    """Second 1 starts flat (quality 0, never matched) and has texture from 1.5 s: the hook keeps
    the 1.5 s frame, still one row per second; an all-flat second keeps its first frame after
    at most 4 hashes; a second that starts textured costs one hash."""
    rich = rich_frames(7, 30)
    flat = np.full_like(rich[0], 100)
    times = np.arange(30) / 10
    frames = [flat if (1.0 <= t < 1.5 or t >= 2.0) else rich[k] for k, t in enumerate(times)]
    fh, calls = _offer_all(frames, times, monkeypatch)
    assert np.round(fh.times, 2).tolist() == [0.0, 1.5, 2.0] and fh.frame_numbers.tolist() == [0, 15, 20]
    assert fh.quality[0] >= QUALITY_MIN and fh.quality[1] >= QUALITY_MIN and fh.quality[2] < QUALITY_MIN
    assert calls == 1 + 3 + 4  # second 0: one; second 1: 1.0, 1.3 (>= 1.25), 1.5; second 2: 2.0, 2.3, 2.5, 2.8
    # the hash kept is the one of the textured frame at 1.5 s (not of the flat first frame)
    from xclip_core.video.frame_hash import frame_rgb, hash_rgb

    want = hash_rgb(frame_rgb(av.VideoFrame.from_ndarray(np.ascontiguousarray(rich[15]), format="rgb24")))[0]
    assert fh.hashes[1].tobytes() == want.tobytes()
