"""Perceptual frame hashes for known-bad video matching: a PDQ-style 256-bit hash in numpy.

Why not PDQ itself: the maintained binding (``pdqhash`` on PyPI) ships only a source
distribution that needs a C++ toolchain and Cython at install time, so it is not a safe
dependency of this package. This module follows PDQ's published algorithm, minus its tent
pre-filter and quality score:

  1. luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` of the frame (uint8 RGB [H, W, 3]);
  2. box-downsample to 64 x 64 (area weights, so any H, W works, also below 64);
  3. 2D DCT-II, keep the 16 x 16 lowest frequencies;
  4. bit = coefficient > median of the 256 coefficients -> 256 bits (32 bytes, row-major).

Steps 2-3 are one precomputed [16, H] / [16, W] matrix per side, so a frame costs two small
matrix products (measured in ``tests/test_moderation_hashing.py``). Distances are Hamming
distances between hashes (0..256; PDQ treats <= 31 as the same image).

Which frames: the frames the decoder already produced for the model (the sampled clip frames
at the model's crop size). ``per_second`` keeps one hash per second of video, from the
sampled frame nearest to that second.
"""
from __future__ import annotations

import functools

import numpy as np

HASH_BYTES = 32
_GRID, _KEEP = 64, 16
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


@functools.lru_cache(maxsize=32)
def _projection(size: int) -> np.ndarray:
    """[16, size]: box-downsample ``size`` -> 64, then the 16 lowest DCT-II frequencies."""
    edges = np.linspace(0.0, size, _GRID + 1)
    area = np.zeros((_GRID, size), np.float64)
    for i in range(_GRID):
        lo, hi = edges[i], edges[i + 1]
        for j in range(int(np.floor(lo)), min(int(np.ceil(hi)), size)):
            area[i, j] = min(hi, j + 1) - max(lo, j)
        area[i] /= area[i].sum()
    n = np.arange(_GRID)
    dct = np.cos(np.pi * (2 * n[None, :] + 1) * np.arange(_KEEP)[:, None] / (2 * _GRID))
    return (dct @ area).astype(np.float32)


def frame_hashes(frames: np.ndarray) -> np.ndarray:
    """uint8 frames [T, H, W, 3] (or one [H, W, 3]) -> hashes uint8 [T, 32]."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected RGB frames [T, H, W, 3], got shape {frames.shape}")
    y = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # [T, H, W]
    ph, pw = _projection(frames.shape[1]), _projection(frames.shape[2])
    coeffs = (ph @ y @ pw.T).reshape(len(frames), -1)  # [T, 16, 16] -> [T, 256]
    bits = coeffs > np.median(coeffs, axis=1, keepdims=True)
    return np.packbits(bits, axis=1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hashes [N, 32] x [M, 32] -> Hamming distances [N, M] (int)."""
    a, b = np.asarray(a, np.uint8), np.asarray(b, np.uint8)
    return _POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=-1, dtype=np.int32)


def per_second(timestamps, hashes: np.ndarray, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One hash per second ``t = 0, 1, ...`` (up to ``duration_s``, else the last timestamp)
    from the frame nearest to ``t`` -> (times [M], hashes [M, 32])."""
    ts = np.asarray(timestamps, np.float64)
    hashes = np.asarray(hashes, np.uint8)
    if len(ts) == 0:
        return np.zeros(0), np.zeros((0, HASH_BYTES), np.uint8)
    order = np.argsort(ts, kind="stable")
    ts, hashes = ts[order], hashes[order]
    end = duration_s if duration_s and duration_s > 0 else float(ts[-1]) + 1e-9
    seconds = np.arange(0.0, max(end, 1e-9), 1.0)
    nearest = np.abs(ts[None, :] - seconds[:, None]).argmin(axis=1)
    return seconds, hashes[nearest]


def to_hex(h: np.ndarray) -> str:
    return bytes(np.asarray(h, np.uint8)).hex()


def from_hex(text: str) -> np.ndarray:
    raw = bytes.fromhex(text)
    if len(raw) != HASH_BYTES:
        raise ValueError(f"a hash is {HASH_BYTES} bytes ({2 * HASH_BYTES} hex digits), got {len(raw)}")
    return np.frombuffer(raw, np.uint8)
