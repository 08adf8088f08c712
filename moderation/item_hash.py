"""Hashing whole videos outside the indexing job: blocklist items and ``xclip-index hash``.

``video_hashes(uri, every_s)`` decodes every frame (PyAV) and hashes one per ``every_s`` seconds
by timestamp as the decode stage does for uploads (``xclip_core.video.frame_hash.SecondHasher``),
or every frame with ``every_s = 0``: what ``xclip-index hash`` writes as ``.vpdq``.

``item_hashes(uri, every_s, crop_levels)`` is a blocklist item's side, denser and wider so
that an upload's one-per-second hashes find a partner whatever it did to the video:
  * every ``every_s`` seconds (0.1 by default: an upload trimmed by a fraction of a second, or
    at another frame rate, still has an item frame within 1/20 s of each of its frames; at
    0.25 s, fast motion put 36 bits between an upload frame and the nearest item frame);
  * bars trimmed; the whole frame in its 8 dihedral orientations (rotations, flips,
    transposes), each hashed as a frame (the reference's DCT-derived dihedral hashes are up to
    ~35 bits from the rotated frame's hash on small frames, ``tests/test_xclip_core_pdq.py``);
  * the frame at each centre-crop level (fraction cut per side), upright only (a mirrored crop
    is found through the upload's own mirror hash);
  * the frame area-averaged down to a 64 px short side, then bars trimmed
    (``xclip_core.pdq.pdq_area``, mode ``scale:64px``): what a copy scaled down to a few dozen
    pixels keeps of it (trimmed after scaling, as that copy's own frames are: on a dark
    background the trimmed box is not the same at 60x32 as at 480x270).
Rows: (time, level index, dihedral index, hash, quality); level ``len(crop_levels)`` is the
``scale:64px`` row (``item_modes`` names each ``level * 8 + dihedral``).
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from xclip_core.pdq import DIHEDRAL, centre_crop, pdq, pdq_area, trim_bars
from xclip_core.video.frame_hash import FrameHashes, SecondHasher, frame_rgb

CROP_LEVELS = (0.0, 0.015, 0.03, 0.045, 0.06, 0.075, 0.09)
SCALE_SHORT = 64  # the scale:64px row's short side
DIHEDRAL_OPS = (  # xclip_core.pdq.DIHEDRAL order, as frame transforms
    lambda a: a, lambda a: np.rot90(a, 1), lambda a: np.rot90(a, 2), lambda a: np.rot90(a, 3),
    lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a.transpose(1, 0, 2), lambda a: np.rot90(a, 2).transpose(1, 0, 2))


class ItemHashError(ValueError):
    """A video that cannot be hashed; the message names it."""


@dataclasses.dataclass(frozen=True)
class ItemHashes:
    times: np.ndarray        # [N]
    levels: np.ndarray       # [N] index into crop_levels
    dihedral: np.ndarray     # [N] index into xclip_core.pdq.DIHEDRAL
    hashes: np.ndarray       # [N, 32]
    quality: np.ndarray      # [N]
    crop_levels: tuple


def iter_frames(uri: str) -> Iterator[tuple[float, int, object]]:
    """(seconds from the first frame, display index, ``av.VideoFrame``) for every frame."""
    import av

    from xclip_core.video import DecodeConfig
    from xclip_core.video.errors import MEDIA_ERRORS, short
    from xclip_core.video.meta import VideoError, open_container, open_source

    try:
        src, _ = open_source(uri, DecodeConfig())
        container = open_container(src)
    except VideoError as e:
        raise ItemHashError(f"{uri}: cannot open ({e.reason})") from None
    try:
        stream = container.streams.video[0]
        first = None
        for n, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else n / float(stream.average_rate or 25)
            first = t if first is None else first
            yield float(t - first), n, frame
    except (IndexError,) + tuple(MEDIA_ERRORS) as e:
        if isinstance(e, av.error.FFmpegError) or isinstance(e, (IndexError, OSError)):
            raise ItemHashError(f"{uri}: cannot decode ({short(e)})") from None
        raise
    finally:
        container.close()


def video_hashes(uri: str, every_s: float = 1.0) -> FrameHashes:
    hasher = SecondHasher(every_s=every_s)
    for t, n, frame in iter_frames(uri):
        hasher.offer(t, n, frame)
    fh = hasher.result()
    if not len(fh):
        raise ItemHashError(f"{uri}: no frames decoded")
    return fh


def item_hashes(uri: str, every_s: float = 0.1, crop_levels=CROP_LEVELS) -> ItemHashes:
    rows = []
    nxt = 0.0
    for t, n, frame in iter_frames(uri):
        if t + 1e-6 < nxt:
            continue
        nxt = (np.floor(t / every_s + 1e-6) + 1) * every_s
        full = frame_rgb(frame)
        rgb = trim_bars(full)
        for li, frac in enumerate(crop_levels):
            if frac > 0:
                rows.append((t, li, 0, *pdq(centre_crop(rgb, frac))))
                continue
            for di, f in enumerate(DIHEDRAL_OPS):
                rows.append((t, li, di, *pdq(f(rgb))))
        rows.append((t, len(crop_levels), 0, *pdq_area(full, SCALE_SHORT, trim=True)))
    if not rows:
        raise ItemHashError(f"{uri}: no frames decoded")
    t, li, di, h, q = zip(*rows)
    return ItemHashes(np.asarray(t), np.asarray(li, np.int16), np.asarray(di, np.int16), np.stack(h),
                      np.asarray(q, np.int16), tuple(crop_levels))


def item_modes(crop_levels=CROP_LEVELS) -> tuple:
    """Mode names indexed by ``level * 8 + dihedral`` (the last level: ``scale:64px``)."""
    return tuple(mode_name(lv, d) for lv in crop_levels for d in range(8)) + (f"scale:{SCALE_SHORT}px",) * 8


def mode_name(level: float, dihedral: int) -> str:
    """``direct`` | ``dihedral:<name>`` | ``crop:<pct>%`` | ``crop:<pct>%+<name>``."""
    d = DIHEDRAL[dihedral]
    if level <= 0:
        return "direct" if dihedral == 0 else f"dihedral:{d}"
    crop = f"crop:{100 * level:g}%"
    return crop if dihedral == 0 else f"{crop}+{d}"
