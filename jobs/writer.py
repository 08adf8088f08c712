"""Stage 5 (driver, the only committer): Parquet files and LanceDB tables.

Layout under ``WriterConfig.output`` (a local folder or ``s3://``):

    lancedb/                       LanceDB database: tables ``videos`` and ``segments``
    parquet/videos/<run_id>-<n>.parquet
    parquet/segments/<run_id>-<n>.parquet
    runs/<run_id>.json             run manifest (``schemas.manifest.RunManifest``)

LanceDB tables are written by upsert (``merge_insert`` on ``video_id`` /
``segment_id``), so rerunning a job replaces rows instead of duplicating
them: they are the deduplicated view. Parquet is an append-only log: each run
writes its own files (named by ``run_id``, never overwriting another run's),
and every row carries ``run_id`` and ``indexed_at``. The current row of a key
is the one with the latest ``indexed_at``, and the current segments are those
of the run that wrote their video's current row (``CURRENT_VIDEOS_SQL``,
``CURRENT_SEGMENTS_SQL`` for DuckDB). In LanceDB, stale segments go away too:
when a video now has fewer segments, the segments upsert deletes the rest
(``when_not_matched_by_source_delete`` restricted to the chunk's videos; all
segments of a video are committed in the same chunk), and a video that is no
longer ``ok`` has its segments deleted when its videos row is committed.

Side tables keyed by ``segment_id`` (``side_tables``: e.g. ``thumbnails``,
``prompt_features`` from ``schemas.features``) are written like ``segments``:
upserted, stale rows of the chunk's videos deleted, committed before the
videos rows, and deleted with a video that is no longer ``ok``.

Rows are buffered and committed in chunks of ``chunk_rows`` (one Parquet file
and one LanceDB commit per table per chunk), then ``optimize()`` compacts.
"""
from __future__ import annotations

import logging
import time

import pyarrow as pa
import pyarrow.parquet as pq

from jobs.config import ConfigError, WriterConfig
from schemas import (SEGMENTS_KEY, SEGMENTS_TABLE, STATUS_OK, VECTOR_COLUMN, VIDEOS_KEY, VIDEOS_TABLE, check_table,
                     segments_schema, videos_schema)
from xclip_core import storage

log = logging.getLogger(__name__)

# DuckDB views of the Parquet log: {output} is the job's --output (without a trailing slash).
CURRENT_VIDEOS_SQL = """
SELECT * FROM read_parquet('{output}/parquet/videos/*.parquet')
QUALIFY row_number() OVER (PARTITION BY video_id ORDER BY indexed_at DESC, run_id DESC) = 1
""".strip()
# a segment is current when it comes from the run that wrote its video's current row
CURRENT_SEGMENTS_SQL = """
SELECT s.* FROM read_parquet('{output}/parquet/segments/*.parquet') s
JOIN (""" + CURRENT_VIDEOS_SQL + """) v USING (video_id, run_id)
""".strip()


class OutputError(RuntimeError):
    """The output location cannot be written."""


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


