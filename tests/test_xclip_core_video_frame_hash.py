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


def test_tiny_frames_are_hashed_upscaled_and_large_ones_downscaled(monkeypatch):
    """A frame whose short side is under 64 px is upscaled (BICUBIC) to a 128 px short side before
    hashing: PDQ's 64 x 64 grid is larger than the frame, and hashed as is, a 40x30 copy of a
    160x120 frame is farther from the frame's hash. Large frames are downscaled (AREA) to a 384 px
    long side as before; frames in between are hashed as they are."""
    from tests.moderation_helpers import scale_frames
    from xclip_core.pdq import hamming, pdq
    from xclip_core.video.frame_hash import hash_rgb

    def shape(h, w):
        return frame_hash.frame_rgb(av.VideoFrame(w, h, "rgb24")).shape[:2]

    assert [shape(30, 40), shape(48, 64), shape(64, 100), shape(120, 160), shape(720, 1280), shape(10, 300)] == \
        [(128, 171), (128, 171), (64, 100), (120, 160), (216, 384), (13, 384)]
    src = rich_frames(2, 40)
    tiny = scale_frames(src, 30, 40)  # a 0.25x copy, area-averaged as ffmpeg's scale=flags=area does
    fh, calls = _offer_all(tiny, np.arange(40) / 10, monkeypatch)
    assert calls == 4 and fh.frame_numbers.tolist() == [0, 10, 20, 30]
    up = scale_frames(tiny[::10], 128, 171, "BICUBIC")
    assert [hash_rgb(f)[0].tobytes() for f in up] == [h.tobytes() for h in fh.hashes]
    near = [int(hamming(h, pdq(f)[0])[0, 0]) for h, f in zip(fh.hashes, src[::10])]
    as_is = [int(hamming(pdq(t)[0], pdq(f)[0])[0, 0]) for t, f in zip(tiny[::10], src[::10])]
    assert max(near) <= 20 and sum(near) < sum(as_is), (near, as_is)
    big = np.kron(src[::10], np.ones((1, 6, 8, 1), np.uint8))  # 720 x 1280
    fh, _ = _offer_all(big, np.arange(4), monkeypatch)
    assert [h.tobytes() for h in fh.hashes] == [hash_rgb(f)[0].tobytes() for f in scale_frames(big, 216, 384)]
