"""The Parquet log hears of every change to LanceDB's videos rows: tombstones and logged updates.

The Parquet files under ``<output>/parquet/`` are an append-only log; the DuckDB
views ``CURRENT_VIDEOS_SQL`` / ``CURRENT_SEGMENTS_SQL`` (here; re-exported by
``xclip_store.writer``) take each video's latest row. The writer's chunks write
their rows to both. Everything else that changes LanceDB's videos rows writes
the log first (so a crash in between
leaves the log ahead, and the next run repeats the change):

* a video deleted from LanceDB (gone from the source, a duplicate repair) gets
  a tombstone row (``status = 'tombstone'``, ``schemas.output.STATUS_TOMBSTONE``):
  the views leave out videos whose latest row is one;
* rows changed in place (``on_deleted = "mark"``, a relabel) are logged as their
  new full rows with a newer ``indexed_at`` (:func:`append_log`), segments with
  the same ``run_id`` as their video's row (the segments view joins on it).

Only ``schemas`` and ``xclip_core`` are imported, so this module can move with the
writer into the output store package.
"""
from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import VIDEOS_TABLE
from schemas.output import STATUS_TOMBSTONE, to_table
from xclip_core import storage

# DuckDB views of the Parquet log: {output} is the job's --output (without a trailing slash).
# union_by_name: files written before a column was added read it as null (without it DuckDB takes
# the first file's columns and silently drops the newer ones)
# a video whose latest row is a tombstone left LanceDB (xclip_store.parquet_log): it is not current
# Relabels (xclip_search.labelstate) append label rows to the log (xclip_store.parquet_log.log_labels):
# the key, the indexed_at of the row they relabel, run_id = the relabel id and the label columns,
# every other column null (videos: uri; segments: segment_index). The views apply the newest label
# row of each row's (key, indexed_at): a row a later run rewrote has another indexed_at and keeps
# that run's labels, as in LanceDB.
_LABELS = ("labels", "label_scores", "label_text", "label_set")
_RELABELLED = ", ".join(f"CASE WHEN lab.has IS NULL THEN x.{c} ELSE lab.{c}_ END AS {c}"
                        for c in _LABELS)
_LABEL_ROWS = """(SELECT {key}, indexed_at, true AS has, """ + ", ".join(f"{c} AS {c}_" for c in _LABELS) + """
FROM {log} WHERE {marker} IS NULL
QUALIFY row_number() OVER (PARTITION BY {key}, indexed_at ORDER BY run_id DESC) = 1) lab"""
CURRENT_VIDEOS_SQL = ("""
SELECT x.* REPLACE (""" + _RELABELLED + """) FROM (
SELECT * FROM read_parquet('{output}/parquet/videos/*.parquet', union_by_name = true) WHERE uri IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY indexed_at DESC, run_id DESC) = 1
) x LEFT JOIN """ + _LABEL_ROWS.format(key="video_id", marker="uri",
                                     log="read_parquet('{output}/parquet/videos/*.parquet', union_by_name = true)")
                      + """ USING (video_id, indexed_at)
WHERE x.status IS DISTINCT FROM 'tombstone'
""").strip()
# a segment is current when it comes from the run that wrote its video's current row
CURRENT_SEGMENTS_SQL = ("""
SELECT x.* REPLACE (""" + _RELABELLED + """)
FROM read_parquet('{output}/parquet/segments/*.parquet', union_by_name = true) x
JOIN (""" + CURRENT_VIDEOS_SQL + """) v USING (video_id, run_id)
LEFT JOIN """ + _LABEL_ROWS.format(key="segment_id", marker="segment_index",
                                  log="read_parquet('{output}/parquet/segments/*.parquet', union_by_name = true)")
                        + """ ON lab.segment_id = x.segment_id AND lab.indexed_at = x.indexed_at
WHERE x.segment_index IS NOT NULL
""").strip()


def append_log(output: str, name: str, table: pa.Table, *, run_id: str, tag: str = "log") -> str | None:
    """Append ``table`` (rows of LanceDB table ``name`` as they now are) to the Parquet log of
    ``output`` as ``parquet/<name>/<run_id>-<tag>-<token>.parquet``; returns its URI (None: no rows).
    ``log_labels`` uses it for a relabel's label rows."""
    if not table.num_rows:
        return None
    fs, base = storage.pyarrow_filesystem(output)
    path = f"{base.rstrip('/')}/parquet/{name}/{run_id}-{tag}-{uuid.uuid4().hex[:8]}.parquet"
    if not storage.is_s3(output):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="zstd")
    return ("s3://" + path) if storage.is_s3(output) else path


def copy_log(output: str, name: str, src: str, *, run_id: str, tag: str = "log") -> str:
    """``append_log`` for rows already written as Parquet at ``src`` (every column the log wants,
    ``run_id`` included): the file is copied (server-side on S3), never read into memory."""
    fs, base = storage.pyarrow_filesystem(output)
    path = f"{base.rstrip('/')}/parquet/{name}/{run_id}-{tag}-{uuid.uuid4().hex[:8]}.parquet"
    if not storage.is_s3(output):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    fs.copy_file(storage.pyarrow_filesystem(src)[1], path)
    return ("s3://" + path) if storage.is_s3(output) else path


def tombstones(rows: list[dict], schema: pa.Schema, *, run_id: str, reason: str) -> pa.Table:
    """Tombstone videos rows (``schema``: the videos schema) for ``rows`` (current videos rows, at least
    ``video_id``, ``uri``, ``model_id``, ``label_set``): no vectors, no labels."""
    now = dt.datetime.now(dt.timezone.utc)
    return to_table([{"video_id": r["video_id"], "uri": r["uri"], "model_id": r["model_id"],
                      "label_set": r["label_set"], "status": STATUS_TOMBSTONE, "error": reason,
                      "num_segments": 0, "run_id": run_id, "indexed_at": now} for r in rows], schema)


def log_removed(output: str, tbl, where: str, schema: pa.Schema, *, run_id: str, reason: str,
                mark_status: str | None = None) -> str | None:
    """Before the videos rows matching ``where`` leave LanceDB table ``tbl`` (or, with ``mark_status``,
    are set to it): log tombstones for them (or their marked rows). Returns the file's URI."""
    current = tbl.search().where(where).limit(None).to_arrow().to_pylist()
    if not current:
        return None
    if mark_status is None:
        table, tag = tombstones(current, schema, run_id=run_id, reason=reason), "tombstones"
    else:
        now = dt.datetime.now(dt.timezone.utc)
        table = to_table([{**{k: v for k, v in r.items() if k in schema.names}, "status": mark_status,
                           "error": reason, "num_segments": 0, "run_id": run_id, "indexed_at": now}
                          for r in current], schema)
        tag = "marked"
    return append_log(output, VIDEOS_TABLE, table, run_id=run_id, tag=tag)


def log_labels(output: str, name: str, cols: pa.Table, *, relabel_id: str) -> str | None:
    """A relabel's label rows for table ``name`` (``videos`` or ``segments``): ``cols`` holds the key,
    the ``indexed_at`` of each row as the relabel read it and the label columns; ``run_id`` is the
    relabel id. The DuckDB views (``xclip_store.writer.CURRENT_*_SQL``) apply the newest label row
    of a row's (key, indexed_at), so they show the labels LanceDB has."""
    cols = cols.append_column("run_id", pa.array([relabel_id] * cols.num_rows, pa.string()))
    return append_log(output, name, cols, run_id=relabel_id, tag="labels")
