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
Parquet files are named ``<run_id>-<n>-<writer token>.parquet``: a rerun with
the same ``run_id`` never overwrites an earlier file.

Fault safety. A buffer is cleared only after its chunk is committed; transient
S3/LanceDB errors are retried with backoff (``xclip_store.retry``), and a write that
still fails raises ``OutputError`` with a one-line reason (nothing is counted
written that was not). Every commit is an upsert by key, so a rerun repairs a
chunk that failed half-way.

Consistency order (a LanceDB reader never sees a segment without its videos
row). Each segments chunk is committed in three steps: (1) its videos get a
placeholder videos row with ``status = 'indexing'``, (2) the segments are
upserted, (3) later, the final videos rows replace the placeholders. A crash
between (1) and (3) leaves ``indexing`` rows: readers filter on
``status = 'ok'``, and the next run reindexes them since they are not ``ok``.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import (SEGMENTS_KEY, SEGMENTS_TABLE, STATUS_INDEXING, STATUS_OK, VIDEOS_KEY,
                     VIDEOS_TABLE, check_table, segments_schema, videos_schema)
from schemas.output import STATUS_DELETED
from schemas.sql import sql_list
from xclip_core import storage
from xclip_store.errors import OutputError, OutputMismatchError  # noqa: F401 (OutputError: re-exported)
from xclip_store.indexes import ensure_indexes
from xclip_store.migrate import migrate_table
from xclip_store.output import Output

log = logging.getLogger(__name__)

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


def _side_table_names() -> tuple[str, ...]:
    """The per-video side tables (rows of a video's segments or shots), cleaned with their video."""
    from schemas.features import PROMPT_FEATURES_TABLE, THUMBNAILS_TABLE
    from schemas.shots import SHOTS_TABLE

    return (PROMPT_FEATURES_TABLE, THUMBNAILS_TABLE, SHOTS_TABLE)


