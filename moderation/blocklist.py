"""Known-bad video matching in the spirit of vPDQ: per-second frame hashes
(``moderation.hashing``) of an upload against those of each blocklist item.

A blocklist (``--blocklist URI``) is either
  * a folder or ``s3://`` prefix of known-bad videos (listed like job inputs, decoded and
    hashed on the driver with the job's decode settings), or
  * a hash file (``.json``), e.g. written by ``write_hash_file``::

        {"format": "xclip-index/frame-hashes-1",
         "items": [{"id": "case-123", "uri": "optional", "times": [0.0, 1.0, ...],
                    "hashes": ["<64 hex digits>", ...]}]}

Match (``match``): with ``d(q, i)`` the Hamming distance between an upload hash ``q`` and an
item hash ``i``, the upload's share is the fraction of its per-second hashes with some item hash
within ``max_distance``; the item's share is the fraction of its seconds (item times rounded to
the second; items decoded from videos keep every sampled frame) with a frame within
``max_distance`` of some upload hash. Both shares >=
``min_share`` -> a match: the upload is ``block``ed, with the item id and the time range of the
upload's matching seconds (first to last, + 1 s). Both ways, so a short upload that is a part
of a long item matches only when it covers ``min_share`` of the item, and a long upload that
contains a short item only when the item is ``min_share`` of it.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from moderation.hashing import HASH_BYTES, from_hex, hamming, per_second, to_hex

HASH_FILE_FORMAT = "xclip-index/frame-hashes-1"


class BlocklistError(ValueError):
    """The blocklist cannot be read; the message names it."""


@dataclasses.dataclass(frozen=True)
class MatchConfig:
    max_distance: int = 64      # of 256 bits; measured, see module doc
    min_share: float = 0.5      # both ways

    def __post_init__(self):
        if not 0 <= self.max_distance <= 256:
            raise ValueError(f"max_distance: must be in [0, 256], got {self.max_distance}")
        if not 0 < self.min_share <= 1:
            raise ValueError(f"min_share: must be in (0, 1], got {self.min_share}")


@dataclasses.dataclass(frozen=True)
class Item:
    id: str
    times: np.ndarray       # [N] seconds
    hashes: np.ndarray      # [N, 32] uint8
    uri: str | None = None


@dataclasses.dataclass(frozen=True)
class Match:
    item_id: str
    share_query: float
    share_item: float
    start_s: float
    end_s: float


def match(times: np.ndarray, hashes: np.ndarray, items: list[Item], cfg: MatchConfig = MatchConfig()) -> list[Match]:
    """Matches of one upload's per-second hashes against every item (see module doc)."""
    hashes = np.asarray(hashes, np.uint8).reshape(-1, HASH_BYTES)
    out = []
    if not len(hashes):
        return out
    for item in items:
        if not len(item.hashes):
            continue
        close = hamming(hashes, item.hashes) <= cfg.max_distance  # [Nq, Ni]
        q_hit, i_hit = close.any(axis=1), close.any(axis=0)
        # an item may carry more than one hash per second: its share counts seconds
        sec = np.round(np.asarray(item.times, np.float64)).astype(np.int64)
        share_q, share_i = float(q_hit.mean()), len(np.unique(sec[i_hit])) / len(np.unique(sec))
        if share_q >= cfg.min_share and share_i >= cfg.min_share:
            t = np.asarray(times, np.float64)[q_hit]
            out.append(Match(item.id, share_q, share_i, float(t.min()), float(t.max()) + 1.0))
    return sorted(out, key=lambda m: -min(m.share_query, m.share_item))


def hash_video(uri: str, dcfg, *, every_frame: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``uri`` with ``dcfg`` (the job's decode settings) -> per-second (times, hashes);
    ``every_frame``: the hashes of all sampled frames instead (blocklist items: denser in time,
    so an upload trimmed at a fraction of a second still finds a frame near each of its seconds)."""
    from moderation.hashing import frame_hashes
    from xclip_core.video import decode_video

    result = decode_video(uri, dcfg)
    if result.status != "ok" or not result.clips:
        raise BlocklistError(f"blocklist video {uri}: cannot decode ({result.reason or result.status})")
    ts = np.concatenate([np.asarray(c.timestamps, np.float64) for c in result.clips])
    hs = np.concatenate([frame_hashes(c.frames) for c in result.clips])
    if every_frame:
        order = np.argsort(ts, kind="stable")
        return ts[order], hs[order]
    duration = result.meta.duration_s if result.meta is not None else None
    return per_second(ts, hs, duration)


def load_blocklist(uri: str, dcfg) -> list[Item]:
    """A hash file (``.json``) or a folder / prefix of videos -> items (see module doc)."""
    from xclip_core import storage

    if uri.lower().endswith(".json"):
        try:
            doc = json.loads(storage.read_bytes(uri).decode("utf-8"))
        except (OSError, FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BlocklistError(f"--blocklist {uri}: cannot read the hash file ({type(e).__name__}: {e})") from None
        if not isinstance(doc, dict) or doc.get("format") != HASH_FILE_FORMAT:
            raise BlocklistError(f"--blocklist {uri}: expected a JSON object with format {HASH_FILE_FORMAT!r}")
        items = []
        for k, it in enumerate(doc.get("items") or []):
            try:
                hs = np.stack([from_hex(h) for h in it["hashes"]]) if it["hashes"] else np.zeros((0, HASH_BYTES))
                times = np.asarray(it.get("times") or np.arange(len(hs)), np.float64)
                if len(times) != len(hs):
                    raise ValueError(f"{len(times)} times for {len(hs)} hashes")
                items.append(Item(str(it["id"]), times, hs.astype(np.uint8), it.get("uri")))
            except (KeyError, TypeError, ValueError) as e:
                raise BlocklistError(f"--blocklist {uri}: items[{k}]: {type(e).__name__}: {e}") from None
        return items
    from jobs.config import ReaderConfig
    from jobs.reader import list_inputs

    listed = list_inputs(ReaderConfig(inputs=(uri,))).to_pylist()
    if not listed:
        raise BlocklistError(f"--blocklist {uri}: no videos found (a folder, s3:// prefix or .json hash file)")
    items = []
    for r in listed:
        if r.get("status") == "failed":
            raise BlocklistError(f"--blocklist {uri}: {r['uri']}: {r.get('error')}")
        times, hs = hash_video(r["uri"], dcfg, every_frame=True)
        items.append(Item(r["uri"].rstrip("/").rsplit("/", 1)[-1], times, hs, r["uri"]))
    return items


def write_hash_file(uri: str, items: list[Item]) -> str:
    """Write items as a hash file (local or ``s3://``)."""
    from moderation.store import write_text

    doc = {"format": HASH_FILE_FORMAT, "items": [
        {"id": it.id, "uri": it.uri, "times": [float(t) for t in it.times], "hashes": [to_hex(h) for h in it.hashes]}
        for it in items]}
    return write_text(uri, json.dumps(doc))
