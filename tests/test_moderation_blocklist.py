"""Known-bad matching with PDQ (``moderation.blocklist``): copies that were mirrored,
letterboxed, pillarboxed, centre-cropped by 8% per side, re-encoded in VP9, rotated, played at
another frame rate, trimmed by a fraction of a second or spliced into other footage match their
item (with the right mode and ranges); unrelated videos, dark and nearly flat ones included,
match nothing. Upload hashes come from the decode stage's hook (``decode_video``)."""
from __future__ import annotations

import numpy as np
import pytest

from moderation.blocklist import Blocklist, BlocklistError, Item, MatchConfig, load_blocklist, load_items
from tests.moderation_helpers import H, REPEATABLE_X264, W, encode, rich_frames, scale_frames
from xclip_core.video import DecodeConfig, decode_video


def _pad(frames, h, w):
    out = np.zeros((len(frames), h, w, 3), np.uint8)
    y, x = (h - frames.shape[1]) // 2, (w - frames.shape[2]) // 2
    out[:, y:y + frames.shape[1], x:x + frames.shape[2]] = frames
    return out


def _crop(frames, frac):
    dy, dx = round(H * frac), round(W * frac)
    return frames[:, dy:H - dy, dx:W - dx]


VARIANTS = {  # name -> (item seed, make(frames of that seed) -> (frames, encode kwargs), expected mode prefix)
    "mirror": (1, lambda f: (f[:, :, ::-1], {}), ("mirror", "dihedral:flipy")),
    "letterbox": (1, lambda f: (_pad(f, 240, 160), {}), ("direct",)),
    "pillarbox": (2, lambda f: (_pad(f, 120, 240), {}), ("direct",)),
    "crop8": (1, lambda f: (_crop(f, 0.08), {}), ("crop:",)),
    "crop4_vp9": (2, lambda f: (_crop(f, 0.04), {"codec": "libvpx-vp9", "options": {"crf": "36", "b:v": "0"}}),
                  ("crop:",)),
    "rot90": (2, lambda f: (np.ascontiguousarray(np.rot90(f, axes=(1, 2))), {}), ("dihedral:rot",)),
    "half_fps": (1, lambda f: (f[::2], {"fps": 5}), ("direct",)),
    "trim_0.5s": (2, lambda f: (f[5:], {}), ("direct",)),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bl")
    items = {s: encode(root / "bad" / f"bad{s}.mp4", rich_frames(s)) for s in (1, 2)}
    up = {}
    for name, (seed, make, _) in VARIANTS.items():
        frames, kw = make(rich_frames(seed))
        up[name] = encode(root / "up" / f"{name}.{'webm' if 'vp9' in name else 'mp4'}", frames, **kw)
    # 3 s of other footage, then 5 s of item 1 (its seconds 2-7)
    up["spliced"] = encode(root / "up" / "spliced.mp4", np.concatenate([rich_frames(20, 30), rich_frames(1)[20:70]]))
    rng = np.random.default_rng(0)
    unrelated = {"other11": rich_frames(11), "other12": rich_frames(12),
                 "dark": (rich_frames(13) * 0.08).astype(np.uint8),
                 "flat": np.clip(100 + rng.normal(0, 1.5, (80, H, W, 3)), 0, 255).astype(np.uint8)}
    for name, frames in unrelated.items():
        up[name] = encode(root / "up" / f"{name}.mp4", frames)
    return {"root": root, "items": items, "uploads": up, "unrelated": set(unrelated)}


@pytest.fixture(scope="module")
def blocklist(corpus):
    return load_blocklist(str(corpus["root"] / "bad"))


def _upload(uri):
    r = decode_video(uri, DecodeConfig(crop_size=32, shortest_edge=32, frames_per_clip=4, max_clips_per_video=None))
    assert r.status == "ok" and len(r.frame_hashes) >= 4
    return r.frame_hashes


def test_every_variant_matches_its_item_and_unrelated_match_nothing(corpus, blocklist, capsys):
    got = {name: blocklist.match(_upload(uri)) for name, uri in corpus["uploads"].items()}
    with capsys.disabled():
        for name, ms in got.items():
            print(f"\n{name}: " + "; ".join(f"{m.item_id} {m.mode} d={m.best_distance}/{m.median_distance:g} "
                                            f"{m.matched_s:g}s" for m in ms), end="")
    for name in corpus["unrelated"]:
        assert got[name] == [], (name, got[name])
    for name, (seed, _, modes) in VARIANTS.items():
        assert {m.item_id for m in got[name]} == {f"bad{seed}.mp4"}, (name, got[name])
        best = max(got[name], key=lambda m: m.matched_s)
        assert best.mode.startswith(modes), (name, best.mode)
        assert best.best_distance <= best.median_distance <= 31 and best.matched_s >= 5, (name, best)
    (m,) = got["spliced"]
    assert m.item_id == "bad1.mp4" and m.mode == "direct"
    assert 2.5 <= m.start_s <= 3.5 and m.end_s >= 7.0 and 1.5 <= m.item_start_s <= 2.5 and m.item_end_s >= 6.0
    (m,) = got["trim_0.5s"]
    assert 0.0 <= m.item_start_s <= 1.0 and m.start_s == 0.0


def test_tiny_copies_match_and_tiny_unrelated_videos_match_nothing(tmp_path, capsys):
    """Copies scaled to 0.25x (40x30 px) and 0.15x (24x18), area-averaged or with ffmpeg's
    default bicubic, match their item: the decode hook hashes a frame under 64 px upscaled to a
    128 px short side (items also get ``scale:64px`` hashes). Without either (the code before),
    3 of the 4 24x18 copies matched nothing; with the ``scale:64px`` hashes alone, 2. Tiny
    unrelated, dark and nearly flat videos match nothing. Every video is encoded repeatably
    (``REPEATABLE_X264``)."""
    for s in (1, 2):
        encode(tmp_path / "bad" / f"bad{s}.mp4", rich_frames(s), options=REPEATABLE_X264)
    blocklist = load_blocklist(str(tmp_path / "bad"))
    rng = np.random.default_rng(5)
    small = {"copy1_40x30_area": (1, scale_frames(rich_frames(1), 30, 40)),
             "copy2_40x30_bicubic": (2, scale_frames(rich_frames(2), 30, 40, "BICUBIC"))}
    small.update({f"copy{s}_24x18_{i.lower()}": (s, scale_frames(rich_frames(s), 18, 24, i))
                  for s in (1, 2) for i in ("AREA", "BICUBIC")})
    small.update({"other14_24x18": (None, scale_frames(rich_frames(14), 18, 24)),
                  "other16_40x30": (None, scale_frames(rich_frames(16), 30, 40)),
                  "dark_40x30": (None, scale_frames((rich_frames(15) * 0.08).astype(np.uint8), 30, 40)),
                  "flat_40x30": (None, np.clip(100 + rng.normal(0, 1.5, (80, 30, 40, 3)), 0, 255).astype(np.uint8))})
    got = {name: blocklist.match(_upload(encode(tmp_path / f"{name}.mp4", frames, options=REPEATABLE_X264)))
           for name, (_, frames) in small.items()}
    with capsys.disabled():
        for name, ms in got.items():
            print(f"\ntiny {name}: " + "; ".join(f"{m.item_id} {m.mode} d={m.best_distance}/{m.median_distance:g} "
                                                 f"{m.matched_s:g}s" for m in ms), end="")
    assert len(small) == 10
    for name, (seed, _) in small.items():
        assert {m.item_id for m in got[name]} == ({f"bad{seed}.mp4"} if seed else set()), (name, got[name])
        if seed:
            best = max(got[name], key=lambda m: m.matched_s)
            assert best.matched_s >= 3 and best.median_distance <= 31, (name, best)
            assert best.mode in ("direct", "scale:64px"), (name, best)


def test_low_quality_copies_match_closely_and_two_low_quality_videos_never_match(tmp_path, capsys):
    """The low-quality tier: a dimmed copy (PDQ quality 30-49, under vPDQ's 50) of a good item
    matches it (mode ``+low-quality``); without the tier it matched nothing. A low-quality video
    does not match its own low-quality copy (item frames under 50 are not in the index), nor an
    unrelated dark video."""
    for name, frames in {"bad1": rich_frames(1), "bad2": rich_frames(2),
                         "dark11": (rich_frames(11) * 0.5).astype(np.uint8)}.items():
        encode(tmp_path / "bad" / f"{name}.mp4", frames, options=REPEATABLE_X264)
    blocklist = load_blocklist(str(tmp_path / "bad"))
    uploads = {"dim1": (rich_frames(1) * 0.65).astype(np.uint8), "dim2": (rich_frames(2) * 0.6).astype(np.uint8),
               "dark11_copy": (rich_frames(11) * 0.5).astype(np.uint8),
               "dark12": (rich_frames(12) * 0.5).astype(np.uint8)}
    fhs = {name: _upload(encode(tmp_path / f"{name}.mp4", f, options=REPEATABLE_X264)) for name, f in uploads.items()}
    got = {name: blocklist.match(fh) for name, fh in fhs.items()}
    with capsys.disabled():
        for name, ms in got.items():
            print(f"\nlow-quality {name}: quality {fhs[name].quality.tolist()}; "
                  + "; ".join(f"{m.item_id} {m.mode} d={m.best_distance}/{m.median_distance:g} {m.matched_s:g}s"
                              for m in ms), end="")
    for name, fh in fhs.items():
        assert np.all((fh.quality >= 30) & (fh.quality < 50)), (name, fh.quality)
    for seed in (1, 2):
        (m,) = got[f"dim{seed}"]
        assert m.item_id == f"bad{seed}.mp4" and m.mode.endswith("+low-quality") and m.matched_s >= 5, m
        assert m.best_distance <= m.median_distance <= MatchConfig().low_distance, m
    assert got["dark11_copy"] == [] and got["dark12"] == []
    no_tier = Blocklist(blocklist.items, MatchConfig(low_quality=50))
    assert all(no_tier.match(fh) == [] for fh in fhs.values())


def test_low_quality_tier_needs_a_close_frame_and_does_not_break_segments():
    item = _synthetic(20, 1)
    bl = Blocklist([Item("long", "vpdq", np.arange(20.0), item, np.full(20, 90))])
    fh = _fh(_noisy(item, 14))
    fh.quality[:] = 40
    (m,) = bl.match(fh)
    assert (m.matched_s, m.best_distance, m.mode) == (20, 14, "direct+low-quality")
    fh = _fh(_noisy(item, 24))  # within max_distance, beyond low_distance: only good frames match
    assert bl.match(fh)[0].mode == "direct"
    fh.quality[:] = 40
    assert bl.match(fh) == []
    fh = _fh(item)
    fh.quality[:] = 29  # under low_quality: skipped whatever the distance
    assert bl.match(fh) == []
    # low-quality seconds that do not match are unknown, not a gap: 0-2 good, 3-7 low and far, 8-10 good
    up = _noisy(item[:11], 10)
    up[3:8] = _noisy(item[3:8], 24)
    fh = _fh(up)
    fh.quality[3:8] = 40
    (m,) = bl.match(fh)
    assert (m.start_s, m.end_s, m.matched_s, m.mode) == (0, 11, 6, "direct")
    with pytest.raises(ValueError, match="low_distance"):
        MatchConfig(low_distance=40)


def test_upload_hashes_are_one_per_second_by_timestamp(corpus):
    fh = _upload(corpus["uploads"]["half_fps"])  # 5 fps: frames at 0, 0.2, ...
    assert np.floor(fh.times + 1e-6).tolist() == list(range(8)) and np.all(fh.times - np.arange(8) < 0.2 + 1e-6)
    fh10 = _upload(corpus["items"][1])          # 10 fps original: the same seconds line up
    from xclip_core.pdq import hamming

    assert np.floor(fh10.times + 1e-6).tolist() == list(range(8))
    d = np.diag(hamming(fh.hashes, fh10.hashes))  # the same seconds at 5 and 10 fps: near
    assert np.median(d) <= 16 and (d <= 31).mean() >= 0.75, d


def _synthetic(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)


def _noisy(h, bits, seed=1):
    rng = np.random.default_rng(seed)
    out = np.unpackbits(h, axis=1)
    for row in out:
        row[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(out, axis=1)


def _fh(hashes, start=0.0):
    from xclip_core.video.frame_hash import FrameHashes

    n = len(hashes)
    return FrameHashes(start + np.arange(n, dtype=float), np.arange(n), hashes, _synthetic(n, 99), np.full(n, 90))


def test_segments_by_min_seconds_or_item_share():
    long_item = _synthetic(20, 1)
    short_item = _synthetic(2, 2)
    bl = Blocklist([Item("long", "vpdq", np.arange(20.0), long_item, np.full(20, 90)),
                    Item("short", "vpdq", np.arange(2.0), short_item, np.full(2, 90))])
    other = _synthetic(30, 3)
    # 3 s of the long item (its seconds 10-12) at 5-7 s of a 30 s upload: flagged by min_seconds
    up = other.copy()
    up[5:8] = _noisy(long_item[10:13], 12)
    (m,) = bl.match(_fh(up))
    assert (m.item_id, m.start_s, m.end_s, m.item_start_s, m.item_end_s, m.matched_s) == ("long", 5, 8, 10, 13, 3)
    assert m.best_distance == m.median_distance == 12 and m.mode == "direct"
    # 2 s of it: shorter than min_seconds and 10% of the item: not flagged
    up = other.copy()
    up[5:7] = long_item[10:12]
    assert bl.match(_fh(up)) == []
    assert [m.item_id for m in Blocklist(bl.items, MatchConfig(min_seconds=2)).match(_fh(up))] == ["long"]
    # an upload that is nothing but those 2 s (an excerpt): flagged by its own share
    (m,) = bl.match(_fh(_noisy(long_item[10:12], 8)))
    assert (m.item_id, m.start_s, m.end_s, m.item_start_s, m.matched_s) == ("long", 0, 2, 10, 2)
    assert bl.match(_fh(_noisy(long_item[10:11], 8))) == []  # but one matching second is not enough
    # the whole 2 s short item inside the 30 s upload: flagged by its share (vPDQ's 80%-of-both would not)
    up = other.copy()
    up[20:22] = short_item
    (m,) = bl.match(_fh(up))
    assert (m.item_id, m.start_s, m.end_s, m.item_share, m.matched_s) == ("short", 20, 22, 1.0, 2)
    # a low-quality upload frame is never matched
    fh = _fh(up)
    fh.quality[20:22] = 10
    assert bl.match(fh) == []
    # item times must advance with the upload's: the same hashes in shuffled order are no segment
    up = other.copy()
    up[5:11] = long_item[[0, 19, 10, 2, 16, 7]]
    assert bl.match(_fh(up)) == []



def test_share_flags_need_one_close_frame():
    """A segment shorter than min_seconds, flagged by a share alone, needs one frame within
    strong_distance (20 bits); two frames at 30 bits (what another stretch of a similar,
    unrelated clip gives in bench/blocklist.py) are not enough."""
    item = _synthetic(20, 1)
    short_item = _synthetic(2, 2)
    bl = Blocklist([Item("long", "vpdq", np.arange(20.0), item, np.full(20, 90)),
                    Item("short", "vpdq", np.arange(2.0), short_item, np.full(2, 90))])
    assert bl.match(_fh(_noisy(item[10:12], 30))) == []  # a 2 s "excerpt" at 30 bits a frame
    far_near = np.concatenate([_noisy(item[10:11], 30), _noisy(item[11:12], 14)])
    (m,) = bl.match(_fh(far_near))
    assert (m.item_id, m.matched_s, m.best_distance, m.median_distance) == ("long", 2, 14, 22)
    up = _synthetic(30, 3)
    up[20:22] = _noisy(short_item, 30)  # the short item's whole 2 s, both frames at 30 bits
    assert bl.match(_fh(up)) == []
    assert [m.item_id for m in Blocklist(bl.items, MatchConfig(strong_distance=31)).match(_fh(up))] == ["short"]
    # 3 s and more: min_seconds alone decides, whatever the distances under max_distance
    (m,) = bl.match(_fh(_noisy(item[10:13], 30)))
    assert (m.item_id, m.matched_s, m.best_distance) == ("long", 3, 30)
    with pytest.raises(ValueError, match="strong_distance"):
        MatchConfig(strong_distance=65)

def test_image_hashes_match_single_frames(tmp_path):
    frame = _synthetic(1, 5)
    (tmp_path / "images.pdq").write_text(f"# known images\n{frame[0].tobytes().hex()},case-7\n"
                                         f"{_synthetic(1, 6)[0].tobytes().hex()}\n")
    items = load_items(str(tmp_path / "images.pdq"))
    assert [i.id for i in items] == ["case-7", f"{tmp_path / 'images.pdq'}:3"] and {i.kind for i in items} == {"image"}
    up = _synthetic(10, 7)
    up[4] = _noisy(frame, 20)[0]
    (m,) = Blocklist(items).match(_fh(up))
    assert (m.item_id, m.start_s, m.matched_s, m.best_distance) == ("case-7", 4, 1, 20)


def test_match_config_validation():
    with pytest.raises(ValueError, match="min_seconds"):
        MatchConfig(min_seconds=0)
    with pytest.raises(ValueError, match="max_distance"):
        MatchConfig(max_distance=100)
    assert Blocklist([]).match(_fh(_synthetic(3))) == []


def test_hash_index_kinds_agree_with_a_scan():
    from moderation.hash_index import HashIndex
    from xclip_core.pdq import hamming

    lst = _synthetic(20000, 8)
    q = np.concatenate([_noisy(lst[i:i + 1], k, seed=k) for i, k in enumerate(range(0, 45))] + [_synthetic(5, 9)])
    want = {(int(a), int(b)) for a, b in zip(*np.nonzero(hamming(q, lst) <= 31))}
    for kind in ("flat", "mih"):
        qi, li, d = HashIndex(lst, kind=kind).search(q, 31)
        assert set(zip(qi.tolist(), li.tolist())) == want and len(want) == 32, kind
        assert np.array_equal(d, hamming(q[qi], lst[li]).diagonal()) if len(qi) < 100 else True


def test_blocklist_errors(tmp_path):
    bad = tmp_path / "x.vpdq"
    bad.write_text("0,00ff,100,0.0\n")
    with pytest.raises(BlocklistError, match="line 1.*64 hex digits"):
        load_items(str(bad))
    bad.write_text(f"0,{'ab' * 32},100,0.000\n1,{'ab' * 32},quality,1.000\n")
    with pytest.raises(BlocklistError, match="line 2"):
        load_items(str(bad))
    legacy = tmp_path / "old.json"
    legacy.write_text('{"format": "xclip-index/frame-hashes-1", "items": []}')
    with pytest.raises(BlocklistError, match="old PDQ-like hashes.*xclip-index hash"):
        load_items(str(legacy))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BlocklistError, match="no videos, .vpdq or .pdq"):
        load_items(str(tmp_path / "empty"))
    with pytest.raises(BlocklistError, match="no such folder"):
        load_items(str(tmp_path / "missing"))
