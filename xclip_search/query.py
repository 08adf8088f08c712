"""The query builder returned by ``Index.search`` / ``Index.similar``.

    idx.search("a dog jumping into a lake").where("start_s >= 5").labels_any(["swimming"]) \\
       .per_video().limit(10).to_pandas()

Options (each returns the query; nothing runs until ``to_arrow`` / ``to_pandas`` / ``to_list``):
    limit(n)          hits to return (default 10)
    where(sql)        the caller's SQL filter on the table's columns: one expression (schemas.sql.check_filter)
    labels_any(ls)    keep rows whose ``labels`` contain any of ``ls`` (values are escaped)
    labels_match(t)   keep rows whose labels hold every word of ``t``, any case, full text over
                      ``label_text`` ("swimming" matches "swimming backstroke"; see _match_sql)
    per_video()       the best clip per video only
    per_shot()        search the ``shots`` table (``--segments shots``: one row per shot, the mean of
                      its clip embeddings) instead of clips: hits are shot ranges
                      (``xclip_search.shots``); combines with per_video, where, labels_*
    rerank(n)         rescore the top ``n`` with X-CLIP's prompt generator (needs prompt
                      features: ``--store-prompt-features``): score = cosine of the clip embedding
                      and the query's text feature prompted by the clip's visual tokens
    nprobes(n), refine_factor(n)   ANN search knobs, used when the table has a vector index
                      (defaults ``xclip_store.indexes.SEARCH_NPROBES`` / ``SEARCH_REFINE_FACTOR``)

Output columns, best first (segments: clip hits; videos: ``similar(video_id)``):
    video_id, uri, [segment_id, segment_index, start_s, end_s,] score, labels, label_scores
    per_shot(): video_id, uri, shot_id, shot_index, start_s, end_s, num_segments, score, labels,
    label_scores
``score`` is the cosine similarity (1 - cosine distance), or the reranked score.
"""
from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from schemas import SEGMENTS_TABLE, VIDEOS_TABLE
from schemas.sql import sql_str


def label_words(text: str) -> list[str]:
    """Lower-case words of ``text``, split on what is not a letter or digit (LanceDB's simple
    tokenizer, which builds the ``label_text`` FTS index and ``contains_tokens``)."""
    return re.findall(r"[^\W_]+", text.lower())


_CLIP_COLUMNS = ["video_id", "uri", "segment_id", "segment_index", "start_s", "end_s", "labels", "label_scores"]
_VIDEO_COLUMNS = ["video_id", "uri", "labels", "label_scores"]
MAX_LIMIT = 1_000_000  # hits per query (LanceDB takes a u32; per_video() fetches a multiple)
_MAX_FETCH = 2**32 - 1


