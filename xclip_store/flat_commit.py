"""Flat-cost commits of LanceDB tables through Lance's fragment API (issue 16; prototype).

Why. ``jobs/writer.py`` commits a segments chunk with ``merge_insert(segment_id)`` and
``when_not_matched_by_source_delete``: Lance joins the chunk against the whole table, so one
4,096-row chunk costs ~0.5 s at 100k rows and ~7 s at 1M (bench/RESULTS.md, "Scale"). Here a
chunk's commit is instead:

1. **write** (anywhere: the driver, or many workers in parallel): the chunk's rows become new
   data files (``lance.fragment.write_fragments``); nothing is visible yet. Only the small
   :class:`Staged` record (fragment metadata + the chunk's ``video_id`` list) goes to the committer.
2. **commit** (one process): the rows of the chunk's videos already in the table are found through
   the scalar index on ``video_id`` (``IN`` filter, ``with_row_address``), only the fragments
   holding them get a deletion vector (``LanceFragment.delete``), and ONE Lance transaction
   (``Update``: deletion vectors + new fragments, or ``Append`` when nothing is replaced) makes
   the new rows visible and the old ones invisible at once.

The cost is the index lookup plus the rewritten deletion vectors of the touched fragments plus
the new files: it depends on the chunk (and on the unindexed delta the lookup scans), not on the
table's size.

Reader guarantees (the consistency order of ``jobs/writer.py``, kept): :class:`FlatCommitter`
commits per chunk (a) a placeholder ``status = 'indexing'`` videos row for each video of the
chunk that has NO videos row yet (a video that already has a row keeps it: good rows stay visible),
(b) the segments, replacing the video's earlier segments in the same transaction (so a reader
never sees a video without the segments it had before, nor a video with two generations of
segments), and later (c) the final videos rows, replacing the placeholders / old rows in one
transaction, then deleting the segments of videos that are no longer ``ok``. A segment is never
visible before its video has a row. A crash leaves at worst uncommitted data files (invisible;
removed by ``optimize``'s cleanup) and ``indexing`` rows that the next run reindexes: repair by
rerun, as today. Replacing by ``video_id`` also removes duplicate keys left by concurrent runs.

Every commit calls ``before_commit()`` first (the lease check: raise to refuse) and records
``commit_message`` (e.g. the lease generation) in the Lance transaction. Commit conflicts
(``lance.commit.CommitConflictError``) are retried from the lookup.

``optimize_delta`` is the nightly upkeep whose cost follows the delta: compaction that never
rewrites a large fragment to absorb small ones, and index upkeep that adds a delta index instead
of merging/rebuilding; it reports the unindexed rows (``index_stats``).

This module needs ``pylance`` matching LanceDB's embedded Lance (13.0.0 for lancedb 0.40).
It imports nothing from jobs/, xclip_search/ or moderation/.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from schemas import STATUS_INDEXING, STATUS_OK, VECTOR_COLUMN
from schemas.sql import sql_list
from xclip_core import storage
from xclip_store.indexes import unindexed_rows, update_indexes

VIDEO_KEY = "video_id"
LOOKUP_BATCH = 1000  # video ids per IN (...) filter


@dataclasses.dataclass(frozen=True)
class FlatCommitConfig:
    """``max_rows_per_file``: rows per written data file; ``conflict_retries``: commit attempts
    after a ``CommitConflictError``; ``on_bad_vectors``: ``"null"`` (as the writer's
    ``merge_insert(..., on_bad_vectors="null")``) or ``"error"``."""

    max_rows_per_file: int = 1_048_576
    conflict_retries: int = 5
    on_bad_vectors: str = "null"

    def __post_init__(self):
        if self.max_rows_per_file < 1:
            raise ValueError(f"max_rows_per_file must be >= 1, got {self.max_rows_per_file}")
        if self.conflict_retries < 0:
            raise ValueError(f"conflict_retries must be >= 0, got {self.conflict_retries}")
        if self.on_bad_vectors not in ("null", "error"):
            raise ValueError(f"on_bad_vectors must be 'null' or 'error', got {self.on_bad_vectors!r}")


@dataclasses.dataclass(frozen=True)
class Staged:
    """Data files written but not committed: picklable, small (no rows), sent to the committer."""

    fragments: tuple  # lance.fragment.FragmentMetadata
    video_ids: tuple[str, ...]
    rows: int


def table_uri(db_uri: str, name: str) -> str:
    """The Lance dataset of LanceDB table ``name`` in database ``db_uri``."""
    return storage.join(db_uri, f"{name}.lance")


def _dataset(uri: str, storage_options: dict | None):
    import lance

    return lance.dataset(uri, storage_options=storage_options or None)


def _clean_vectors(table: pa.Table, how: str) -> pa.Table:
    """Rows whose embedding holds a non-finite value: null embedding (``null``) or ValueError."""
    if VECTOR_COLUMN not in table.column_names or table.num_rows == 0:
        return table
    col = table.column(VECTOR_COLUMN).combine_chunks()
    size = col.type.list_size
    flat = col.values.slice(col.offset * size, len(col) * size)  # null slots included
    values = flat.to_numpy(zero_copy_only=False).reshape(len(col), size)
    valid = np.asarray(col.is_valid())
    finite = ~valid | np.isfinite(values).all(axis=1)
    if finite.all():
        return table
    if how == "error":
        raise ValueError(f"{int((~finite).sum())} rows have a non-finite {VECTOR_COLUMN}")
    fixed = pa.FixedSizeListArray.from_arrays(flat, size, mask=pa.array(~(finite & valid)))
    i = table.schema.get_field_index(VECTOR_COLUMN)
    return table.set_column(i, table.schema.field(i), fixed)


def write(uri: str, table: pa.Table, *, storage_options: dict | None = None,
          cfg: FlatCommitConfig = FlatCommitConfig()) -> Staged:
    """Write ``table`` (the dataset's schema, with a ``video_id`` column) as new data files of the
    dataset at ``uri`` without committing them. Safe to run in many processes at once."""
    from lance.fragment import write_fragments

    ds = _dataset(uri, storage_options)
    schema = ds.schema
    if [f.name for f in table.schema] != schema.names:
        raise ValueError(f"{uri}: columns {table.column_names} do not match the table's {schema.names}")
    table = _clean_vectors(table.cast(schema), cfg.on_bad_vectors)
    vids = tuple(dict.fromkeys(table.column(VIDEO_KEY).to_pylist()))
    frags = write_fragments(table, ds, schema=schema, max_rows_per_file=cfg.max_rows_per_file,
                            storage_options=storage_options or None) if table.num_rows else []
    return Staged(tuple(frags), vids, table.num_rows)


def existing(uri: str, video_ids: Sequence[str], *, storage_options: dict | None = None,
             ds=None) -> set[str]:
    """The ``video_ids`` that have rows in the dataset (through the scalar index when there is one)."""
    ds = ds or _dataset(uri, storage_options)
    found: set[str] = set()
    for i in range(0, len(video_ids), LOOKUP_BATCH):
        where = f"{VIDEO_KEY} IN ({sql_list(list(video_ids[i:i + LOOKUP_BATCH]))})"
        found.update(ds.to_table(columns=[VIDEO_KEY], filter=where).column(VIDEO_KEY).to_pylist())
    return found


def _deletions(ds, video_ids: Sequence[str]):
    """(removed fragment ids, updated FragmentMetadata) deleting every row of ``video_ids``:
    the index finds the fragments; only those get a new deletion vector."""
    frag_ids: set[int] = set()
    for i in range(0, len(video_ids), LOOKUP_BATCH):
        where = f"{VIDEO_KEY} IN ({sql_list(list(video_ids[i:i + LOOKUP_BATCH]))})"
        addrs = ds.to_table(columns=[VIDEO_KEY], filter=where, with_row_address=True).column("_rowaddr")
        frag_ids.update(a >> 32 for a in addrs.to_pylist())
    removed, updated = [], []
    where = f"{VIDEO_KEY} IN ({sql_list(list(video_ids))})"
    for fid in sorted(frag_ids):  # only the fragments holding rows get a new deletion vector
        meta = ds.get_fragment(fid).delete(where)
        if meta is None:
            removed.append(fid)
        else:
            updated.append(meta)
    return removed, updated


def commit_replace(uri: str, staged: Staged | Iterable[Staged] = (), *, delete_video_ids: Sequence[str] = (),
                   replace_staged: bool = True, storage_options: dict | None = None,
                   before_commit: Callable[[], None] | None = None,
                   commit_message: str | None = None, cfg: FlatCommitConfig = FlatCommitConfig()) -> int:
    """One transaction: every row of ``delete_video_ids`` (and, with ``replace_staged``, of the staged
    videos) disappears and the staged rows appear. Returns the new version (the current one when
    there was nothing to do). ``replace_staged=False`` skips the lookup for videos the caller knows
    have no rows (the lookup scans the rows not yet indexed: it grows with the unindexed delta)."""
    import lance
    from lance.commit import CommitConflictError

    staged = [staged] if isinstance(staged, Staged) else list(staged)
    frags = [f for s in staged for f in s.fragments]
    vids = list(dict.fromkeys([*delete_video_ids, *(v for s in staged if replace_staged for v in s.video_ids)]))
    for attempt in range(cfg.conflict_retries + 1):
        ds = _dataset(uri, storage_options)
        removed, updated = _deletions(ds, vids) if vids else ([], [])
        if not (removed or updated or frags):
            return ds.version
        op = (lance.LanceOperation.Update(removed_fragment_ids=removed, updated_fragments=updated,
                                          new_fragments=frags)
              if removed or updated else lance.LanceOperation.Append(frags))
        if before_commit is not None:
            before_commit()
        try:
            return lance.LanceDataset.commit(ds, op, read_version=ds.version, commit_message=commit_message,
                                             storage_options=storage_options or None).version
        except CommitConflictError:
            if attempt == cfg.conflict_retries:
                raise
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
    raise AssertionError("unreachable")


class FlatCommitter:
    """The writer's consistency order on flat-cost commits, for ``videos`` and ``segments``.

    ``commit_segments(staged, placeholders)`` then, once the chunk's videos are final,
    ``commit_videos(rows)``. ``placeholders``: ``indexing`` videos rows for the chunk's videos
    (the writer's ``_indexing_rows``); only those of videos without any row are committed."""

    def __init__(self, db_uri: str, *, storage_options: dict | None = None,
                 before_commit: Callable[[], None] | None = None, commit_message: str | None = None,
                 cfg: FlatCommitConfig = FlatCommitConfig(), videos: str = "videos", segments: str = "segments"):
        self.videos_uri = table_uri(db_uri, videos)
        self.segments_uri = table_uri(db_uri, segments)
        self.kw = {"storage_options": storage_options, "before_commit": before_commit,
                   "commit_message": commit_message, "cfg": cfg}
        self.storage_options = storage_options
        self.cfg = cfg

    def stage_segments(self, segments: pa.Table) -> Staged:
        """Worker side: write a chunk's segments (all segments of each of its videos)."""
        return write(self.segments_uri, segments, storage_options=self.storage_options, cfg=self.cfg)

    def commit_segments(self, staged: Staged | Sequence[Staged], placeholders: pa.Table) -> None:
        staged = [staged] if isinstance(staged, Staged) else list(staged)
        vids = [v for s in staged for v in s.video_ids]
        have = existing(self.videos_uri, vids, storage_options=self.storage_options)
        new = [v for v in vids if v not in have]
        if new:
            import pyarrow.compute as pc

            rows = placeholders.filter(pc.is_in(placeholders.column(VIDEO_KEY), pa.array(new, pa.string())))
            if set(rows.column(VIDEO_KEY).to_pylist()) != set(new):
                raise ValueError("placeholders lack a row for a video of the chunk: "
                                 f"{sorted(set(new) - set(rows.column(VIDEO_KEY).to_pylist()))[:3]}")
            if set(rows.column("status").to_pylist()) != {STATUS_INDEXING}:
                raise ValueError(f"placeholders must have status {STATUS_INDEXING!r}")
            # (a) placeholders first: a segment is never visible before its video has a row
            commit_replace(self.videos_uri, self._write_videos(rows), **self.kw)
        # (b) the segments, replacing the videos' earlier segments in the same transaction. A video
        # without a videos row has no segments (they are committed after its row, deleted before
        # it): only the others are looked up
        commit_replace(self.segments_uri, staged, delete_video_ids=[v for v in vids if v in have],
                       replace_staged=False, **self.kw)

    def commit_videos(self, rows: pa.Table) -> None:
        """(c) Final videos rows replace placeholders / old rows; then segments of videos not ``ok`` go."""
        commit_replace(self.videos_uri, self._write_videos(rows), **self.kw)
        not_ok = [v for v, st in zip(rows.column(VIDEO_KEY).to_pylist(), rows.column("status").to_pylist())
                  if st != STATUS_OK]
        if not_ok:
            commit_replace(self.segments_uri, delete_video_ids=not_ok, **self.kw)

    def _write_videos(self, rows: pa.Table) -> Staged:
        return write(self.videos_uri, rows, storage_options=self.storage_options, cfg=self.cfg)


def optimize_delta(uri: str, *, big_fragment_rows: int = 262_144, target_rows_per_fragment: int = 1_048_576,
                   materialize_deletions_threshold: float = 0.1, storage_options: dict | None = None,
                   before_commit: Callable[[], None] | None = None) -> dict:
    """Nightly upkeep whose cost follows the delta. Compaction leaves out every fragment of at least
    ``big_fragment_rows`` rows (unless more than ``materialize_deletions_threshold`` of it is deleted),
    so a large fragment is never rewritten to absorb a small one; then every index gets the
    unindexed rows as a new delta (``xclip_store.indexes.update_indexes``), no retraining. Returns
    seconds and the unindexed rows per indexed column before and after."""
    ds = _dataset(uri, storage_options)
    out = {"unindexed_before": unindexed_rows(ds)}
    big = []
    for frag in ds.get_fragments():
        physical = frag.metadata.physical_rows
        deleted = physical - frag.count_rows()
        if physical >= big_fragment_rows and deleted <= materialize_deletions_threshold * physical:
            big.append(frag.fragment_id)
    if before_commit is not None:
        before_commit()
    t0 = time.perf_counter()
    metrics = ds.optimize.compact_files(target_rows_per_fragment=target_rows_per_fragment,
                                        excluded_fragment_ids=big,
                                        materialize_deletions_threshold=materialize_deletions_threshold)
    out["compact_s"] = time.perf_counter() - t0
    out["fragments_removed"] = metrics.fragments_removed
    out["fragments_added"] = metrics.fragments_added
    if before_commit is not None:
        before_commit()
    t0 = time.perf_counter()
    upkeep = update_indexes(uri, storage_options=storage_options)
    out["index_s"] = time.perf_counter() - t0
    out["delta"] = upkeep["delta"]
    out["unindexed_after"] = upkeep["unindexed"]
    return out
