"""PDQ hashes of whole decoded frames, one per ``every_s`` seconds, chosen by timestamp.

The decode stage's one hook (``decode._decode_pyav``) offers every frame it decodes anyway
(reference frames and sampled frames) with its timestamp; ``SecondHasher`` keeps the first frame
at or after each whole second (``t >= k * every_s``): sampling by timestamp, not by frame
number, so a copy at another frame rate lines up. When that frame's PDQ quality is under 50
(matching skips it: a fade, a dark or flat moment), the first offered frames at or after
``k + 0.25``, ``k + 0.5`` and ``k + 0.75`` (times ``every_s``) are hashed too, and the second
keeps the one of best quality (at most 4 hashes per second, only for such seconds; still one
row per second). The frame is converted to RGB with its long side at most ``max_side`` (384;
swscale AREA, a context of its own so the crop conversions keep theirs); a frame whose short
side is under 64 px is instead upscaled (BICUBIC) to a 128 px short side (long side still at
most ``max_side``): PDQ's 64 x 64 grid is larger than such a frame. Two 24x18 copies of a
generated clip match their item only with it (``tests/test_moderation_blocklist.py``); on the
sample clips of ``bench/blocklist.py`` it added no match and, by smoothing, lowered one copy's
PDQ quality under 50 (``bench/RESULTS.md``). Letterbox/pillarbox bars are trimmed
(``xclip_core.pdq.trim_bars``) and PDQ is taken with its
mirror hash and quality (``xclip_core.pdq.pdq_with_mirror``).
"""
from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np

from xclip_core.pdq import HASH_BYTES, QUALITY_MIN, pdq_with_mirror

_local = threading.local()


@dataclasses.dataclass
class FrameHashes:
    """Per-second PDQ of one video: ``times`` [N] s (the hashed frames' timestamps),
    ``frame_numbers`` [N] (display order), ``hashes`` / ``mirror`` uint8 [N, 32], ``quality`` [N]."""
    times: np.ndarray
    frame_numbers: np.ndarray
    hashes: np.ndarray
    mirror: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.times)


MAX_SIDE = 384  # measured: 512 cost ~2.4x the CPU of 256; at 256, PDQ quality fell below 50 on a borderline clip
TINY_SHORT, UPSCALE_SHORT = 64, 128  # a short side under TINY_SHORT px is upscaled to UPSCALE_SHORT


def frame_rgb(frame, max_side: int = MAX_SIDE, upscale: bool = True) -> np.ndarray:
    """An ``av.VideoFrame`` -> uint8 RGB [H, W, 3], long side at most ``max_side`` (AREA); with
    ``upscale``, a short side under ``TINY_SHORT`` px is brought to ``UPSCALE_SHORT`` (BICUBIC)."""
    from av.video.reformatter import VideoReformatter

    from xclip_core.video.convert import _threads_kw

    w, h = frame.width, frame.height
    scale, interpolation = min(1.0, max_side / max(w, h)), "AREA"
    if upscale and min(w, h) < TINY_SHORT:
        up = min(UPSCALE_SHORT / min(w, h), max_side / max(w, h))
        if up > 1:
            scale, interpolation = up, "BICUBIC"
    tw, th = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    r = getattr(_local, "reformatter", None)
    if r is None:
        r = _local.reformatter = VideoReformatter()
    return r.reformat(frame, width=tw, height=th, format="rgb24", interpolation=interpolation,
                      **_threads_kw()).to_ndarray()


def hash_rgb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(hash, mirror hash, quality) of one RGB frame with its bars trimmed."""
    return pdq_with_mirror(rgb, trim=True)


class SecondHasher:
    def __init__(self, every_s: float = 1.0, max_side: int = MAX_SIDE):
        """``every_s`` = 0: every frame offered."""
        self.every_s, self.max_side = float(every_s), int(max_side)
        self._next = 0.0
        self._second = -1  # the second (in every_s) of the last row
        self._rows: list[tuple] = []

    def offer(self, t: float, frame_number: int, frame) -> None:
        """A decoded frame (``av.VideoFrame``) at ``t`` seconds from the first frame."""
        if t + 1e-6 < self._next:
            return
        h, m, q = hash_rgb(frame_rgb(frame, self.max_side))
        if self.every_s <= 0:
            self._rows.append((t, frame_number, h, m, q))
            return
        k = math.floor(t / self.every_s + 1e-6)
        if self._rows and k == self._second:  # a retry within a low-quality second: keep the better
            if q > self._rows[-1][4]:
                self._rows[-1] = (t, frame_number, h, m, q)
        else:
            self._rows.append((t, frame_number, h, m, q))
            self._second = k
        end = (k + 1) * self.every_s
        retry = (math.floor((t / self.every_s - k) * 4 + 1e-6) + 1) * self.every_s / 4 + k * self.every_s
        self._next = retry if self._rows[-1][4] < QUALITY_MIN and retry < end - 1e-6 else end

    def result(self) -> FrameHashes:
        if not self._rows:
            z = np.zeros((0, HASH_BYTES), np.uint8)
            return FrameHashes(np.zeros(0), np.zeros(0, np.int64), z, z.copy(), np.zeros(0, np.int16))
        t, n, h, m, q = zip(*self._rows)
        return FrameHashes(np.asarray(t, np.float64), np.asarray(n, np.int64), np.stack(h), np.stack(m),
                           np.asarray(q, np.int16))
