"""LanceDB indexes of an index's tables; one builder for ``xclip-index build-index`` and the writer.

``ensure_indexes(table, name, min_vector_rows=...)`` builds what is missing:
    key          BTree on ``segment_id`` / ``video_id`` (``video_id`` too on per-segment tables)
    status       Bitmap (videos)
    labels       LabelList (``labels_any`` filters)
    label_text   FTS, no stemming or stop words (``labels_match`` filters: ``contains_tokens``)
    embedding    ANN (``vector_index_config``: IVF_HNSW_SQ, cosine; chosen over IVF_PQ by
                 ``bench/query.py``, see bench/RESULTS.md "Query") once the table has ``min_vector_rows``
                 non-null vectors (PQ training needs at least 256)
IVF partitions follow the row count (LanceDB's guidance): rows/1,048,576 for IVF_HNSW_SQ (each
partition is one HNSW graph), rows/4,096 for IVF_PQ, clamped to 1..4,096.
``update_indexes(table_or_uri)`` is the upkeep of existing indexes: the rows they do not cover yet
become a delta index of each (Lance ``optimize_indices(num_indices_to_merge=0)``): no retraining,
the base index files are not rewritten, so the cost follows the delta, not the table; it reports
the unindexed rows per index (Lance ``index_stats``) before and after.
``build_indexes`` first adds the columns an older index lacks (``xclip_store.migrate.migrate_table``:
``label_text`` is derived from ``labels``), then adds the delta to the existing indexes
(``retrain=True``: rebuilds them all instead) and builds the missing ones.
``build_indexes`` holds the output lease (command ``build-index``; exit 7 while a run holds it) and
every index build is one commit through ``Output.commit``: the lease is checked first, and a LanceDB
commit conflict (another process compacted or indexed the table meanwhile) is retried on the
table's latest version.
"""
from __future__ import annotations

import logging
import os
import time

from schemas import SEGMENTS_KEY, SEGMENTS_TABLE, VECTOR_COLUMN, VIDEOS_KEY, VIDEOS_TABLE
from xclip_store.errors import LeaseError
from xclip_store.migrate import migrate_table
from xclip_store.retry import commit_retry, retry

log = logging.getLogger(__name__)

MIN_VECTOR_ROWS = 256
# ANN search defaults of xclip_search queries (bench/query.py measured recall and latency with them)
# (1M clustered vectors: recall@10 0.942 without refining, 0.984 with refine 2 at +3-4 ms with 125
# partitions; 0.934 / 0.970 with the row-count rule's 1 partition; RESULTS.md "Query")
SEARCH_NPROBES = 20
SEARCH_REFINE_FACTOR = 2  # rerank 2x the hits on the full vectors: the 8-bit SQ alone caps recall near 0.95
DEFAULT_KIND = "ivf_hnsw_sq"


IVF_PQ_ROWS_PER_PARTITION = 4_096  # LanceDB guidance: IVF_PQ partitions ~ rows / 4,096
HNSW_ROWS_PER_PARTITION = 1_048_576  # HNSW-backed (IVF_HNSW_SQ): ~ rows / 1M (each partition is a graph)
MAX_PARTITIONS = 4_096


