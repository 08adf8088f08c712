"""PDQ in numpy (``xclip_core.pdq``) against the reference: ThreatExchange's C++ through the
``pdqhash`` binding (installed by ``just setup``), on the same frames: hash, quality, and
the eight dihedral hashes; mirror, letterbox/pillarbox trimming, dark and flat frames."""
from __future__ import annotations

import numpy as np
import pdqhash
import pytest

from tests.moderation_helpers import rich_frames
from xclip_core import pdq


def _ref(img):
    h, q = pdqhash.compute(np.ascontiguousarray(img))
    return np.packbits(np.asarray(h, np.uint8)), q


def _frames():
    rng = np.random.default_rng(0)
    yield from (f for s in (1, 2, 3) for f in rich_frames(s, 31)[::15])
    yield (rng.random((97, 131, 3)) * 255).astype(np.uint8)           # odd sizes
    yield (rng.random((64, 64, 3)) * 255).astype(np.uint8)            # the reference's 64 x 64 fast path
    yield np.kron(rich_frames(4, 6)[5], np.ones((6, 8, 1), np.uint8))     # 720 x 1280
    yield rich_frames(5, 1)[0][:7, :200]                                 # very wide


def _d(a, b) -> int:
    return int(pdq.hamming(a, b)[0, 0])


def test_hash_and_quality_equal_the_reference():
    for img in _frames():
        h, q = pdq.pdq(img)
        rh, rq = _ref(img)
        assert q == rq, img.shape
        assert _d(h, rh) <= 2, img.shape  # 0 on every frame here; a coefficient at the median may flip
        assert pdq.to_hex(h) == pdq.to_hex(rh) or _d(h, rh) > 0


def test_dihedral_hashes_equal_the_reference():
    for img in _frames():
        hs, q = pdq.pdq_dihedral(img)
        rhs, rq = pdqhash.compute_dihedral(np.ascontiguousarray(img))
        assert q == rq
        assert [_d(a, np.packbits(np.asarray(b, np.uint8))) for a, b in zip(hs, rhs)] == [0] * 8, img.shape


def test_mirror_hash_is_the_mirrored_frames_hash():
    far = []
    for img in list(_frames())[:9]:
        h, m, q = pdq.pdq_with_mirror(img)
        flipped, _ = _ref(img[:, ::-1])
        assert _d(m, flipped) <= 2 and _d(h, flipped) > 90
        assert (pdq.to_hex(h), q) == (pdq.to_hex(_ref(img)[0]), _ref(img)[1])  # the frame's own quality
        hs, _ = pdq.pdq_dihedral(img)  # the reference's flipy, derived from the DCT: near, not equal
        far.append(_d(hs[pdq.MIRROR], flipped))
    assert max(far) <= 48 and min(far) < max(far)


@pytest.mark.parametrize("box", ["letterbox", "pillarbox"])
def test_bars_are_trimmed_before_hashing(box):
    for seed in (1, 2):
        img = rich_frames(seed, 21)[20]  # 120 x 160
        canvas = np.zeros((300, 300, 3) if box == "letterbox" else (120, 400, 3), np.uint8)
        canvas += np.uint8(3)  # not quite black, as an encoder leaves it
        y0, x0 = (canvas.shape[0] - 120) // 2, (canvas.shape[1] - 160) // 2
        canvas[y0:y0 + 120, x0:x0 + 160] = img
        trimmed = pdq.trim_bars(canvas)
        assert trimmed.shape == img.shape
        ref_content, _ = _ref(img)
        assert _d(pdq.pdq(trimmed)[0], ref_content) == 0
        h, m, q = pdq.pdq_with_mirror(canvas, trim=True)  # the decode hook's path
        assert _d(h, ref_content) == 0 and _d(m, _ref(img[:, ::-1])[0]) == 0 and q == _ref(img)[1]
        assert _d(_ref(canvas)[0], ref_content) > pdq.MATCH_DISTANCE  # untrimmed, PDQ misses it


def test_dark_and_flat_frames_have_low_quality_and_are_not_trimmed_away():
    rng = np.random.default_rng(1)
    dark = (rich_frames(3, 1)[0] * 0.08).astype(np.uint8)            # a night scene: all below the bar level
    flat = np.clip(128 + rng.normal(0, 1.0, (120, 160, 3)), 0, 255).astype(np.uint8)
    for img in (dark, flat):
        assert pdq.trim_bars(img).shape == img.shape
        _, q = pdq.pdq(img)
        assert q == _ref(img)[1] and q < pdq.QUALITY_MIN


def test_hex_round_trip_and_errors():
    h, _ = pdq.pdq(rich_frames(1, 1)[0])
    assert np.array_equal(pdq.from_hex(pdq.to_hex(h)), h) and len(pdq.to_hex(h)) == 64
    with pytest.raises(ValueError, match="64 hex digits"):
        pdq.from_hex("abcd")
    with pytest.raises(ValueError, match="not a hex"):
        pdq.from_hex("zz" * 32)


def _area_by_integral(img, th, tw):
    """Exact area average, computed another way: the sum over a span [a, b) of pixels is the
    difference of the running sum, linear between pixel edges, at b and a."""
    out = img.astype(np.float64)
    for axis, t in ((0, th), (1, tw)):
        n = out.shape[axis]
        cum = np.concatenate([np.zeros_like(np.take(out, [0], axis)), np.cumsum(out, axis)], axis)
        at = np.linspace(0, n, t + 1)
        run = np.apply_along_axis(lambda c: np.interp(at, np.arange(n + 1), c), axis, cum)
        out = np.diff(run, axis=axis) * t / n
    return out


def test_area_hash_is_the_reference_pdq_of_the_64_px_area_average():
    """``pdq_area`` (a blocklist item's ``scale:64px`` hash) is reference PDQ of the frame
    area-averaged down to a 64 px short side; a frame already that small is hashed as it is."""
    rng = np.random.default_rng(3)
    big = np.kron(rich_frames(6, 1)[0], np.ones((6, 8, 1), np.uint8))   # 720 x 1280
    for img, shape in [(rich_frames(1, 1)[0], (64, 85)), (rich_frames(2, 1)[0].transpose(1, 0, 2), (85, 64)),
                       ((rng.random((97, 131, 3)) * 255).astype(np.uint8), (64, 86)), (big, (64, 114))]:
        small = pdq.area_resize(img, 64)
        assert small.shape[:2] == shape
        assert np.abs(small - _area_by_integral(img, *shape)).max() <= 0.5 + 1e-9
        h, q = pdq.pdq_area(img)
        rh, rq = _ref(small)
        assert (pdq.to_hex(h), q) == (pdq.to_hex(rh), rq), img.shape
        assert _d(h, _ref(img)[0]) > 0  # not the full frame's hash
    tiny = rich_frames(3, 1)[0][:48, :60]
    assert pdq.area_resize(tiny, 64) is tiny and pdq.to_hex(pdq.pdq_area(tiny)[0]) == pdq.to_hex(_ref(tiny)[0])
    boxed = np.zeros((360, 480, 3), np.uint8)  # letterboxed: bars trimmed after the average with trim
    boxed[60:300] = np.kron(rich_frames(7, 1)[0], np.ones((2, 3, 1), np.uint8))
    small = pdq.area_resize(boxed, 64)
    assert small.shape[:2] == (64, 85) and pdq.trim_bars(small).shape[0] < 64
    assert pdq.to_hex(pdq.pdq_area(boxed, trim=True)[0]) == pdq.to_hex(_ref(pdq.trim_bars(small))[0])
