"""An index over a blocklist's PDQ hashes: every list hash within ``radius`` bits of each query.

FAISS binary indexes (``faiss-cpu``; the hasher-matcher-actioner's choice for PDQ):
  flat   ``IndexBinaryFlat``: a scan with hardware popcount; exact.
  mih    ``IndexBinaryMultiHash(256, 16, 16)``, ``nflip = 1``: multi-index hashing over 16
         sub-hashes of 16 bits. Two hashes within 31 bits differ in at most 1 bit of some
         sub-hash (pigeonhole: 16 x 2 > 31), so probing each table with up to 1 flipped bit
         finds every one of them: exact too, while touching ~1/250 of a large random list.
``kind="auto"`` picks flat up to ``FLAT_MAX`` hashes and mih above (measured in
``bench/blocklist.py``: bench/RESULTS.md).
"""
from __future__ import annotations

import numpy as np

from xclip_core.pdq import HASH_BYTES

FLAT_MAX = 200_000
KINDS = ("auto", "flat", "mih")


class HashIndex:
    def __init__(self, hashes: np.ndarray, *, kind: str = "auto", max_radius: int = 31):
        import faiss

        if kind not in KINDS:
            raise ValueError(f"kind: one of {KINDS}, got {kind!r}")
        hashes = np.ascontiguousarray(np.asarray(hashes, np.uint8).reshape(-1, HASH_BYTES))
        self.size = len(hashes)
        self.kind = ("flat" if self.size <= FLAT_MAX else "mih") if kind == "auto" else kind
        if self.kind == "mih" and max_radius > 31:
            raise ValueError(f"max_radius: mih(16 x 16 bits, 1 flip) finds distances up to 31, not {max_radius}")
        if self.kind == "flat":
            self.index = faiss.IndexBinaryFlat(8 * HASH_BYTES)
        else:
            self.index = faiss.IndexBinaryMultiHash(8 * HASH_BYTES, 16, 16)
            self.index.nflip = 1
        if self.size:
            self.index.add(hashes)

    def search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (query index [M], list index [M], distance [M]) of every pair within ``radius``."""
        queries = np.ascontiguousarray(np.asarray(queries, np.uint8).reshape(-1, HASH_BYTES))
        if not len(queries) or not self.size:
            z = np.zeros(0, np.int64)
            return z, z, z.astype(np.int32)
        lims, dist, ids = self.index.range_search(queries, int(radius) + 1)  # faiss: distance < radius
        q = np.repeat(np.arange(len(queries)), np.diff(lims.astype(np.int64)))
        return q, ids.astype(np.int64), dist.astype(np.int32)

    def nbytes(self) -> int:
        return 8 * HASH_BYTES // 8 * self.size
