"""vPDQ and PDQ hash files, the formats of ThreatExchange's tools.

``.vpdq`` (one video): one line per hashed frame, as written by the vPDQ tool::

    frame_number,pdq_hex,quality,timestamp_s
    0,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,100,0.000

``.pdq`` (image hashes): one 64-hex PDQ hash per line, optionally ``,id``; blank lines and
``#`` comments are skipped. Each hash is matched against single frames.

``write_vpdq`` writes what ``xclip_core.video.frame_hash`` produced (one frame per second).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from xclip_core.pdq import HASH_BYTES, from_hex, to_hex


class HashFileError(ValueError):
    """A malformed .vpdq / .pdq file; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class VpdqHashes:
    frame_numbers: np.ndarray   # [N] int64
    hashes: np.ndarray          # [N, 32] uint8
    quality: np.ndarray         # [N] int16
    times: np.ndarray           # [N] float64 seconds


def parse_vpdq(text: str, name: str = "<vpdq>") -> VpdqHashes:
    frames, hashes, quality, times = [], [], [], []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(",")
        try:
            if len(parts) != 4:
                raise ValueError(f"expected 4 fields frame_number,pdq_hex,quality,timestamp_s, got {len(parts)}")
            frames.append(int(parts[0]))
            hashes.append(from_hex(parts[1]))
            q = int(parts[2])
            if not 0 <= q <= 100:
                raise ValueError(f"quality must be in [0, 100], got {q}")
            quality.append(q)
            times.append(float(parts[3]))
        except ValueError as e:
            raise HashFileError(f"{name}: line {n}: {e}") from None
    if not hashes:
        raise HashFileError(f"{name}: no hashes (expected lines frame_number,pdq_hex,quality,timestamp_s)")
    return VpdqHashes(np.asarray(frames, np.int64), np.stack(hashes), np.asarray(quality, np.int16),
                      np.asarray(times, np.float64))


def format_vpdq(frame_numbers, hashes, quality, times) -> str:
    return "".join(f"{int(f)},{to_hex(h)},{int(q)},{float(t):.3f}\n"
                   for f, h, q, t in zip(frame_numbers, hashes, quality, times))


def parse_pdq_list(text: str, name: str = "<pdq>") -> list[tuple[str, np.ndarray]]:
    """-> [(id, hash)]; an id defaults to ``<name>:<line>``."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        h, _, ident = line.partition(",")
        try:
            out.append((ident.strip() or f"{name}:{n}", from_hex(h)))
        except ValueError as e:
            raise HashFileError(f"{name}: line {n}: {e}") from None
    if not out:
        raise HashFileError(f"{name}: no hashes (expected one 64-hex PDQ hash per line, optionally ',id')")
    return out


def write_vpdq(uri: str, fh) -> str:
    """Write ``fh`` (``xclip_core.video.frame_hash.FrameHashes``) as a .vpdq file (local or s3://)."""
    from moderation.store import write_text

    return write_text(uri, format_vpdq(fh.frame_numbers, fh.hashes, fh.quality, fh.times))


def zero_hashes() -> np.ndarray:
    return np.zeros((0, HASH_BYTES), np.uint8)