class Writer:
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
        self.keys = {VIDEOS_TABLE: VIDEOS_KEY, SEGMENTS_TABLE: SEGMENTS_KEY,
                     **{name: schema.names[0] for name, schema in (side_tables or {}).items()}}  # the key is first
        self.per_segment = [*(side_tables or {}), SEGMENTS_TABLE]  # committed before videos, in this order
        self.db_uri = self.out.db_uri
        self._buffers: dict[str, list[pa.Table]] = {name: [] for name in self.schemas}
        self._rows = {name: 0 for name in self.schemas}
        self._file_seq = {name: 0 for name in self.schemas}
        self._token = uuid.uuid4().hex[:8]  # unique Parquet names even when a run_id is reused
        self.parquet_files: list[str] = []
        self.seconds = {"parquet": 0.0, "lancedb": 0.0, "optimize": 0.0}
        self.before_videos_commit = None  # fn(videos chunk): commits what must precede it (jobs.runner)
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
        self.other_side = self._other_side_tables()

    def _other_side_tables(self) -> dict:
        """Side tables the output has but this run does not write (e.g. ``thumbnails`` under
        ``--no-thumbnails``): a video this run rewrites or fails loses its rows there too, so no
        stale thumbnail or visual tokens outlive the segments they were computed for."""
        existing = self.out.table_names()
        return {n: self.out.open_table(n) for n in _side_table_names()
                if n in existing and n not in self.tables}

    def _drop_other_side(self, where: str) -> None:
        for name, tbl in self.other_side.items():
            if tbl.count_rows(where):
                self._commit(f"delete stale {name}", lambda: tbl.delete(where), table=tbl)

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
        return self.out.read(VIDEOS_TABLE, lambda: self.tables[VIDEOS_TABLE].search().select(cols).limit(None)
                             .to_arrow(), what="read videos")

    def delete_videos(self, video_ids: list[str], *, mark: bool = False) -> int:
        """Remove videos gone from the source: segments first (never a segment without its videos
        row), then side tables (``schemas.features``) when they exist, then the videos rows (or, with
        ``mark``, set them to ``status = 'deleted'``). Returns how many videos."""
        if not video_ids:
            return 0
        existing = self.out.table_names()
        for i in range(0, len(video_ids), 1000):
            where = f"video_id IN ({sql_list(video_ids[i:i + 1000])})"
            self._log_removed(where, "gone from the source", mark_status=STATUS_DELETED if mark else None)
            self._commit("delete segments", lambda: self.tables[SEGMENTS_TABLE].delete(where))
            for side in _side_table_names():
                if side in existing:
                    self._commit(f"delete {side}", lambda: (  # not `tables.get() or`: a Table's truth counts rows
                        self.tables[side] if side in self.tables else self.out.open_table(side)).delete(where))
            if mark:
                self._commit("mark videos deleted", lambda: self.tables[VIDEOS_TABLE].update(
                    where=where, values={"status": STATUS_DELETED, "error": "gone from the source",
                                         "num_segments": 0, "run_id": self.run_id}))
            else:
                self._commit("delete videos", lambda: self.tables[VIDEOS_TABLE].delete(where))
        return len(video_ids)

    def repair_duplicates(self) -> int:
        """Rows sharing a key (left by concurrent runs before the output lease existed) cannot be
        fixed by an upsert, which updates every copy. Their videos are reset for reindexing: first an
        ``indexing`` row (so a crash here leaves them to be redone), then their segments and videos rows
        go; the run then processes them as new. Returns how many videos."""
        import pyarrow.compute as pc

        def dup_videos(name: str, key: str) -> set[str]:
            cols = list(dict.fromkeys([key, "video_id"]))
            t = self.out.read(name, lambda: self.tables[name].search().select(cols).limit(None).to_arrow(),
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
        self._commit("reset duplicated videos", lambda: self.tables[VIDEOS_TABLE].update(
            where=where, values={"status": STATUS_INDEXING, "error": "duplicate rows: reindexing"}))
        for other in self.per_segment:  # side tables first, then segments: never a side row without them
            self._commit(f"delete duplicated {other}", lambda: self.tables[other].delete(where))
        self._drop_other_side(where)
        self._commit("delete duplicated videos", lambda: self.tables[VIDEOS_TABLE].delete(where))
        return len(vids)

    def _log_removed(self, where: str, reason: str, mark_status: str | None = None) -> None:
        """Tombstones (or marked rows) in the Parquet log before videos rows leave LanceDB (xclip_store.parquet_log)."""
        from xclip_store.parquet_log import log_removed

        out = []
        self._commit("log removed videos in Parquet", lambda: out.append(log_removed(
            self.cfg.output, self.tables[VIDEOS_TABLE], where, self.schemas[VIDEOS_TABLE], run_id=self.run_id,
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

    def _flush(self, name: str) -> None:
        if not self._buffers[name]:
            return
        if name == VIDEOS_TABLE:
            for other in self.per_segment:
                self._flush(other)
        table = pa.concat_tables(self._buffers[name]).combine_chunks()
        t0 = time.perf_counter()
        path = f"{self.base.rstrip('/')}/parquet/{name}/{self.run_id}-{self._file_seq[name]:05d}-{self._token}.parquet"
        self._commit(f"write {name} Parquet", lambda: self._write_parquet(table, path))
        self._file_seq[name] += 1
        self.parquet_files.append(("s3://" + path) if storage.is_s3(self.cfg.output) else path)
        t1 = time.perf_counter()
        self.seconds["parquet"] += t1 - t0
        if name == SEGMENTS_TABLE:
            placeholders = self._indexing_rows(table)
            if placeholders.num_rows:  # none for videos whose ok row must stay visible (keep_visible)
                self._commit("commit videos (indexing)", lambda: self._upsert(VIDEOS_TABLE, placeholders),
                             table=self.tables[VIDEOS_TABLE])
            self._drop_other_side(f"video_id IN ({sql_list(table.column('video_id').unique().to_pylist())})")
            self._commit("commit segments", lambda: self._upsert(SEGMENTS_TABLE, table),
                         table=self.tables[SEGMENTS_TABLE])
        else:
            if name == VIDEOS_TABLE and self.before_videos_commit is not None:
                self._commit("commit what precedes the videos rows", lambda: self.before_videos_commit(table))
            self._commit(f"commit {name}", lambda: self._upsert(name, table), table=self.tables[name])
        self.seconds["lancedb"] += time.perf_counter() - t1
        self._buffers[name], self._rows[name] = [], 0  # only now: the chunk is committed

    def _commit(self, what: str, fn, table=None) -> None:
        """Lease check, then the commit, retried (``xclip_store.output.Output.commit``)."""
        self.out.commit(what, fn, table=table)

    def _write_parquet(self, table: pa.Table, path: str) -> None:
        self._parent(path)
        pq.write_table(table, path, filesystem=self.fs, compression="zstd")

    def _upsert(self, name: str, table: pa.Table) -> None:
        tbl = self.tables[name]
        merge = tbl.merge_insert(self.keys[name]).when_matched_update_all().when_not_matched_insert_all()
        if name in self.per_segment:
            # drop this run's videos' stale segments from an earlier run (e.g. fewer clips now)
            vids = table.column("video_id").unique().to_pylist()
            merge = merge.when_not_matched_by_source_delete(f"video_id IN ({sql_list(vids)})")
        merge.execute(table, on_bad_vectors="null")
        if name == VIDEOS_TABLE:
            done = {STATUS_OK, STATUS_INDEXING}
            not_ok = [v for v, st in zip(table.column("video_id").to_pylist(), table.column("status").to_pylist())
                      if st not in done]
            where = f"video_id IN ({sql_list(not_ok)})"
            for other in self.per_segment:
                if not_ok and self.tables[other].count_rows(where):
                    self.tables[other].delete(where)  # segments (and side rows) of a video no longer ok
            if not_ok:
                self._drop_other_side(where)

    def keep_visible(self, video_ids: set[str]) -> None:
        """Videos whose earlier ``ok`` row stays until their new final row replaces it: no ``indexing``
        placeholder for them (``jobs.visibility``)."""
        self._keep_visible = set(video_ids)

    def _indexing_rows(self, segments: pa.Table) -> pa.Table:
        """Placeholder videos rows (``status = 'indexing'``) for the videos of a segments chunk, except
        those of ``keep_visible``."""
        first = {}
        keep = getattr(self, "_keep_visible", ())
        for i, vid in enumerate(segments.column("video_id").to_pylist()):
            if vid not in keep:
                first.setdefault(vid, i)
        seg = segments.take(pa.array(list(first.values()), pa.int64()))
        schema = self.schemas[VIDEOS_TABLE]
        n = seg.num_rows
        cols = {f.name: pa.nulls(n, f.type) for f in schema}
        for c in ("video_id", "uri", "model_id", "label_set", "run_id", "indexed_at"):
            cols[c] = seg.column(c).cast(schema.field(c).type)
        cols["status"] = pa.array([STATUS_INDEXING] * n, pa.string())
        cols["error"] = pa.array([f"being indexed by run {self.run_id}"] * n, pa.string())
        cols["num_segments"] = pa.array([0] * n, pa.int32())
        return pa.table([cols[f.name] for f in schema], schema=schema)

    # ------------------------------------------------------------ closing
    def close(self) -> dict:
        """Flush, optimize, build indexes when large enough; returns table versions and row counts."""
        self.flush()
        t0 = time.perf_counter()
        out = {}
        for name, tbl in self.tables.items():
            if self.cfg.optimize:  # compact, and drop versions older than the retention (time travel window)
                self._commit(f"optimize {name}", lambda: tbl.optimize(
                    cleanup_older_than=dt.timedelta(days=self.cfg.keep_versions_days)), table=tbl)
            self._ensure_indexes(name, tbl)
            out[name] = {"version": int(tbl.version), "rows": int(tbl.count_rows())}
        self.seconds["optimize"] += time.perf_counter() - t0
        return out

    def _ensure_indexes(self, name: str, tbl) -> None:
        # one index builder (also `xclip-index build-index`); each index is one leased, retried commit
        ensure_indexes(tbl, name, min_vector_rows=self.cfg.vector_index_min_rows, commit=self.out.commit)

    def _parent(self, path: str) -> None:
        if not storage.is_s3(self.cfg.output):  # object stores have no folders to create
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)

    def write_text(self, relpath: str, text: str, *, check: bool = True) -> str:
        """Write a small text file under the output (the run manifest) atomically; returns its URI."""
        return self.out.write_text(relpath, text, check=check)
