"""PDQ (Meta's perceptual image hash, as in ThreatExchange's C++ reference) in numpy.

Why numpy and not the ``pdqhash`` binding as a dependency: ``pdqhash`` ships only a source
distribution that needs a C++ compiler and Cython *inside* the build environment
(``pip install --no-build-isolation``), so a plain ``pip install xclip-index`` would break on a
host without them. This module follows the reference step by step and is tested against
``pdqhash`` (a test-only dependency, ``tests/test_xclip_core_pdq.py``):

  1. luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (float);
  2. a Jarosz tent filter: two passes of box filters along rows then columns, window
     ``ceil(size / 128)`` (the reference's ``computeJaroszFilterWindowSize``, its box edges
     included), then decimation to 64 x 64 at pixel centres; being linear and separable, the
     whole step is one [64, H] and one [64, W] matrix (cached per size);
  3. quality: the sum of quantised 64 x 64 gradients / 90, capped at 100;
  4. 2D DCT-II, frequencies 1..16 on each side (not 0: the DC term is skipped) -> 16 x 16;
  5. bit ``k = 16 i + j`` is set when coefficient [i, j] > the median (the 128th smallest);
  6. hex: bits 255..0, i.e. the 32 bytes below are ``bytes.fromhex(reference_hex)``.

The eight dihedral hashes (rotations and flips) come from the same DCT by sign changes and a
transpose, in the reference's order ``DIHEDRAL``. Hashes may differ from the reference's in a
bit or two where a coefficient sits at the median (float32 there, float64 here).

``trim_bars`` removes letterbox/pillarbox bars (near-black, flat border rows/columns) before
hashing, so a letterboxed copy hashes like its source. ``pdq_area`` hashes the frame area-averaged
down to a 64 px short side (``area_resize``): what a heavily downscaled copy keeps of it.
"""
from __future__ import annotations

import functools

import numpy as np

HASH_BYTES = 32
QUALITY_MIN = 50          # vPDQ skips frames below this quality when matching
MATCH_DISTANCE = 31       # PDQ's recommended Hamming threshold (of 256)
DIHEDRAL = ("original", "rot90", "rot180", "rot270", "flipx", "flipy", "flip_plus1", "flip_minus1")
MIRROR = DIHEDRAL.index("flipy")   # the left-right mirror (the reference calls it FlipY)
_MIN_DIM = 5
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _box_matrix(n: int, window: int) -> np.ndarray:
    """The reference's ``box1DFloat`` as an [n, n] matrix: output k averages inputs
    ``max(0, k + h - w) .. min(n - 1, k + h - 1)`` with ``h = (w + 2) // 2``."""
    h = (window + 2) // 2
    k = np.arange(n)
    lo, hi = np.maximum(0, k + h - window), np.minimum(n - 1, k + h - 1)
    j = np.arange(n)
    m = ((j[None, :] >= lo[:, None]) & (j[None, :] <= hi[:, None])).astype(np.float64)
    return m / m.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=64)
