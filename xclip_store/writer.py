"""Stage 5 (driver, the only committer): Parquet files and LanceDB tables.

Layout under ``WriterConfig.output`` (a local folder or ``s3://``):

    lancedb/                       LanceDB database: ``videos``, ``segments``, side tables
    parquet/<table>/<run_id>-<n>-<token>.parquet
    runs/<run_id>.json             run manifest (``schemas.manifest.RunManifest``)

LanceDB tables are the deduplicated view: a video's rows (videos row, segments, side-table rows)
are replaced as a whole by ``video_id``, so a rerun replaces rows instead of duplicating them, and
a video that now has fewer segments loses the rest (all segments of a video are in one chunk).
Parquet is an append-only log: each run writes its own files, every row carries ``run_id`` and
``indexed_at``; the current row of a key is the latest, the current segments are those of the run
that wrote their video's current row (``CURRENT_VIDEOS_SQL``, ``CURRENT_SEGMENTS_SQL`` for DuckDB).
A video no longer ``ok`` has its segments deleted when its videos row is committed.

Flat commit cost (issue 16; ``xclip_store.flat_commit``). A chunk is *staged* (``stage``: its
Parquet file and Lance data files, invisible until committed), then *committed* (``commit_staged``):
each step is ONE Lance transaction deleting the rows of the chunk's videos found through the
``video_id`` index and adding the staged files, so its cost follows the chunk, not the table (the
``merge_insert`` used before: ~7 s per chunk at 1M rows). ``close()`` compacts only small fragments,
indexes the delta (``flat_commit.optimize_delta``), drops versions older than ``keep_versions_days``.
With ``writers > 1`` (``xclip_store.pooled``) write tasks stage the chunks and the driver commits them
through ``commit_staged`` in submission order; a videos chunk is written only once every earlier
chunk is committed; ``flush``/``close`` drain the pool first.

Side tables (``side_tables``: ``thumbnails``, ``prompt_features``, ``shots``) are written like
``segments``: their videos' rows replaced, committed before the videos rows, deleted with a video
no longer ``ok``. Rows are buffered and committed in chunks of ``chunk_rows`` (one Parquet file per
chunk, ``<run_id>-<n>-<writer token>.parquet``: a reused ``run_id`` never overwrites one).

Fault safety and the lease. Every commit is an ``Output.commit``: lease check first, transient
S3/LanceDB errors retried with backoff (``xclip_store.retry``), a write still failing raises
``OutputError`` in one line. Each Lance transaction records the run id, command, lease generation and
what it commits. A staged chunk whose commit failed stays pending for the next ``flush``; every
commit replaces by ``video_id``, so a rerun repairs a chunk that failed half-way.

Consistency order (placeholder videos rows, segments, final videos rows) and the hot path (no
lookup for the rows this run wrote, none for videos new to the output): ``xclip_store.commit_plan``,
the writer's ``commit_staged``.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
import warnings

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import (SEGMENTS_KEY, SEGMENTS_TABLE, STATUS_INDEXING, VIDEOS_KEY, VIDEOS_TABLE,
                     check_table, segments_schema, videos_schema)
from schemas.output import STATUS_DELETED
from schemas.sql import sql_list
from xclip_core import storage
from xclip_store import flat_commit
from xclip_store.commit_plan import PLACEHOLDER_COLUMNS, CommitPlan, per_video_columns  # noqa: F401 (re-exported)
from xclip_store.errors import OutputError, OutputMismatchError  # noqa: F401 (OutputError: re-exported)
from xclip_store.indexes import ensure_indexes
from xclip_store.migrate import migrate_table
from xclip_store.output import Output
from xclip_store.parquet_log import CURRENT_SEGMENTS_SQL, CURRENT_VIDEOS_SQL  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def _side_table_names() -> tuple[str, ...]:
    """The per-video side tables (rows of a video's segments or shots), cleaned with their video."""
    from schemas.features import PROMPT_FEATURES_TABLE, THUMBNAILS_TABLE
    from schemas.shots import SHOTS_TABLE

    return (PROMPT_FEATURES_TABLE, THUMBNAILS_TABLE, SHOTS_TABLE)


class Writer(CommitPlan):
    """Buffers ``videos``/``segments`` tables and commits them in chunks."""

    def __init__(self, cfg, *, run_id: str, dim: int, processing_id: str | None = None,
                 side_tables: dict[str, pa.Schema] | None = None, output: Output | None = None):
        """``cfg``: ``jobs.config.WriterConfig`` (``output``, ``chunk_rows``, ``optimize``,
        ``vector_index_min_rows``, ``keep_versions_days``). ``side_tables``: name -> schema of extra
        per-segment tables (key ``segment_id``, with ``video_id``). ``output``: the leased output
        (``xclip_store.open_output(mode="w")``): every commit checks its lease first; without it the
        writer is unleased (tests)."""
        self.cfg = cfg
        self.out = output if output is not None else Output(cfg.output, mode="w", command="write", run_id=run_id)
        self.run_id = run_id
        self.processing_id = processing_id  # stamped on every videos row (jobs.incremental)
        self.schemas = {VIDEOS_TABLE: videos_schema(dim), SEGMENTS_TABLE: segments_schema(dim),
                        **(side_tables or {})}
        self.per_segment = [*(side_tables or {}), SEGMENTS_TABLE]  # committed before videos, in this order
        self.db_uri = self.out.db_uri
        self.storage_options = storage.lancedb_storage_options(self.out.uri)  # as Output's LanceDB connection
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in self.schemas}
        self._rows = {name: 0 for name in self.schemas}
        self._pending: dict[str, list[tuple]] = {name: [] for name in self.schemas}  # staged, not committed
        self._file_seq = {name: 0 for name in self.schemas}
        self._token = uuid.uuid4().hex[:8]  # unique Parquet names even when a run_id is reused
        self.parquet_files: list[str] = []
        self.seconds = {"parquet": 0.0, "stage": 0.0, "lancedb": 0.0, "optimize": 0.0}
        self._stale: set[str] = set()  # tables committed through Lance since their LanceDB handle was read
        self._init_plan()  # xclip_store.commit_plan
        self.pool = None  # writer.writers > 1: a WritePool writes the chunks (xclip_store.pooled)
        self.db = self.out.db
        self.tables = {name: self.out.open_table(name, create_schema=schema) for name, schema in self.schemas.items()}
        self._migrate()
        for name, tbl in self.tables.items():
            try:
                check_table(tbl.schema.empty_table(), self.schemas[name])
            except ValueError as e:
                raise OutputMismatchError(f"--output {cfg.output}: existing table {name!r} does not match this job "
                                  f"(another model or schema version?): {e}") from None
        self.fs, self.base = self.out.fs, self.out.base
        # side tables the output has but this run does not write (e.g. ``thumbnails`` under
        # ``--no-thumbnails``): a video this run rewrites or fails loses its rows there too, so no
        # stale thumbnail or visual tokens outlive the segments they were computed for
        existing = self.out.table_names()
        self.other_side = [n for n in _side_table_names() if n in existing and n not in self.tables]

    def _table(self, name: str):
        """The LanceDB handle of a table this writer writes, at its latest version."""
        if name in self._stale:
            self.out.read(name, self.tables[name].checkout_latest, what=f"read {name}")
            self._stale.discard(name)
        return self.tables[name]

    def uri(self, name: str) -> str:
        """The Lance dataset of table ``name`` (``flat_commit.write`` stages chunks there)."""
        return flat_commit.table_uri(self.db_uri, name)

    def _migrate(self) -> None:
        """An older output's tables get the columns added since (``schemas.output.migration``): nulls,
        or values derived from their rows (``label_text``); they are the last columns, so appending
        keeps the schema's order."""
        for name in (VIDEOS_TABLE, SEGMENTS_TABLE):
            tbl = self.tables[name]
            self._commit(f"add the new columns to {name}", lambda: migrate_table(tbl, name), table=tbl)

    def indexed(self) -> pa.Table:
        """Every existing videos row's key, URI, status, processing id and fingerprint (jobs.incremental)."""
        cols = [VIDEOS_KEY, "uri", "status", "processing_id", "source_size", "source_etag", "source_mtime"]
        rows = self.out.read(VIDEOS_TABLE, lambda: self._table(VIDEOS_TABLE).search().select(cols).limit(None)
                             .to_arrow(), what="read videos")
        self._known_videos(rows.column(VIDEOS_KEY).to_pylist())  # no lookup for the others (commit_plan)
        return rows

    # ------------------------------------------------------------ deletions
    def delete_videos(self, video_ids: list[str], *, mark: bool = False) -> int:
        """Remove videos gone from the source: segments first (never a segment without its videos
        row), then side tables (``schemas.features``) when they exist, then the videos rows (or, with
        ``mark``, set them to ``status = 'deleted'``). Returns how many videos."""
        if not video_ids:
            return 0
        existing = self.out.table_names()
        for i in range(0, len(video_ids), 1000):
            ids = video_ids[i:i + 1000]
            where = f"video_id IN ({sql_list(ids)})"
            self._log_removed(where, "gone from the source", mark_status=STATUS_DELETED if mark else None)
            self._flat("delete segments", SEGMENTS_TABLE, delete=ids)
            for side in _side_table_names():
                if side in existing:
                    self._flat(f"delete {side}", side, delete=ids)
            if mark:
                tbl = self._table(VIDEOS_TABLE)
                self._changed_elsewhere(VIDEOS_TABLE, ids)  # rows rewritten by LanceDB, not a flat commit
                self._commit("mark videos deleted", lambda: tbl.update(
                    where=where, values={"status": STATUS_DELETED, "error": "gone from the source",
                                         "num_segments": 0, "run_id": self.run_id}), table=tbl)
            else:
                self._flat("delete videos", VIDEOS_TABLE, delete=ids)
        return len(video_ids)

    def repair_duplicates(self) -> int:
        """Rows sharing a key (left by concurrent runs before the output lease existed). Their videos
        are reset for reindexing: first an ``indexing`` row (so a crash here leaves them to be
        redone), then their segments and videos rows go; the run then processes them as new.
        Returns how many videos."""
        import pyarrow.compute as pc

        def dup_videos(name: str, key: str) -> set[str]:
            cols = list(dict.fromkeys([key, "video_id"]))
            t = self.out.read(name, lambda: self._table(name).search().select(cols).limit(None).to_arrow(),
                              what=f"read {name}")
            if len(pc.unique(t.column(key))) == t.num_rows:
                return set()
            counts = t.group_by(key).aggregate([([], "count_all")])
            dups = counts.filter(pc.greater(counts.column("count_all"), 1)).column(key)
            return set(t.filter(pc.is_in(t.column(key), dups)).column("video_id").to_pylist())

        vids = sorted(dup_videos(VIDEOS_TABLE, VIDEOS_KEY) | dup_videos(SEGMENTS_TABLE, SEGMENTS_KEY))
        if not vids:
            return 0
        log.warning("%d videos have duplicate rows (concurrent runs?): reindexing them", len(vids))
        where = f"video_id IN ({sql_list(vids)})"
        self._log_removed(where, "duplicate rows: reindexing")
        tbl = self._table(VIDEOS_TABLE)
        self._changed_elsewhere(VIDEOS_TABLE, vids)  # rows rewritten by LanceDB, not a flat commit
        self._commit("reset duplicated videos", lambda: tbl.update(
            where=where, values={"status": STATUS_INDEXING, "error": "duplicate rows: reindexing"}), table=tbl)
        for other in self.per_segment:  # side tables first, then segments: never a side row without them
            self._flat(f"delete duplicated {other}", other, delete=vids)
        self._drop_other_side(vids)
        self._flat("delete duplicated videos", VIDEOS_TABLE, delete=vids)
        return len(vids)

    def _log_removed(self, where: str, reason: str, mark_status: str | None = None) -> None:
        """Tombstones (or marked rows) in the Parquet log before videos rows leave LanceDB (xclip_store.parquet_log)."""
        from xclip_store.parquet_log import log_removed

        out = []
        self._commit("log removed videos in Parquet", lambda: out.append(log_removed(
            self.cfg.output, self._table(VIDEOS_TABLE), where, self.schemas[VIDEOS_TABLE], run_id=self.run_id,
            reason=reason, mark_status=mark_status)))
        self.parquet_files += [u for u in out if u]

    # ------------------------------------------------------------ buffering
    def add(self, table_name: str, table: pa.Table) -> None:
        if table_name == VIDEOS_TABLE and self.processing_id is not None:
            i = table.schema.get_field_index("processing_id")
            table = table.set_column(i, table.schema.field(i), pa.array([self.processing_id] * table.num_rows,
                                                                         pa.string()))
        self._buffers[table_name].append(table)
        self._rows[table_name] += table.num_rows
        if self._rows[table_name] >= self.cfg.chunk_rows:
            self._flush(table_name)

    def flush(self) -> None:
        # segments first: a videos row marks a finished video, so never commit it before its segments
        for name in self.per_segment:
            self._flush(name)
        self._flush(VIDEOS_TABLE)
        if self.pool is not None:
            self.pool.drain()

    def _flush(self, name: str) -> None:
        if name == VIDEOS_TABLE:
            for other in self.per_segment:
                self._flush(other)
        if self._buffers[name]:
            table = pa.concat_tables(self._buffers[name]).combine_chunks()
            if self.pool is not None:  # a write task writes it; committed in submission order (barrier: module doc)
                self._buffers[name], self._rows[name] = [], 0
                return self.pool.submit(name, table, barrier=name == VIDEOS_TABLE)
            self._pending[name].append(self.stage(name, table))
            self._buffers[name], self._rows[name] = [], 0  # the rows are in staged files now
        while self._pending[name]:  # in order; a chunk leaves only once committed
            self.commit_staged(name, *self._pending[name][0])
            self._pending[name].pop(0)

    def parquet_path(self, name: str) -> tuple[str, str]:
        """The next Parquet log file of table ``name``: (filesystem path, URI); a write pool's
        chunks take theirs here too, so names never collide."""
        path = f"{self.base.rstrip('/')}/parquet/{name}/{self.run_id}-{self._file_seq[name]:05d}-{self._token}.parquet"
        self._file_seq[name] += 1
        return path, ("s3://" + path) if storage.is_s3(self.cfg.output) else path

    def stage(self, name: str, table: pa.Table) -> tuple[flat_commit.Staged, str]:
        """A chunk of table ``name`` written, not committed: its Parquet log file (leased: the log is
        read as soon as a file exists) and its Lance data files. Returns (staged, Parquet URI) for
        ``commit_staged``."""
        t0 = time.perf_counter()
        path, uri = self.parquet_path(name)
        self._commit(f"write {name} Parquet", lambda: self._write_parquet(table, path))
        t1 = time.perf_counter()
        self.seconds["parquet"] += t1 - t0
        out = []
        self._commit(f"stage {name} data files", lambda: out.append(flat_commit.write(
            self.uri(name), table, storage_options=self.storage_options, per_video=per_video_columns(name))))
        self.seconds["stage"] += time.perf_counter() - t1
        return out[0], uri

    def _commit(self, what: str, fn, table=None) -> None:
        """Lease check, then the commit, retried (``xclip_store.output.Output.commit``)."""
        self.out.commit(what, fn, table=table)

    def _write_parquet(self, table: pa.Table, path: str) -> None:
        if not storage.is_s3(self.cfg.output):  # object stores have no folders to create
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=self.fs, compression="zstd")

    # ------------------------------------------------------------ closing
    def close(self) -> dict:
        """Flush, then per table: delta upkeep (``flat_commit.optimize_delta``) and version cleanup
        (``cfg.optimize``), missing indexes once large enough; returns each table's version, rows
        and unindexed rows per index (Lance ``index_stats``)."""
        self.flush()
        t0 = time.perf_counter()
        out = {}
        if self.cfg.optimize and self.cfg.keep_versions_days <= 0:
            warnings.warn("keep_versions_days = 0 removes every version except the latest: a reader still "
                          "on an older version fails", UserWarning, stacklevel=2)
        for name in self.tables:
            uri, so = self.uri(name), self.storage_options
            if self.cfg.optimize:  # compact the small fragments, index the delta, drop old versions
                self._stale.add(name)
                self._commit(f"optimize {name}", lambda: flat_commit.optimize_delta(
                    uri, storage_options=so, before_commit=lambda: self.out.check(f"optimize {name}")))
                self._commit(f"remove old versions of {name}", lambda: flat_commit.cleanup(
                    uri, older_than=dt.timedelta(days=self.cfg.keep_versions_days), storage_options=so))
            tbl = self._table(name)
            self._ensure_indexes(name, tbl)
            unindexed = self.out.read(name, lambda: flat_commit.unindexed(uri, storage_options=so),
                                      what=f"read the index stats of {name}")
            out[name] = {"version": int(tbl.version), "rows": int(tbl.count_rows()), "unindexed": unindexed}
        self.seconds["optimize"] += time.perf_counter() - t0
        return out

    def _ensure_indexes(self, name: str, tbl) -> None:
        # one index builder (also `xclip-index build-index`); each index is one leased, retried commit
        ensure_indexes(tbl, name, min_vector_rows=self.cfg.vector_index_min_rows, commit=self.out.commit)

    def write_text(self, relpath: str, text: str, *, check: bool = True) -> str:
        """Write a small text file under the output atomically (the run manifest); returns its URI."""
        return self.out.write_text(relpath, text, check=check)