def vector_index_config(num_rows: int, dim: int, *, kind: str = DEFAULT_KIND):
    """ANN parameters from the row count (LanceDB's guidance): IVF_PQ: partitions ~ rows/4,096,
    sub-vectors dim/16; IVF_HNSW_SQ: partitions ~ rows/1,048,576; both clamped to 1..4,096."""
    from lancedb.index import HnswSq, IvfPq

    def partitions(per: int) -> int:
        return max(1, min(MAX_PARTITIONS, int(round(max(num_rows, 0) / per))))

    if kind == "ivf_pq":
        sub = max(1, dim // 16)
        while dim % sub:
            sub -= 1
        return IvfPq(distance_type="cosine", num_partitions=partitions(IVF_PQ_ROWS_PER_PARTITION),
                     num_sub_vectors=sub)
    if kind == "ivf_hnsw_sq":
        return HnswSq(distance_type="cosine", num_partitions=partitions(HNSW_ROWS_PER_PARTITION))
    raise ValueError(f"vector index kind: expected 'ivf_pq' or 'ivf_hnsw_sq', got {kind!r}")


def _indexed_columns(tbl) -> set[tuple[str, ...]]:
    return {tuple(getattr(i, "columns", ()) or ()) for i in tbl.list_indices()}


def _unleased_commit(what: str, fn, *, table=None):
    return commit_retry(table, fn, what=what) if table is not None else retry(fn, what=what)


def _dataset(src, storage_options: dict | None = None):
    """The Lance dataset of a LanceDB table (its handle's version) or of a dataset URI (the latest)."""
    if isinstance(src, str):
        import lance

        return lance.dataset(src, storage_options=storage_options or None)
    return src.to_lance() if hasattr(src, "to_lance") else src


def index_state(src, storage_options: dict | None = None) -> dict[str, dict]:
    """Column(s) -> the index's ``name``, ``uuids`` (base index first, then delta indexes),
    ``num_indices``, ``indexed`` and ``unindexed`` rows (Lance ``index_stats``)."""
    # the future default of Lance: no centroids in a vector index's stats (else a warning, and memory)
    os.environ.setdefault("LANCE_INCLUDE_VECTOR_CENTROIDS", "false")
    ds = _dataset(src, storage_options)
    out: dict[str, dict] = {}
    for ix in ds.list_indices():  # one entry per index segment (the base and each delta), same name
        key = ",".join(ix["fields"])
        if key not in out:
            st = ds.stats.index_stats(ix["name"])
            out[key] = {"name": ix["name"], "uuids": [], "num_indices": int(st["num_indices"]),
                        "indexed": int(st["num_indexed_rows"]), "unindexed": int(st["num_unindexed_rows"])}
        out[key]["uuids"].append(str(ix["uuid"]))
    return out


def unindexed_rows(src, storage_options: dict | None = None) -> dict[str, int]:
    """Column(s) -> rows not covered by its index (Lance ``index_stats``'s ``num_unindexed_rows``)."""
    return {k: v["unindexed"] for k, v in index_state(src, storage_options).items()}


def update_indexes(src, *, storage_options: dict | None = None, commit=_unleased_commit) -> dict:
    """Index upkeep whose cost follows the delta: the rows not yet indexed become a new delta index
    of every existing index (Lance ``optimize_indices(num_indices_to_merge=0)``): no retraining, no
    rewrite of the existing index files. ``src``: a LanceDB table (its commits go through
    ``commit(what, fn, table=src)``, e.g. ``Output.commit``: lease check, conflicts retried on the
    latest version) or a dataset URI (conflicts retried on the latest version). Returns
    ``unindexed_before`` / ``unindexed`` ({column: rows}), ``delta`` ({column: rows added}) and
    ``seconds``."""
    state = index_state(src, storage_options)
    out = {"unindexed_before": {k: v["unindexed"] for k, v in state.items()}, "delta": {}, "seconds": 0.0}
    if any(out["unindexed_before"].values()):
        t0 = time.perf_counter()
        table = None if isinstance(src, str) else src
        commit("add the unindexed rows to the indexes",
               lambda: _dataset(src, storage_options).optimize.optimize_indices(num_indices_to_merge=0),
               table=table)
        out["seconds"] = round(time.perf_counter() - t0, 3)
    after = unindexed_rows(src if isinstance(src, str) else _latest(src), storage_options)
    out["unindexed"] = after
    out["delta"] = {k: n - after.get(k, 0) for k, n in out["unindexed_before"].items() if n - after.get(k, 0)}
    return out


def _latest(tbl):
    if hasattr(tbl, "checkout_latest"):
        tbl.checkout_latest()
    return tbl


def ensure_indexes(tbl, name: str, *, min_vector_rows: int = MIN_VECTOR_ROWS, kind: str = DEFAULT_KIND,
                   commit=_unleased_commit, retrain: bool = False) -> dict:
    """Build the missing indexes of table ``name`` (``retrain``: rebuild the existing ones too, the
    vector index with parameters for today's row count); returns {column: seconds} of those built.
    ``commit(what, fn, table=tbl)`` makes each build (``Output.commit``: lease check and retries)."""
    from lancedb.index import FTS, BTree, Bitmap, LabelList

    names = set(tbl.schema.names)
    have = set() if retrain else _indexed_columns(tbl)
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
            commit(f"build the {col} index of {name}",
                   lambda: tbl.create_index(col, config=config, replace=True), table=tbl)
            built[col] = round(time.perf_counter() - t0, 3)
    if VECTOR_COLUMN in names and (VECTOR_COLUMN,) not in have:
        rows = tbl.count_rows(f"{VECTOR_COLUMN} IS NOT NULL")
        if rows >= max(min_vector_rows, MIN_VECTOR_ROWS):
            dim = tbl.schema.field(VECTOR_COLUMN).type.list_size
            t0 = time.perf_counter()
            try:
                commit(f"build the vector index of {name}",
                       lambda: tbl.create_index(VECTOR_COLUMN, config=vector_index_config(rows, dim, kind=kind),
                                                replace=True),
                       table=tbl)
                built[VECTOR_COLUMN] = round(time.perf_counter() - t0, 3)
            except LeaseError:
                raise
            except Exception as e:  # OutputError after retries: the table stays searchable (brute force) without it
                log.warning("could not build the vector index on %s: %s", name, e)
    return built


def build_indexes(uri: str, *, min_vector_rows: int = MIN_VECTOR_ROWS, retrain: bool = False) -> dict:
    """``xclip-index build-index``: indexes of ``segments`` and ``videos`` under ``uri``, built
    while holding the output lease (see module doc). Existing indexes get the unindexed rows as a
    delta (``update_indexes``); ``retrain`` rebuilds every index instead."""
    from xclip_store.output import Output, open_output, output_exists

    if not output_exists(uri):
        return _build_indexes(Output(uri, mode="r"), min_vector_rows=min_vector_rows, retrain=retrain)
    with open_output(uri, mode="w", command="build-index") as out:
        return _build_indexes(out, min_vector_rows=min_vector_rows, retrain=retrain)


def _build_indexes(out, *, min_vector_rows: int, retrain: bool) -> dict:
    uri = out.uri
    missing = {SEGMENTS_TABLE, VIDEOS_TABLE} - out.table_names()
    if missing:
        raise FileNotFoundError(f"{uri}: no {sorted(missing)} table(s) under lancedb/: "
                                "is this an xclip-index --output?")
    report = {}
    for name in (SEGMENTS_TABLE, VIDEOS_TABLE):
        tbl = out.open_table(name)
        out.commit(f"add the new columns to {name}", lambda: migrate_table(tbl, name), table=tbl)
        r = report[name] = {"unindexed_before": unindexed_rows(_latest(tbl)), "delta": {}, "retrained": []}
        if not retrain:  # the delta only: cost follows the rows added since the last upkeep
            r["delta"] = update_indexes(tbl, commit=out.commit)["delta"]
        r["built"] = ensure_indexes(_latest(tbl), name, min_vector_rows=min_vector_rows, commit=out.commit,
                                    retrain=retrain)
        if retrain:
            r["retrained"] = sorted(set(r["built"]) & set(r["unindexed_before"]))
        r["unindexed"] = unindexed_rows(_latest(tbl))
        r["indexes"] = sorted(",".join(c) for c in _indexed_columns(tbl))
        r["rows"] = int(tbl.count_rows())
        if VECTOR_COLUMN in tbl.schema.names:  # xclip_cli.build_index says why no vector index
            r["vectors"] = int(tbl.count_rows(f"{VECTOR_COLUMN} IS NOT NULL"))
    return report
