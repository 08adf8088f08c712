"""LanceDB indexes of an index's tables; one builder for ``xclip-index build-index`` and the writer.

``ensure_indexes(table, name, min_vector_rows=...)`` builds what is missing:
    key          BTree on ``segment_id`` / ``video_id`` (``video_id`` too on per-segment tables)
    status       Bitmap (videos)
    labels       LabelList (``labels_any`` filters)
    label_text   FTS, no stemming or stop words (``labels_match`` filters: ``contains_tokens``)
    embedding    ANN (``vector_index_config``: IVF_HNSW_SQ, cosine; chosen over IVF_PQ by
                 ``bench/query.py``, see bench/RESULTS.md "Query") once the table has ``min_vector_rows``
                 non-null vectors (PQ training needs at least 256)
``build_indexes`` first adds the columns an older index lacks (``xclip_store.migrate.migrate_table``:
``label_text`` is derived from ``labels``).
``build_indexes`` holds the output lease (command ``build-index``; exit 7 while a run holds it) and
every index build is one commit through ``Output.commit``: the lease is checked first, and a LanceDB
commit conflict (another process compacted or indexed the table meanwhile) is retried on the
table's latest version.
"""
from __future__ import annotations

import logging
import math
import time

from schemas import SEGMENTS_KEY, SEGMENTS_TABLE, VECTOR_COLUMN, VIDEOS_KEY, VIDEOS_TABLE
from xclip_store.errors import LeaseError
from xclip_store.migrate import migrate_table
from xclip_store.retry import commit_retry

log = logging.getLogger(__name__)

MIN_VECTOR_ROWS = 256
# ANN search defaults of xclip_search queries (bench/query.py measured recall and latency with them)
# (1M clustered vectors: recall@10 0.942 without refining, 0.984 with refine 2 at +3-4 ms; RESULTS.md "Query")
SEARCH_NPROBES = 20
SEARCH_REFINE_FACTOR = 2  # rerank 2x the hits on the full vectors: the 8-bit SQ alone caps recall near 0.95
DEFAULT_KIND = "ivf_hnsw_sq"


def vector_index_config(num_rows: int, dim: int, *, kind: str = DEFAULT_KIND):
    """ANN parameters from the row count: IVF_PQ: partitions ~ sqrt(rows), sub-vectors dim/16;
    IVF_HNSW_SQ: partitions ~ sqrt(rows)/8 (each partition is an HNSW graph)."""
    from lancedb.index import HnswSq, IvfPq

    partitions = max(1, min(4096, int(round(math.sqrt(max(num_rows, 1))))))
    if kind == "ivf_pq":
        sub = max(1, dim // 16)
        while dim % sub:
            sub -= 1
        return IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=sub)
    if kind == "ivf_hnsw_sq":
        return HnswSq(distance_type="cosine", num_partitions=max(1, partitions // 8))
    raise ValueError(f"vector index kind: expected 'ivf_pq' or 'ivf_hnsw_sq', got {kind!r}")


def _indexed_columns(tbl) -> set[tuple[str, ...]]:
    return {tuple(getattr(i, "columns", ()) or ()) for i in tbl.list_indices()}


def _unleased_commit(what: str, fn, *, table=None):
    return commit_retry(table, fn, what=what) if table is not None else fn()


def ensure_indexes(tbl, name: str, *, min_vector_rows: int = MIN_VECTOR_ROWS, kind: str = DEFAULT_KIND,
                   commit=_unleased_commit) -> dict:
    """Build the missing indexes of table ``name``; returns {column: seconds} of those built.
    ``commit(what, fn, table=tbl)`` makes each build (``Output.commit``: lease check and retries)."""
    from lancedb.index import FTS, BTree, Bitmap, LabelList

    names = set(tbl.schema.names)
    have = _indexed_columns(tbl)
    wanted = [(VIDEOS_KEY if name == VIDEOS_TABLE else SEGMENTS_KEY, BTree())]
    if name != VIDEOS_TABLE and "video_id" in names:
        wanted.append(("video_id", BTree()))
    if "status" in names:
        wanted.append(("status", Bitmap()))
    if "labels" in names:
        wanted.append(("labels", LabelList()))
    if "label_text" in names:  # contains_tokens matches whole tokens as written: no stemming
        wanted.append(("label_text", FTS(with_position=False, stem=False, remove_stop_words=False,
                                         ascii_folding=False)))
    built = {}
    for col, config in wanted:
        if col in names and (col,) not in have:
            t0 = time.perf_counter()
            commit(f"build the {col} index of {name}", lambda: tbl.create_index(col, config=config), table=tbl)
            built[col] = round(time.perf_counter() - t0, 3)
    if VECTOR_COLUMN in names and (VECTOR_COLUMN,) not in have:
        rows = tbl.count_rows(f"{VECTOR_COLUMN} IS NOT NULL")
        if rows >= max(min_vector_rows, MIN_VECTOR_ROWS):
            dim = tbl.schema.field(VECTOR_COLUMN).type.list_size
            t0 = time.perf_counter()
            try:
                commit(f"build the vector index of {name}",
                       lambda: tbl.create_index(VECTOR_COLUMN, config=vector_index_config(rows, dim, kind=kind)),
                       table=tbl)
                built[VECTOR_COLUMN] = round(time.perf_counter() - t0, 3)
            except LeaseError:
                raise
            except Exception as e:  # OutputError after retries: the table stays searchable (brute force) without it
                log.warning("could not build the vector index on %s: %s", name, e)
    return built


def build_indexes(uri: str, *, min_vector_rows: int = MIN_VECTOR_ROWS) -> dict:
    """``xclip-index build-index``: indexes of ``segments`` and ``videos`` under ``uri``, built
    while holding the output lease (see module doc)."""
    from xclip_store.output import Output, open_output, output_exists

    if not output_exists(uri):
        return _build_indexes(Output(uri, mode="r"), min_vector_rows=min_vector_rows)  # "no tables" error
    with open_output(uri, mode="w", command="build-index") as out:
        return _build_indexes(out, min_vector_rows=min_vector_rows)


def _build_indexes(out, *, min_vector_rows: int) -> dict:
    uri = out.uri
    missing = {SEGMENTS_TABLE, VIDEOS_TABLE} - out.table_names()
    if missing:
        raise FileNotFoundError(f"{uri}: no {sorted(missing)} table(s) under lancedb/: "
                                "is this an xclip-index --output?")
    report = {}
    for name in (SEGMENTS_TABLE, VIDEOS_TABLE):
        tbl = out.open_table(name)
        out.commit(f"add the new columns to {name}", lambda: migrate_table(tbl, name), table=tbl)
        report[name] = {"built": ensure_indexes(tbl, name, min_vector_rows=min_vector_rows, commit=out.commit),
                        "indexes": sorted(",".join(c) for c in _indexed_columns(tbl)),
                        "rows": int(tbl.count_rows())}
        if VECTOR_COLUMN in tbl.schema.names:  # xclip_cli.build_index says why no vector index
            report[name]["vectors"] = int(tbl.count_rows(f"{VECTOR_COLUMN} IS NOT NULL"))
    return report
