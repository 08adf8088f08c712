"""Known-bad matching on generated copies: re-encoded (H.264 low bitrate, VP9, HEVC), resized,
cropped by a few percent and trimmed copies of blocklisted videos match; unrelated videos do
not. Precision/recall over every (query, item) pair is printed and bounded."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moderation.blocklist import BlocklistError, Item, MatchConfig, load_blocklist, match, write_hash_file
from moderation.hashing import frame_hashes, per_second
from tests.moderation_helpers import H, W, encode, resize, rich_frames

SOURCES, UNRELATED = (1, 2, 3), (11, 12, 13, 14)


VARIANTS = {
    "h264_low_bitrate": lambda f, p: encode(p / "x.mp4", f, options={"crf": "38"}),
    "vp9": lambda f, p: encode(p / "x.webm", f, codec="libvpx-vp9", options={"crf": "40", "b:v": "0"}),
    "hevc": lambda f, p: encode(p / "x.mkv", f, codec="libx265", options={"crf": "32", "x265-params": "log-level=0"}),
    "resized_60pct": lambda f, p: encode(p / "x.mp4", resize(f, 0.6)),
    "cropped_4pct": lambda f, p: encode(p / "x.mp4", f[:, int(H * .04):H - int(H * .04), int(W * .04):W - int(W * .04)]),
    "trimmed": lambda f, p: encode(p / "x.mp4", f[23:-7]),  # 2.3 s off the start, 0.7 s off the end
}


def _dcfg():
    from jobs.config import DecoderConfig
    from jobs.decoder import decode_config

    return decode_config(DecoderConfig.from_settings(max_clips_per_video=None), frames_per_clip=8, crop_size=64, shortest_edge=64)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocklist")
    originals = {s: encode(root / "bad" / f"bad{s}.mp4", rich_frames(s)) for s in SOURCES}
    queries = {}  # uri -> the source it copies (None: unrelated)
    for s in SOURCES:
        frames = rich_frames(s)
        for name, make in VARIANTS.items():
            queries[make(frames, root / "q" / f"{s}-{name}")] = s
    for s in UNRELATED:
        queries[encode(root / "q" / f"other{s}.mp4", rich_frames(s))] = None
    return {"root": root, "originals": originals, "queries": queries}


def _query_hashes(uri, dcfg):
    from moderation.blocklist import hash_video

    return hash_video(uri, dcfg)


def test_hash_is_stable_and_discriminative():
    f = rich_frames(1)[:10]
    h = frame_hashes(f)
    assert h.shape == (10, 32) and h.dtype == np.uint8
    np.testing.assert_array_equal(frame_hashes(f), h)
    from moderation.hashing import hamming

    noisy = np.clip(f.astype(int) + np.random.default_rng(0).integers(-8, 9, f.shape), 0, 255).astype(np.uint8)
    assert np.diag(hamming(h, frame_hashes(noisy))).max() <= 31
    other = frame_hashes(rich_frames(2)[:10])
    assert hamming(h, other).min() > 60  # unrelated content is far away


def test_per_second_picks_nearest_frames():
    ts = np.array([0.1, 0.6, 1.2, 1.9, 2.4])
    hs = np.arange(5, dtype=np.uint8)[:, None].repeat(32, 1)
    times, picked = per_second(ts, hs, 3.0)
    assert times.tolist() == [0.0, 1.0, 2.0] and picked[:, 0].tolist() == [0, 2, 3]


def test_variants_match_and_unrelated_do_not(corpus, capsys):
    dcfg = _dcfg()
    items = load_blocklist(str(corpus["root"] / "bad"), dcfg)  # a folder of known-bad videos
    assert sorted(i.id for i in items) == sorted(Path(u).name for u in corpus["originals"].values())
    id_of = {s: Path(u).name for s, u in corpus["originals"].items()}
    tp = fp = fn = 0
    misses, false = [], []
    for uri, src in corpus["queries"].items():
        times, hs = _query_hashes(uri, dcfg)
        got = {m.item_id for m in match(times, hs, items)}
        want = {id_of[src]} if src is not None else set()
        tp += len(got & want)
        fp += len(got - want)
        fn += len(want - got)
        if want - got:
            misses.append(uri)
        if got - want:
            false.append((uri, got - want))
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    with capsys.disabled():
        print(f"\nblocklist matching: {len(corpus['queries'])} queries x {len(items)} items: "
              f"precision {precision:.3f}, recall {recall:.3f} (tp {tp}, fp {fp}, fn {fn}); misses {misses}")
    assert fp == 0, false
    assert recall == 1.0, misses


def test_trimmed_copy_match_time_range(corpus):
    dcfg = _dcfg()
    items = load_blocklist(str(corpus["root"] / "bad"), dcfg)
    uri = next(u for u, s in corpus["queries"].items() if s == 1 and "trimmed" in u)
    times, hs = _query_hashes(uri, dcfg)
    (m,) = match(times, hs, items)
    assert m.item_id == "bad1.mp4" and m.start_s == 0.0 and m.end_s >= 4.0
    assert m.share_query > 0.8 and 0.5 <= m.share_item < 1.0  # the copy covers part of the item


def test_hash_file_round_trip_and_errors(corpus, tmp_path, s3_server, s3_bucket):
    dcfg = _dcfg()
    items = load_blocklist(str(corpus["root"] / "bad"), dcfg)
    uri = f"s3://{s3_bucket}/bl/hashes.json"
    write_hash_file(uri, items)
    again = load_blocklist(uri, dcfg)
    assert [i.id for i in again] == [i.id for i in items]
    for a, b in zip(items, again):
        np.testing.assert_array_equal(a.hashes, b.hashes)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    with pytest.raises(BlocklistError, match="format"):
        load_blocklist(str(bad), dcfg)
    bad.write_text('{"format": "xclip-index/frame-hashes-1", "items": [{"id": "x", "hashes": ["abcd"]}]}')
    with pytest.raises(BlocklistError, match=r"items\[0\].*32 bytes"):
        load_blocklist(str(bad), dcfg)


def test_match_config_validation():
    with pytest.raises(ValueError, match="min_share"):
        MatchConfig(min_share=0)
    assert match(np.zeros(0), np.zeros((0, 32), np.uint8), [Item("x", np.zeros(1), np.zeros((1, 32), np.uint8))]) == []