class Query:
    def __init__(self, index, table: str, vector: np.ndarray, *, text: str | None = None,
                 first: tuple[str, str] | None = None):
        self._index, self._table, self._vector, self._text, self._first = index, table, vector, text, first
        self._limit, self._where, self._labels, self._match = 10, None, None, None
        self._per_video, self._rerank = False, 0
        from xclip_store.indexes import SEARCH_NPROBES, SEARCH_REFINE_FACTOR

        self._nprobes, self._refine = SEARCH_NPROBES, SEARCH_REFINE_FACTOR  # used only with an ANN index

    # ------------------------------------------------------------------ options
    def limit(self, n: int) -> "Query":
        if not isinstance(n, int) or not 1 <= n <= MAX_LIMIT:
            raise ValueError(f"limit: expected an int from 1 to {MAX_LIMIT}, got {n!r}")
        self._limit = n
        return self

    def where(self, sql: str) -> "Query":
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError("where: expected a non-empty SQL filter")
        from schemas.sql import check_filter

        self._where = check_filter(sql)
        return self

    def labels_any(self, labels) -> "Query":
        labels = [labels] if isinstance(labels, str) else list(labels)
        if not labels:
            raise ValueError("labels_any: expected at least one label")
        for x in labels:
            sql_str(x)  # type check
        self._labels = labels
        return self

    def labels_match(self, text: str) -> "Query":
        if not isinstance(text, str) or not label_words(text):
            raise ValueError(f"labels_match: expected a text with at least one word, got {text!r}")
        tbl = self._index.table(self._table)
        if "label_text" not in tbl.schema.names:
            raise ValueError(f"labels_match: the {self._table!r} table has no label_text column (written "
                             "before schema 3): run `xclip-index build-index --index URI` to add it")
        self._match = text
        return self

    def per_video(self, enabled: bool = True) -> "Query":
        self._per_video = bool(enabled)
        return self

    def per_shot(self, enabled: bool = True) -> "Query":
        from xclip_search.shots import SHOTS_TABLE, check_shots

        if not enabled:
            return self
        if self._table not in (SEGMENTS_TABLE, SHOTS_TABLE) or self._rerank:
            raise ValueError("per_shot: only for clip search (search(text | vector)), without rerank")
        check_shots(self._index)
        self._table = SHOTS_TABLE
        return self

    def rerank(self, n: int) -> "Query":
        if self._table != SEGMENTS_TABLE or self._text is None:
            raise ValueError("rerank: only for text search over clips")
        if not isinstance(n, int) or not 1 <= n <= MAX_LIMIT:
            raise ValueError(f"rerank: expected an int from 1 to {MAX_LIMIT}, got {n!r}")
        self._index.table("prompt_features")  # fails early, saying how to get them
        self._rerank = n
        return self

    def nprobes(self, n: int) -> "Query":
        self._nprobes = int(n)
        return self

    def refine_factor(self, n: int) -> "Query":
        self._refine = int(n)
        return self

    # ------------------------------------------------------------------ running
    def filter_sql(self) -> str | None:
        parts = ["status = 'ok'"] if self._table == VIDEOS_TABLE else []  # not deleted/failed/indexing videos
        if self._where:
            parts.append(f"({self._where})")
        if self._labels:
            parts.append(f"array_has_any(labels, [{', '.join(sql_str(x) for x in self._labels)}])")
        if self._match:
            parts.append(self._match_sql())
        return " AND ".join(parts) or None

    def _match_sql(self) -> str:
        """``labels_match``: rows whose labels, together, hold every word. With the label lists of
        the run manifests, one ``array_has_any`` per word over the labels holding it (LabelList
        index); for an index from before schema "3", ``contains_tokens`` on ``label_text`` (a scan).
        Both select the same rows: ``label_text`` is the labels joined, lower case."""
        words = sorted(set(label_words(self._match)))
        vocab = self._index.label_vocabulary()
        if vocab is None:
            return f"contains_tokens(label_text, {sql_str(' '.join(words))})"
        parts = []
        for w in words:
            having = [x for x, tokens in vocab.items() if w in tokens]
            if not having:
                return "false"
            parts.append(f"array_has_any(labels, [{', '.join(sql_str(x) for x in having)}])")
        return " AND ".join(parts)

    def _fetch(self, k: int) -> pa.Table:
        from xclip_search.shots import SHOT_COLUMNS, SHOTS_TABLE, current_shots

        cols = {SEGMENTS_TABLE: _CLIP_COLUMNS, SHOTS_TABLE: SHOT_COLUMNS}.get(self._table, _VIDEO_COLUMNS)
        q = self._index.table(self._table).search(self._vector, vector_column_name="embedding") \
            .distance_type("cosine")
        sql = self.filter_sql()
        if sql:
            q = q.where(sql, prefilter=True)
        if self._nprobes:
            q = q.nprobes(self._nprobes)
        if self._refine and self._refine > 1:
            q = q.refine_factor(self._refine)
        t = q.select(cols + ["_distance"]).limit(k).to_arrow()
        score = pa.compute.subtract(pa.scalar(1.0, pa.float32()), t.column("_distance").cast(pa.float32()))
        t = t.drop_columns(["_distance"]).append_column("score", score)
        return current_shots(self._index, t) if self._table == SHOTS_TABLE else t

    def to_arrow(self) -> pa.Table:
        n = self._limit
        want = max(n, self._rerank)
        k = want * 4 if self._per_video else want
        while True:
            t = self._fetch(k)
            hits = self._dedupe(t) if self._per_video else t
            if hits.num_rows >= want or t.num_rows < k or k >= _MAX_FETCH:
                break
            k = min(k * 4, _MAX_FETCH)
        if self._rerank:
            hits = self._reranked(hits.slice(0, self._rerank))
        hits = self._first_item(hits)
        return hits.slice(0, n)

    def _dedupe(self, t: pa.Table) -> pa.Table:
        seen, keep = set(), []
        for i, vid in enumerate(t.column("video_id").to_pylist()):
            if vid not in seen:
                seen.add(vid)
                keep.append(i)
        return t.take(pa.array(keep, pa.int64()))

    def _first_item(self, t: pa.Table) -> pa.Table:
        """similar(): the item itself first (ties with identical embeddings could otherwise reorder it)."""
        if self._first is None or t.num_rows == 0:
            return t
        col, key = self._first
        keys = t.column(col).to_pylist()
        if key in keys:
            i = keys.index(key)
            order = [i] + [j for j in range(t.num_rows) if j != i]
            return t.take(pa.array(order, pa.int64()))
        return t

    def _reranked(self, t: pa.Table) -> pa.Table:
        import torch
        import torch.nn.functional as F

        if t.num_rows == 0:
            return t
        ids = t.column("segment_id").to_pylist()
        pf = self._index.table("prompt_features").search() \
            .where(f"segment_id IN ({', '.join(sql_str(x) for x in ids)})") \
            .select(["segment_id", "visual_tokens", "num_tokens"]).limit(len(ids)).to_arrow()
        by_id = dict(zip(pf.column("segment_id").to_pylist(), range(pf.num_rows)))
        missing = [x for x in ids if x not in by_id]
        if missing:
            raise RuntimeError(f"rerank: no prompt features for {len(missing)} hit(s) (e.g. {missing[0]}): "
                               "reindex those videos with --store-prompt-features")
        n_tok = pf.column("num_tokens")[0].as_py()
        tokens = np.stack([np.asarray(pf.column("visual_tokens")[by_id[x]].values, np.float32) for x in ids])
        emb = self._index.table(SEGMENTS_TABLE).search() \
            .where(f"segment_id IN ({', '.join(sql_str(x) for x in ids)})").select(["segment_id", "embedding"]) \
            .limit(len(ids)).to_arrow()
        emb_by = dict(zip(emb.column("segment_id").to_pylist(), emb.column("embedding").to_pylist()))
        video = torch.tensor(np.asarray([emb_by[x] for x in ids], np.float32))
        text = torch.tensor(self._index.encode_text([self._text], normalize=False))  # [1, P]
        model = self._index.model
        with torch.inference_mode():
            prompted = model.prompt_text(text, torch.from_numpy(tokens.reshape(len(ids), n_tok, -1)))  # [B,1,P]
            score = (F.normalize(video, dim=-1) * F.normalize(prompted[:, 0], dim=-1)).sum(-1).numpy()
        t = t.set_column(t.column_names.index("score"), "score", pa.array(score.astype(np.float32)))
        order = np.argsort(-score, kind="stable")
        return t.take(pa.array(order, pa.int64()))

    def to_pandas(self):
        return self.to_arrow().to_pandas()

    def to_list(self) -> list[dict]:
        return self.to_arrow().to_pylist()
