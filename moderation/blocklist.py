"""Known-bad matching with PDQ / vPDQ: an upload's per-second frame hashes against a blocklist.

A blocklist (``--blocklist URI``) is a file, a folder or an ``s3://`` prefix holding any mix of
  * videos: one item each (id = file name), hashed by ``moderation.item_hash.item_hashes``
    (every 0.1 s, bars trimmed, 8 dihedral orientations, 6 centre-crop levels up to 9% per side,
    and the frame area-averaged to a 64 px short side);
  * ``.vpdq`` files: one item each (id = the file stem), vPDQ text format (``moderation.vpdq``);
  * ``.pdq`` files: image hashes, one item per line (id = the line's ``,id``), matched against
    single frames.
The old ``.json`` hash files (``xclip-index/frame-hashes-1``) held a PDQ-like hash that PDQ
does not reproduce: they are refused with the fix (re-hash the videos to ``.vpdq``).

Match (``Blocklist.match``), per upload (``FrameHashes``: one hash and one mirror hash per
second, with PDQ quality):
  1. frames with quality < ``min_quality`` (50, as vPDQ) are skipped, on both sides, except the
     low-quality tier: an upload frame with quality in [``low_quality``, ``min_quality``)
     (30-49) may match, but only within ``low_distance`` (16 bits) of an item frame, and item
     frames under ``min_quality`` are never in the index, so two dark or flat frames never
     match each other. (A dark, low-texture clip scaled down to 160x90 has quality 38-48 at
     8-22 bits from its item: ``bench/blocklist.py``.) A match that used the tier says so in
     its mode (``+low-quality``);
  2. every list hash within ``max_distance`` (31, PDQ's own threshold) of an upload hash or its
     mirror is found with ``moderation.hash_index.HashIndex`` (no scan in Python);
  3. per item and alignment (item time - upload time, within ``max_offset_drift_s``), each
     upload second keeps its closest hit; matched seconds form a segment while at most
     ``max_gap_s`` good-quality seconds in a row do not match (low-quality seconds that do not
     match are unknown, not a mismatch: they neither break nor count);
  4. a segment is a match when it is at least ``min_seconds`` long (default 3), or covers at
     least ``min_item_share`` of the item's seconds (a short item inside a long upload), or at
     least ``min_upload_share`` of the upload's good-quality seconds (plus its low-quality seconds
     that matched) with 2 or more matched (an
     upload that is a short excerpt of a long item); a segment shorter than ``min_seconds``
     (flagged by a share alone) must also hold one frame within ``strong_distance`` (20 bits):
     two frames at 30 bits are what another stretch of a similar, unrelated clip gives
     (``bench/blocklist.py``: a 2 s excerpt of one rotating-globe animation against another part
     of it, best 30 bits; every true 2 s excerpt there had a frame within 10). An image hash
     (``.pdq``) matches on one frame.
A match carries the evidence: item id, upload range, item range, best and median Hamming
distance, matched seconds, and the mode (``direct``, ``mirror``, ``dihedral:<name>``,
``crop:<pct>%``, ``scale:64px``...).
"""
from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np

from xclip_core.pdq import MATCH_DISTANCE, QUALITY_MIN

log = logging.getLogger(__name__)
VIDEO, VPDQ, IMAGE = "video", "vpdq", "image"
LEGACY_JSON = "xclip-index/frame-hashes-1"


class BlocklistError(ValueError):
    """The blocklist cannot be read; the message names it and says the fix."""