def _downsample(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two box passes along an axis of ``n``, then decimation to 64 samples, as a sparse
    [64, n] matrix: (input indices [64, K], weights [64, K]) of each output (K = 2 windows)."""
    if n == 64:
        return np.arange(64)[:, None], np.ones((64, 1))
    window = (n + 2 * 64 - 1) // (2 * 64)
    box = _box_matrix(n, window)
    pick = ((np.arange(64) + 0.5) * n / 64).astype(np.int64)
    dense = box[pick] @ box
    k = int((dense > 0).sum(axis=1).max())
    idx = np.argsort(dense <= 0, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(dense, idx, axis=1)


@functools.lru_cache(maxsize=1)
def _dct() -> np.ndarray:
    i, j = np.arange(1, 17)[:, None], np.arange(64)[None, :]
    return np.sqrt(2.0 / 64) * np.cos(np.pi / 2 / 64 * i * (2 * j + 1))


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float64 luminance [H, W] (the reference's coefficients)."""
    rgb = np.asarray(rgb)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def dct16(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """uint8 RGB [H, W, 3] -> (16 x 16 DCT coefficients, quality 0..100)."""
    return _dct16_luma(luma(rgb))


def _dct16_luma(y: np.ndarray) -> tuple[np.ndarray, int]:
    if y.shape[0] < _MIN_DIM or y.shape[1] < _MIN_DIM:
        return np.zeros((16, 16)), 0
    (ri, rw), (ci, cw) = _downsample(y.shape[0]), _downsample(y.shape[1])
    # gathers, not BLAS: a small matrix product is slow when BLAS threads fight for shared cores
    a = (y[ri] * rw[:, :, None]).sum(axis=1)          # [64, W]
    a = (a[:, ci] * cw[None, :, :]).sum(axis=2)       # [64, 64]
    dv = np.trunc((a[:-1, :] - a[1:, :]) * 100 / 255)
    dh = np.trunc((a[:, :-1] - a[:, 1:]) * 100 / 255)
    quality = min(int(np.abs(dv).sum() + np.abs(dh).sum()) // 90, 100)
    d = _dct()
    return d @ a @ d.T, quality  # 16 x 64 x 64: below BLAS's threading sizes


def _bits(c: np.ndarray) -> np.ndarray:
    """16 x 16 coefficients -> 32 bytes (reference hex order: bit 255 first)."""
    flat = c.reshape(-1)
    bits = flat > np.sort(flat)[127]
    return np.packbits(bits[::-1])


def _dihedral(c: np.ndarray) -> list[np.ndarray]:
    """The reference's ``dct16OriginalTo*`` sign patterns, in ``DIHEDRAL`` order."""
    i, j = np.arange(16)[:, None], np.arange(16)[None, :]
    odd_i, odd_j, odd_ij = (i & 1).astype(bool), (j & 1).astype(bool), ((i + j) & 1).astype(bool)
    return [c,
            np.where(odd_j, c, -c).T,           # rot90:   B[j][i] = j odd ? A : -A
            np.where(odd_ij, -c, c),            # rot180
            np.where(odd_i, c, -c).T,           # rot270:  B[j][i] = i odd ? A : -A
            np.where(odd_i, c, -c),             # flipx
            np.where(odd_j, c, -c),             # flipy (left-right mirror)
            c.T,                                # flip_plus1
            np.where(odd_ij, -c, c).T]          # flip_minus1


def pdq(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """uint8 RGB [H, W, 3] -> (hash uint8 [32], quality)."""
    c, q = dct16(rgb)
    return (_bits(c) if q or c.any() else np.zeros(HASH_BYTES, np.uint8)), q


@functools.lru_cache(maxsize=64)
def _area_matrix(n: int, t: int) -> np.ndarray:
    """[t, n]: output k averages the input span ``[k n / t, (k + 1) n / t)``, each input pixel
    weighted by how much of it the span covers."""
    edges = np.arange(t + 1) * (n / t)
    a, b = edges[:-1, None], edges[1:, None]
    j = np.arange(n)[None, :]
    return np.clip(np.minimum(j + 1, b) - np.maximum(j, a), 0, None) * (t / n)


def area_resize(rgb: np.ndarray, short: int = 64) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 RGB with its short side ``short`` px (aspect kept), each
    output pixel the exact area average of the input it covers (rounded); unchanged when the
    short side is ``short`` or less."""
    rgb = np.asarray(rgb)
    h, w = rgb.shape[:2]
    s = short / min(h, w)
    if s >= 1:
        return rgb
    th, tw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    rows = np.tensordot(_area_matrix(h, th), rgb.astype(np.float64), axes=(1, 0))   # [th, W, 3]
    out = np.tensordot(_area_matrix(w, tw), rows, axes=(1, 1)).transpose(1, 0, 2)  # [th, tw, 3]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def pdq_area(rgb: np.ndarray, short: int = 64, *, trim: bool = False) -> tuple[np.ndarray, int]:
    """(hash, quality) of the frame area-averaged down to a ``short`` px short side, with
    ``trim`` its bars trimmed after (``trim_bars``)."""
    small = area_resize(rgb, short)
    return pdq(trim_bars(small) if trim else small)


def pdq_dihedral(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """uint8 RGB [H, W, 3] -> (hashes uint8 [8, 32] in ``DIHEDRAL`` order, quality)."""
    c, q = dct16(rgb)
    if not c.any():
        return np.zeros((8, HASH_BYTES), np.uint8), q
    return np.stack([_bits(x) for x in _dihedral(c)]), q


def pdq_with_mirror(rgb: np.ndarray, *, trim: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """(hash, hash of the left-right mirrored frame, quality), bars trimmed first with ``trim``
    (one luminance plane for all three). The mirror is hashed as a frame, not derived from the
    DCT: the reference's decimation grid is not symmetric, so its ``flipy`` dihedral hash is
    2-35 bits from the mirrored frame's hash on small frames."""
    y = luma(rgb)
    if trim:
        r0, r1, c0, c1 = _bar_box(y)
        y = y[r0:r1, c0:c1]
    out = []
    for plane in (y, y[:, ::-1]):
        c, q = _dct16_luma(plane)
        out.append((_bits(c) if q or c.any() else np.zeros(HASH_BYTES, np.uint8), q))
    return out[0][0], out[1][0], out[0][1]  # the frame's quality, not the mirror's


def trim_bars(rgb: np.ndarray, *, level: float = 24.0, min_keep: float = 0.25) -> np.ndarray:
    """Cut letterbox/pillarbox bars: border rows/columns with at most 2% of their pixels at
    luminance ``level`` or above (near-black). Nothing is cut when that would leave under ``min_keep``
    of a side (a dark frame is not all bars)."""
    r0, r1, c0, c1 = _bar_box(luma(rgb), level=level, min_keep=min_keep)
    return rgb[r0:r1, c0:c1]


def _bar_box(y: np.ndarray, *, level: float = 24.0, min_keep: float = 0.25) -> tuple[int, int, int, int]:
    h, w = y.shape

    def span(profile: np.ndarray, n: int) -> tuple[int, int]:
        content = np.flatnonzero(profile)
        if not len(content):
            return 0, n
        a, b = int(content[0]), int(content[-1]) + 1
        return (a, b) if b - a >= max(1, min_keep * n) else (0, n)

    bright = y >= level
    r0, r1 = span(bright.mean(axis=1) > 0.02, h)       # over 2% of a row bright: content
    c0, c1 = span(bright[r0:r1].mean(axis=0) > 0.02, w)
    return r0, r1, c0, c1


def centre_crop(rgb: np.ndarray, frac: float) -> np.ndarray:
    """Cut ``frac`` of each side (0.04 = 4% off the top, bottom, left and right)."""
    if frac <= 0:
        return rgb
    h, w = rgb.shape[:2]
    dy, dx = int(round(h * frac)), int(round(w * frac))
    return rgb[dy:h - dy, dx:w - dx]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hashes [N, 32] x [M, 32] -> Hamming distances [N, M] (int32)."""
    a, b = np.asarray(a, np.uint8).reshape(-1, HASH_BYTES), np.asarray(b, np.uint8).reshape(-1, HASH_BYTES)
    return _POPCOUNT[a[:, None, :] ^ b[None, :, :]].sum(axis=-1, dtype=np.int32)


def to_hex(h: np.ndarray) -> str:
    return bytes(np.asarray(h, np.uint8)).hex()


def from_hex(text: str) -> np.ndarray:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raise ValueError(f"not a hex PDQ hash: {text[:70]!r}") from None
    if len(raw) != HASH_BYTES:
        raise ValueError(f"a PDQ hash is {2 * HASH_BYTES} hex digits, got {2 * len(raw)}")
    return np.frombuffer(raw, np.uint8)
