"""An index over a blocklist's PDQ hashes: every list hash within ``radius`` bits of each query.

Kinds (all exact for ``radius <= 31``; measured in ``bench/blocklist.py``, bench/RESULTS.md):
  flat   FAISS ``IndexBinaryFlat`` (``faiss-cpu``; what the hasher-matcher-actioner uses for
         small PDQ lists): a popcount scan of the whole list per query.
  mih    multi-index hashing in numpy: the 256 bits as 16 sub-hashes of 16 bits. Two hashes
         within 31 bits differ in at most 1 bit of some sub-hash (pigeonhole: 16 x 2 > 31), so
         looking up each sub-hash and its 16 one-bit neighbours in per-table buckets (a stable
         sort by sub-hash plus 65,537 offsets per table) finds every candidate; candidates are
         then checked with a full popcount. On a list of random-like hashes a query touches
         ~17 x 16 x N / 65,536 candidates instead of N. (FAISS's ``IndexBinaryMultiHash`` does
         the same, but built 1e6 hashes in 16 s here and searched no faster.)
``kind="auto"``: flat up to ``FLAT_MAX`` hashes, mih above.
"""
from __future__ import annotations

import numpy as np

from xclip_core.pdq import HASH_BYTES

FLAT_MAX = 50_000  # measured crossover: bench/RESULTS.md
KINDS = ("auto", "flat", "mih")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.uint8)
_TABLES = 16
_FLIPS = np.concatenate([[0], 1 << np.arange(16)]).astype(np.uint16)  # the sub-hash itself and its 16 neighbours


class HashIndex:
    def __init__(self, hashes: np.ndarray, *, kind: str = "auto", max_radius: int = 31):
        if kind not in KINDS:
            raise ValueError(f"kind: one of {KINDS}, got {kind!r}")
        self.hashes = np.ascontiguousarray(np.asarray(hashes, np.uint8).reshape(-1, HASH_BYTES))
        self.size = len(self.hashes)
        self.kind = ("flat" if self.size <= FLAT_MAX else "mih") if kind == "auto" else kind
        if self.kind == "mih" and max_radius > 31:
            raise ValueError(f"max_radius: mih (16 sub-hashes, 1 flip) finds distances up to 31, not {max_radius}")
        if self.kind == "flat":
            import faiss

            self.index = faiss.IndexBinaryFlat(8 * HASH_BYTES)
            if self.size:
                self.index.add(self.hashes)
        else:
            sub = self.hashes.view(">u2")  # [N, 16] sub-hashes (byte order is irrelevant to distances)
            self.perm = np.empty((_TABLES, self.size), np.uint32)
            self.offsets = np.empty((_TABLES, 65537), np.int64)
            for t in range(_TABLES):
                col = sub[:, t]
                self.perm[t] = np.argsort(col, kind="stable")
                self.offsets[t, 0] = 0
                np.cumsum(np.bincount(col, minlength=65536), out=self.offsets[t, 1:])

    def search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (query index [M], list index [M], distance [M]) of every pair within ``radius``."""
        queries = np.ascontiguousarray(np.asarray(queries, np.uint8).reshape(-1, HASH_BYTES))
        if not len(queries) or not self.size:
            z = np.zeros(0, np.int64)
            return z, z, z.astype(np.int32)
        if self.kind == "flat":
            lims, dist, ids = self.index.range_search(queries, int(radius) + 1)  # faiss: distance < radius
            q = np.repeat(np.arange(len(queries)), np.diff(lims.astype(np.int64)))
            return q, ids.astype(np.int64), dist.astype(np.int32)
        parts = [self._search_block(queries[i:i + 64], i, radius) for i in range(0, len(queries), 64)]
        return tuple(np.concatenate(p) for p in zip(*parts))

    def _search_block(self, qs: np.ndarray, first: int, radius: int):
        sub = qs.view(">u2")                                                    # [B, 16]
        probes = (sub[:, :, None] ^ _FLIPS[None, None, :]).astype(np.int64)    # [B, 16, 17]
        tables = np.broadcast_to(np.arange(_TABLES)[None, :, None], probes.shape)
        lo = self.offsets[tables, probes].ravel()
        n = self.offsets[tables, probes + 1].ravel() - lo
        qid = np.broadcast_to(np.arange(len(qs))[:, None, None], probes.shape).ravel()
        tab = tables.ravel()
        keep = n > 0
        lo, n, qid, tab = lo[keep], n[keep], qid[keep], tab[keep]
        total = int(n.sum())
        if not total:
            z = np.zeros(0, np.int64)
            return z, z, z.astype(np.int32)
        pos = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(total)
        cand = self.perm[np.repeat(tab, n), pos].astype(np.int64)
        q = np.repeat(qid, n)
        d = _POPCOUNT[self.hashes[cand] ^ qs[q]].sum(axis=1, dtype=np.int32)
        hit = d <= radius  # few; a pair found through several sub-hashes is kept once
        pair, first_at = np.unique(q[hit].astype(np.int64) * self.size + cand[hit], return_index=True)
        return pair // self.size + first, pair % self.size, d[hit][first_at]

    @property
    def nbytes(self) -> int:
        extra = self.perm.nbytes + self.offsets.nbytes if self.kind == "mih" else 0
        return self.hashes.nbytes + extra