@dataclasses.dataclass(frozen=True)
class MatchConfig:
    max_distance: int = MATCH_DISTANCE
    strong_distance: int = 20    # a segment flagged by a share alone needs one frame this close
    min_quality: int = QUALITY_MIN
    low_quality: int = 30        # upload frames in [low_quality, min_quality) match only ...
    low_distance: int = 16       # ... within this many bits (the low-quality tier)
    min_seconds: float = 3.0
    min_item_share: float = 0.5
    min_upload_share: float = 0.8
    max_gap_s: int = 2           # unmatched good-quality seconds a segment may span
    max_offset_drift_s: float = 1.5
    index_kind: str = "auto"

    def __post_init__(self):
        if not 0 <= self.max_distance <= 64:
            raise ValueError(f"max_distance: must be in [0, 64] bits, got {self.max_distance}")
        if not 0 <= self.strong_distance <= 64:
            raise ValueError(f"strong_distance: must be in [0, 64] bits, got {self.strong_distance}")
        if not 0 <= self.min_quality <= 100:
            raise ValueError(f"min_quality: must be in [0, 100], got {self.min_quality}")
        if not 0 <= self.low_quality <= 100:
            raise ValueError(f"low_quality: must be in [0, 100], got {self.low_quality}")
        if not 0 <= self.low_distance <= self.max_distance:
            raise ValueError(f"low_distance: must be in [0, max_distance], got {self.low_distance}")
        if self.min_seconds <= 0:
            raise ValueError(f"min_seconds: must be > 0, got {self.min_seconds}")
        for name in ("min_item_share", "min_upload_share"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in (0, 1], got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class Item:
    """One list entry. ``modes[k]`` names how hash k was made (see ``item_hash.mode_name``)."""
    id: str
    kind: str                 # video | vpdq | image
    times: np.ndarray         # [N] item seconds
    hashes: np.ndarray        # [N, 32]
    quality: np.ndarray       # [N]
    modes: tuple = ("direct",)
    mode_of: np.ndarray | None = None   # [N] index into modes (None: all "direct")
    uri: str | None = None

    @property
    def seconds(self) -> int:
        """Distinct whole seconds with a hashable frame (the denominator of the item share)."""
        return max(1, len(np.unique(np.floor(self.times[self.quality >= QUALITY_MIN] + 1e-6))))


@dataclasses.dataclass(frozen=True)
class Match:
    item_id: str
    start_s: float            # upload range
    end_s: float
    item_start_s: float       # item range
    item_end_s: float
    best_distance: int
    median_distance: float
    matched_s: float          # upload seconds matched
    item_share: float         # of the item's seconds
    mode: str

    def evidence(self) -> dict:
        return dataclasses.asdict(self)


class Blocklist:
    """Items plus one hash index over all their (good-quality) hashes."""

    def __init__(self, items: list[Item], cfg: MatchConfig = MatchConfig()):
        from moderation.hash_index import HashIndex

        self.items, self.cfg = list(items), cfg
        keep = [np.flatnonzero(it.quality >= cfg.min_quality) for it in self.items]
        self.item_of = np.concatenate([np.full(len(k), i, np.int32) for i, k in enumerate(keep)] or [np.zeros(0, np.int32)])
        self.row_of = np.concatenate(keep or [np.zeros(0, np.int64)]).astype(np.int64)
        hashes = [it.hashes[k] for it, k in zip(self.items, keep)]
        self.index = HashIndex(np.concatenate(hashes) if hashes else np.zeros((0, 32), np.uint8),
                               kind=cfg.index_kind, max_radius=cfg.max_distance)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_hashes(self) -> int:
        return self.index.size

    def match(self, fh) -> list[Match]:
        """Matches of one upload (``times``, ``hashes``, ``mirror``, ``quality``; see module doc)."""
        cfg = self.cfg
        quality = np.asarray(fh.quality)
        ok = np.flatnonzero(quality >= min(cfg.min_quality, cfg.low_quality))
        if not len(ok) or not self.index.size:
            return []
        times = np.asarray(fh.times, np.float64)[ok]
        good = quality[ok] >= cfg.min_quality  # False: the low-quality tier
        queries = np.concatenate([np.asarray(fh.hashes)[ok], np.asarray(fh.mirror)[ok]])
        q, lst, dist = self.index.search(queries, cfg.max_distance)
        mirrored = q >= len(ok)
        q = q % len(ok)
        keep = good[q] | (dist <= cfg.low_distance)
        q, lst, dist, mirrored = q[keep], lst[keep], dist[keep], mirrored[keep]
        # seconds the upload share counts: good-quality ones plus low-quality ones with a hit
        n_upload = int(good.sum()) + len(np.unique(q[~good[q]]))
        out = []
        items = self.item_of[lst]
        for i in np.unique(items):
            sel = items == i
            out.extend(self._item_matches(self.items[i], times, good, n_upload, q[sel], self.row_of[lst[sel]],
                                          dist[sel], mirrored[sel]))
        return sorted(out, key=lambda m: (m.start_s, m.item_id))

    def _item_matches(self, item: Item, times, good, n_upload, q, rows, dist, mirrored) -> list[Match]:
        cfg = self.cfg
        if item.kind == IMAGE:
            k = int(np.argmin(dist))
            return [self._make(item, [int(q[k])], times, good,
                               {int(q[k]): (int(dist[k]), int(rows[k]), bool(mirrored[k]))}, 1.0)]
        good_before = np.concatenate([[0], np.cumsum(good)])  # [j]: good-quality frames among the first j
        # candidate alignments: each hit's offset (item time - upload time); a segment is a run of
        # upload seconds with a hit within max_offset_drift_s of one alignment
        offsets = item.times[rows] - times[q]
        found = []
        for key in np.unique(np.round(offsets)):
            sel = np.abs(offsets - key) <= cfg.max_offset_drift_s
            best: dict[int, tuple] = {}  # upload frame -> (distance, item row, mirrored)
            for qi, r, d, m in zip(q[sel].tolist(), rows[sel].tolist(), dist[sel].tolist(), mirrored[sel].tolist()):
                if qi not in best or (d, m) < best[qi][::2]:
                    best[qi] = (d, r, m)
            frames = sorted(best)
            runs, cur = [], [frames[0]]
            for f in frames[1:]:
                if good_before[f] - good_before[cur[-1] + 1] <= cfg.max_gap_s:  # good-quality frames between
                    cur.append(f)
                else:
                    runs.append(cur)
                    cur = [f]
            runs.append(cur)
            for run in runs:
                item_secs = len(np.unique(np.floor(item.times[[best[f][1] for f in run]] + 1e-6)))
                share = min(1.0, item_secs / item.seconds)
                upload_share = len(run) / n_upload
                by_share = share >= cfg.min_item_share or (len(run) >= 2 and upload_share >= cfg.min_upload_share)
                strong = min(best[f][0] for f in run) <= cfg.strong_distance
                if len(run) >= cfg.min_seconds or (by_share and strong):
                    found.append(self._make(item, run, times, good, best, share))
        out: list[Match] = []  # overlapping candidates (neighbouring alignments): the longest wins
        for m in sorted(found, key=lambda m: (-m.matched_s, m.median_distance)):
            if all(m.end_s <= o.start_s or m.start_s >= o.end_s for o in out):
                out.append(m)
        return out

    @staticmethod
    def _make(item: Item, seg, times, good, best, share) -> Match:
        d = np.asarray([best[f][0] for f in seg])
        rows = [best[f][1] for f in seg]
        modes = [_mode(item, r, best[f][2]) for f, r in zip(seg, rows)]
        mode = max(sorted(set(modes)), key=modes.count)  # the most common over the segment
        if not good[seg].all():
            mode += "+low-quality"  # the segment holds frames matched through the low-quality tier
        it = item.times[rows]
        return Match(item.id, float(times[seg[0]]), float(times[seg[-1]]) + 1.0, float(it.min()), float(it.max()) + 1.0,
                     int(d.min()), float(np.median(d)), float(len(seg)), float(share), mode)


def _mode(item: Item, row: int, mirrored: bool) -> str:
    """How an item hash matched; the upload's mirror hash on the item's mirror is ``direct``."""
    mode = item.modes[item.mode_of[row]] if item.mode_of is not None else "direct"
    if not mirrored:
        return mode
    return {"direct": "mirror", "dihedral:flipy": "direct"}.get(mode, f"{mode}+mirror")


def _video_item(uri: str) -> Item:
    from moderation.item_hash import ItemHashError, item_hashes, item_modes

    try:
        ih = item_hashes(uri)
    except ItemHashError as e:
        raise BlocklistError(f"--blocklist: video {e}") from None
    modes = item_modes(ih.crop_levels)
    mode_of = (ih.levels.astype(np.int64) * 8 + ih.dihedral).astype(np.int32)
    return Item(uri.rstrip("/").rsplit("/", 1)[-1], VIDEO, ih.times, ih.hashes, ih.quality, modes, mode_of, uri)


def _stem(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _file_items(uri: str) -> list[Item]:
    from moderation.vpdq import HashFileError, parse_pdq_list, parse_vpdq
    from xclip_core import storage

    low = uri.lower()
    try:
        text = storage.read_bytes(uri).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BlocklistError(f"--blocklist {uri}: cannot read ({type(e).__name__}: {e})") from None
    try:
        if low.endswith(".vpdq"):
            v = parse_vpdq(text, uri)
            return [Item(_stem(uri), VPDQ, v.times, v.hashes, v.quality, uri=uri)]
        if low.endswith(".pdq"):
            return [Item(ident, IMAGE, np.zeros(1), h[None], np.full(1, 100, np.int16), uri=uri)
                    for ident, h in parse_pdq_list(text, uri)]
    except HashFileError as e:
        raise BlocklistError(f"--blocklist {e}") from None
    try:
        fmt = json.loads(text).get("format")
    except (json.JSONDecodeError, AttributeError):
        fmt = None
    if fmt == LEGACY_JSON:
        raise BlocklistError(f"--blocklist {uri}: a {LEGACY_JSON} file holds the old PDQ-like hashes, which "
                             "PDQ does not reproduce; re-hash the videos: xclip-index hash --out DIR VIDEO...")
    raise BlocklistError(f"--blocklist {uri}: expected videos, .vpdq or .pdq files")


def load_items(uri: str) -> list[Item]:
    """A file, folder or s3:// prefix of videos, .vpdq and .pdq files -> items (see module doc)."""
    from jobs.config import ConfigError, ReaderConfig
    from jobs.config import VIDEO_EXTENSIONS
    from jobs.reader import list_inputs

    if uri.lower().endswith((".vpdq", ".pdq", ".json")):
        return _file_items(uri)
    try:
        listed = list_inputs(ReaderConfig(inputs=(uri,), extensions=VIDEO_EXTENSIONS + ("vpdq", "pdq"))).to_pylist()
    except ConfigError as e:
        raise BlocklistError(str(e).replace("--input", "--blocklist")) from None
    if not listed:
        raise BlocklistError(f"--blocklist {uri}: no videos, .vpdq or .pdq files found")
    items: list[Item] = []
    for r in listed:
        if r.get("status") == "failed":
            raise BlocklistError(f"--blocklist {uri}: {r['uri']}: {r.get('error')}")
        u = r["uri"]
        items.extend(_file_items(u) if u.lower().endswith((".vpdq", ".pdq")) else [_video_item(u)])
    ids = [it.id for it in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise BlocklistError(f"--blocklist {uri}: item ids must be unique; repeated: {', '.join(dup[:5])}")
    return items


def load_blocklist(uri: str, cfg: MatchConfig = MatchConfig()) -> Blocklist:
    bl = Blocklist(load_items(uri), cfg)
    log.info("blocklist %s: %d items, %d hashes (%s index)", uri, len(bl), bl.num_hashes, bl.index.kind)
    return bl


def frame_hashes_from_lists(times, hashes, mirror, quality):
    """Stored lists (``frame_pdq`` rows, status rows' ``pdq_*``) -> ``FrameHashes``."""
    from xclip_core.video.frame_hash import FrameHashes

    def mat(hs):
        return np.frombuffer(b"".join(hs), np.uint8).reshape(len(hs), 32) if hs else np.zeros((0, 32), np.uint8)

    return FrameHashes(np.asarray(times, np.float64), np.zeros(len(times), np.int64), mat(hashes), mat(mirror),
                       np.asarray(quality, np.int16))