class Writer:
    """Buffers ``videos``/``segments`` tables and commits them in chunks."""

    def __init__(self, cfg: WriterConfig, *, run_id: str, dim: int,
                 side_tables: dict[str, pa.Schema] | None = None):
        """``side_tables``: name -> schema of extra per-segment tables (key ``segment_id``, with ``video_id``)."""
        import lancedb

        self.cfg = cfg
        self.run_id = run_id
        self.schemas = {VIDEOS_TABLE: videos_schema(dim), SEGMENTS_TABLE: segments_schema(dim),
                        **(side_tables or {})}
        self.keys = {VIDEOS_TABLE: VIDEOS_KEY, SEGMENTS_TABLE: SEGMENTS_KEY,
                     **{name: SEGMENTS_KEY for name in side_tables or {}}}
        self.per_segment = [*(side_tables or {}), SEGMENTS_TABLE]  # committed before videos, in this order
        self.db_uri = storage.join(cfg.output, "lancedb")
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in self.schemas}
        self._rows = {name: 0 for name in self.schemas}
        self._file_seq = {name: 0 for name in self.schemas}
        self.parquet_files: list[str] = []
        self.seconds = {"parquet": 0.0, "lancedb": 0.0, "optimize": 0.0}
        try:
            self.db = lancedb.connect(self.db_uri, storage_options=storage.lancedb_storage_options(cfg.output))
            existing = set(self.db.list_tables().tables)
            self.tables = {}
            for name, schema in self.schemas.items():
                if name in existing:
                    tbl = self.db.open_table(name)
                else:
                    tbl = self.db.create_table(name, schema=schema, exist_ok=True)
                self.tables[name] = tbl
        except Exception as e:
            raise OutputError(f"--output {cfg.output}: cannot open or create the LanceDB database "
                              f"({type(e).__name__}: {e})") from None
        for name, tbl in self.tables.items():
            try:
                check_table(tbl.schema.empty_table(), self.schemas[name])
            except ValueError as e:
                raise ConfigError(f"--output {cfg.output}: existing table {name!r} does not match this job "
                                  f"(another model or schema version?): {e}") from None
        self.fs, self.base = storage.pyarrow_filesystem(cfg.output)

    def indexed_ok(self) -> pa.Table:
        """The existing ``ok`` videos rows' keys, model, label set and fingerprints (jobs.incremental)."""
        cols = [VIDEOS_KEY, "model_id", "label_set", "source_size", "source_etag", "source_mtime"]
        return self.tables[VIDEOS_TABLE].search().where(f"status = '{STATUS_OK}'").select(cols) \
            .limit(None).to_arrow()

    # ------------------------------------------------------------ buffering
    def add(self, table_name: str, table: pa.Table) -> None:
        self._buffers[table_name].append(table)
        self._rows[table_name] += table.num_rows
        if self._rows[table_name] >= self.cfg.chunk_rows:
            self._flush(table_name)

    def flush(self) -> None:
        # segments first: a videos row marks a finished video, so never commit it before its segments
        for name in self.per_segment:
            self._flush(name)
        self._flush(VIDEOS_TABLE)

    def _flush(self, name: str) -> None:
        if not self._buffers[name]:
            return
        if name == VIDEOS_TABLE:
            for other in self.per_segment:
                self._flush(other)
        table = pa.concat_tables(self._buffers[name]).combine_chunks()
        self._buffers[name], self._rows[name] = [], 0
        t0 = time.perf_counter()
        path = f"{self.base.rstrip('/')}/parquet/{name}/{self.run_id}-{self._file_seq[name]:05d}.parquet"
        self._file_seq[name] += 1
        self._parent(path)
        pq.write_table(table, path, filesystem=self.fs, compression="zstd")
        self.parquet_files.append(("s3://" + path) if storage.is_s3(self.cfg.output) else path)
        t1 = time.perf_counter()
        self.seconds["parquet"] += t1 - t0
        tbl = self.tables[name]
        merge = tbl.merge_insert(self.keys[name]).when_matched_update_all().when_not_matched_insert_all()
        if name in self.per_segment:
            # drop this run's videos' stale segments from an earlier run (e.g. fewer clips now)
            vids = table.column("video_id").unique().to_pylist()
            merge = merge.when_not_matched_by_source_delete(f"video_id IN ({_sql_list(vids)})")
        merge.execute(table, on_bad_vectors="null")
        if name == VIDEOS_TABLE:
            not_ok = [v for v, st in zip(table.column("video_id").to_pylist(), table.column("status").to_pylist())
                      if st != STATUS_OK]
            where = f"video_id IN ({_sql_list(not_ok)})"
            for other in self.per_segment:
                if not_ok and self.tables[other].count_rows(where):
                    self.tables[other].delete(where)  # segments (and side rows) of a video no longer ok
        self.seconds["lancedb"] += time.perf_counter() - t1

    # ------------------------------------------------------------ closing
    def close(self) -> dict:
        """Flush, optimize, build indexes when large enough; returns table versions and row counts."""
        self.flush()
        t0 = time.perf_counter()
        out = {}
        for name, tbl in self.tables.items():
            if self.cfg.optimize:
                tbl.optimize()
            self._ensure_indexes(name, tbl)
            out[name] = {"version": int(tbl.version), "rows": int(tbl.count_rows())}
        self.seconds["optimize"] += time.perf_counter() - t0
        return out

    def _ensure_indexes(self, name: str, tbl) -> None:
        from xclip_search.indexes import ensure_indexes  # one index builder (also `xclip-index build-index`)

        ensure_indexes(tbl, name, min_vector_rows=self.cfg.vector_index_min_rows)

    def _parent(self, path: str) -> None:
        if not storage.is_s3(self.cfg.output):  # object stores have no folders to create
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)

    def write_text(self, relpath: str, text: str) -> str:
        """Write a small text file under the output (the run manifest); returns its URI."""
        path = f"{self.base.rstrip('/')}/{relpath}"
        try:
            self._parent(path)
            with self.fs.open_output_stream(path) as f:
                f.write(text.encode("utf-8"))
        except Exception as e:
            raise OutputError(f"--output {self.cfg.output}: cannot write {relpath} ({type(e).__name__}: {e})") from None
        return ("s3://" + path) if storage.is_s3(self.cfg.output) else path
