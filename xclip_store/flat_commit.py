"""Flat-cost commits of LanceDB tables through Lance's fragment API (issue 16).

Why. The writer used to commit a segments chunk with ``merge_insert(segment_id)`` and
``when_not_matched_by_source_delete``: Lance joins the chunk against the whole table, so one
4,096-row chunk cost ~0.5 s at 100k rows and ~7 s at 1M (bench/RESULTS.md, "Scale"). Here a
chunk's commit is instead:

1. **write** (anywhere: the driver, or many workers in parallel): the chunk's rows become new
   data files (``lance.fragment.write_fragments``); nothing is visible yet. Only the small
   :class:`Staged` record (fragment metadata + the chunk's ``video_id`` list) goes to the committer.
2. **commit** (one process): the rows of the chunk's videos already in the table are found through
   the scalar index on ``video_id`` (``IN`` filter, ``with_row_address``; with :class:`RunRows`,
   only for the videos and fragments the committer's own commits do not account for), only the fragments
   holding them get a deletion vector (``LanceFragment.delete``), and ONE Lance transaction
   (``Update``: deletion vectors + new fragments, or ``Append`` when nothing is replaced) makes
   the new rows visible and the old ones invisible at once.

The cost is the index lookup plus the rewritten deletion vectors of the touched fragments plus
the new files: it depends on the chunk (and on the unindexed delta the lookup scans), not on the
table's size.

The consistency order of a run (placeholders, segments, final videos rows) is the writer's
(``xclip_store.writer``): it calls :func:`commit_replace` once per step. A crash leaves at worst
uncommitted data files (invisible; removed by the version cleanup once they are old) and what the
writer's order leaves. Replacing by ``video_id`` also removes duplicate keys left by concurrent runs.

Every commit calls ``before_commit()`` first (raise to refuse) and records ``properties`` (the
writer's: run id, command, lease generation, what) as the Lance transaction's properties
(``LanceDataset.read_transaction(version).transaction_properties``). Commit conflicts
(``lance.commit.CommitConflictError``) are retried from the lookup.

``optimize_delta`` is the nightly upkeep whose cost follows the delta: compaction that never
rewrites a large fragment to absorb small ones, and index upkeep that adds a delta index instead
of merging/rebuilding; it reports the unindexed rows (``index_stats``).

This module needs ``pylance`` matching LanceDB's embedded Lance (13.0.0 for lancedb 0.40).
It imports nothing from jobs/, xclip_search/ or moderation/.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from schemas import VECTOR_COLUMN
from schemas.sql import sql_list
from xclip_core import storage
from xclip_store.indexes import unindexed_rows, update_indexes

VIDEO_KEY = "video_id"
LOOKUP_BATCH = 1000  # video ids per IN (...) filter
STAGED_PROPERTY = "xclip.staged"  # transaction property: the ids of the staged chunks it committed
RESUME_LOOKBACK = 16  # transactions a resumed commit looks back for its own


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
    per_video: pa.Table | None = None  # ``write(per_video=...)``: those columns of each video's first row
    stage_id: str = ""  # unique per write: a commit records it, so a retried commit can tell it landed


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


def write(uri: str, table: pa.Table, *, storage_options: dict | None = None, per_video: Sequence[str] = (),
          cfg: FlatCommitConfig = FlatCommitConfig()) -> Staged:
    """Write ``table`` (the dataset's schema, with a ``video_id`` column) as new data files of the
    dataset at ``uri`` without committing them. Safe to run in many processes at once. The
    ``per_video`` columns of each video's first row travel with the result (what the committer
    needs to know of the chunk: e.g. the writer's placeholder rows, or a videos row's status)."""
    from lance.fragment import write_fragments

    ds = _dataset(uri, storage_options)
    schema = ds.schema
    if [f.name for f in table.schema] != schema.names:
        raise ValueError(f"{uri}: columns {table.column_names} do not match the table's {schema.names}")
    table = _clean_vectors(table.cast(schema), cfg.on_bad_vectors)
    col = table.column(VIDEO_KEY).to_pylist()
    first = dict(zip(reversed(col), range(len(col) - 1, -1, -1)))  # video -> its first row
    frags = write_fragments(table, ds, schema=schema, max_rows_per_file=cfg.max_rows_per_file,
                            storage_options=storage_options or None) if table.num_rows else []
    rows = (table.select(list(per_video)).take(pa.array(sorted(first.values()), pa.int64()))
            if per_video else None)
    return Staged(tuple(frags), tuple(sorted(first, key=first.get)), table.num_rows, rows, uuid.uuid4().hex)


def lookup_fragments(ds, video_ids: Sequence[str], fragments=None) -> dict[int, set[str]]:
    """Fragment id -> the ``video_ids`` with rows there: ONE index lookup (``IN`` filters of
    ``LOOKUP_BATCH`` ids, through the scalar index on ``video_id`` where there is one; the rows not
    indexed yet are scanned). Only in ``fragments`` (``LanceFragment``s) when given."""
    found: dict[int, set[str]] = {}
    if fragments is not None and not fragments:
        return found
    for i in range(0, len(video_ids), LOOKUP_BATCH):
        where = f"{VIDEO_KEY} IN ({sql_list(list(video_ids[i:i + LOOKUP_BATCH]))})"
        t = ds.scanner(columns=[VIDEO_KEY], filter=where, with_row_address=True, fragments=fragments).to_table()
        for v, a in zip(t.column(VIDEO_KEY).to_pylist(), t.column("_rowaddr").to_pylist()):
            found.setdefault(a >> 32, set()).add(v)
    return found


class RunRows:
    """What one committer (the writer: one per table and run) knows of a dataset's rows without a
    lookup, so that a commit costs the same at a run's last chunk as at its first.

    ``own``: the fragments its commits added, id -> the videos with rows there (less those its later
    commits deleted). ``others``: the only videos that may have rows in any other fragment (``None``:
    any video). ``commit_replace(..., rows=...)`` finds the rows to delete in its own fragments from
    ``own`` and looks up (:func:`lookup_fragments`) only the videos of ``others``, only in the other
    fragments: the many small fragments a run appends are never scanned, and a video known to be new
    costs no lookup. Kept conservative: a commit that raised (it may have landed) or is found landed
    (``resume``) adds its videos to ``others``; a fragment of ``own`` gone from the dataset (a
    compaction) forgets everything (``others = None``: every video looked up, in every fragment)."""

    def __init__(self, others: Iterable[str] | None = None):
        self.own: dict[int, set[str]] = {}
        self.others = None if others is None else set(others)

    def forget(self) -> None:
        self.own, self.others = {}, None

    def maybe_elsewhere(self, video_ids: Iterable[str]) -> None:
        """``video_ids`` may have rows outside ``own`` now."""
        if self.others is not None:
            self.others.update(video_ids)

    def locate(self, ds, video_ids: Sequence[str]) -> tuple[dict[int, set[str]], set[str]]:
        """(fragment id -> the ``video_ids`` with rows there, the videos looked up in other fragments)."""
        live = {f.fragment_id: f for f in ds.get_fragments()}
        if not self.own.keys() <= live.keys():  # our fragments were rewritten: know nothing
            self.forget()
        wanted = set(video_ids)
        where = {fid: vs & wanted for fid, vs in self.own.items() if not vs.isdisjoint(wanted)}
        looked = [v for v in video_ids if self.others is None or v in self.others]
        if looked:
            rest = [f for fid, f in live.items() if fid not in self.own] if self.own else None
            for fid, vs in lookup_fragments(ds, looked, rest).items():
                where.setdefault(fid, set()).update(vs)
        return where, set(looked)

    def committed(self, ds, staged: Sequence[Staged], deleted: dict[int, set[str]], looked: set[str],
                  removed: Sequence[int]) -> None:
        """After a commit (``ds``: the version it made) that deleted the rows of ``deleted`` (fragment
        id -> videos; ``removed``: the fragments left empty) and added ``staged``."""
        for fid in removed:
            self.own.pop(fid, None)
        for fid, vs in deleted.items():
            if fid in self.own:
                self.own[fid] -= vs
                if not self.own[fid]:
                    del self.own[fid]
        if self.others is not None:
            self.others -= looked  # their rows outside our fragments are gone
        paths = {f.files[0].path: s.video_ids for s in staged for f in s.fragments}
        for frag in reversed(ds.get_fragments()):  # a commit's new fragments come last
            if not paths:
                break
            vids = paths.pop(frag.metadata.files[0].path, None)
            if vids is not None:
                self.own[frag.fragment_id] = set(vids)
        self.maybe_elsewhere(v for vids in paths.values() for v in vids)  # not found: be safe


def _deletions(ds, where: dict[int, set[str]]):
    """(removed fragment ids, updated FragmentMetadata) deleting the rows of ``where`` (fragment id
    -> its videos whose rows go): only those fragments get a new deletion vector."""
    removed, updated = [], []
    for fid in sorted(where):
        frag = ds.get_fragment(fid)
        before = frag.metadata.deletion_file
        meta = frag.delete(f"{VIDEO_KEY} IN ({sql_list(sorted(where[fid]))})")
        if meta is None:
            removed.append(fid)
        elif meta.deletion_file != before:
            updated.append(meta)
    return removed, updated


def commit_replace(uri: str, staged: Staged | Iterable[Staged] = (), *, delete_video_ids: Sequence[str] = (),
                   replace_staged: bool = True, storage_options: dict | None = None,
                   before_commit: Callable[[], None] | None = None,
                   properties: dict[str, str] | None = None, resume: bool = False, rows: RunRows | None = None,
                   cfg: FlatCommitConfig = FlatCommitConfig()) -> int:
    """One transaction: every row of ``delete_video_ids`` (and, with ``replace_staged``, of the staged
    videos) disappears and the staged rows appear. Returns the new version (the current one when
    there was nothing to do). ``replace_staged=False`` skips the lookup for videos the caller knows
    have no rows (the lookup scans the rows not yet indexed: it grows with the unindexed delta).
    ``rows``: what the caller's earlier commits tell of the rows (:class:`RunRows`; updated here):
    only the videos it does not place are looked up, only outside the fragments it added.
    ``properties``: recorded as the transaction's properties, with the staged chunks' ids.
    ``resume``: this commit was tried before (its error may have come after it landed): when one of
    the last ``RESUME_LOOKBACK`` transactions holds these staged chunks, nothing is committed again."""
    import lance
    from lance.commit import CommitConflictError

    staged = [staged] if isinstance(staged, Staged) else list(staged)
    frags = [f for s in staged for f in s.fragments]
    vids = list(dict.fromkeys([*delete_video_ids, *(v for s in staged if replace_staged for v in s.video_ids)]))
    new_vids = [v for s in staged for v in s.video_ids]
    props = {k: str(v) for k, v in (properties or {}).items()}
    if staged:
        props[STAGED_PROPERTY] = ",".join(s.stage_id for s in staged)
    for attempt in range(cfg.conflict_retries + 1):
        ds = _dataset(uri, storage_options)
        if staged and resume and _landed(ds, props[STAGED_PROPERTY]):
            if rows is not None:  # landed in fragments we do not know
                rows.maybe_elsewhere(new_vids)
            return ds.version
        if not vids:
            where, looked = {}, set()
        elif rows is None:
            where, looked = lookup_fragments(ds, vids), set()
        else:
            where, looked = rows.locate(ds, vids)
        removed, updated = _deletions(ds, where)
        if not (removed or updated or frags):
            return ds.version
        op = (lance.LanceOperation.Update(removed_fragment_ids=removed, updated_fragments=updated,
                                          new_fragments=frags)
              if removed or updated else lance.LanceOperation.Append(frags))
        if before_commit is not None:
            before_commit()
        tx = lance.Transaction(read_version=ds.version, operation=op, transaction_properties=props)
        try:
            done = lance.LanceDataset.commit(ds, tx, storage_options=storage_options or None)
        except CommitConflictError:
            if attempt == cfg.conflict_retries:
                raise
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
            continue
        except BaseException:
            if rows is not None:  # it may have landed all the same
                rows.maybe_elsewhere(new_vids)
            raise
        if rows is not None:
            rows.committed(done, staged, where, looked, removed)
        return done.version
    raise AssertionError("unreachable")


def _landed(ds, staged_ids: str) -> bool:
    """One of the dataset's last transactions committed the staged chunks ``staged_ids``."""
    return any(tx is not None and (tx.transaction_properties or {}).get(STAGED_PROPERTY) == staged_ids
               for tx in ds.get_transactions(RESUME_LOOKBACK))


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


def unindexed(uri: str, *, storage_options: dict | None = None) -> dict[str, int]:
    """Indexed column(s) -> rows of the dataset at ``uri`` not covered by the index."""
    return unindexed_rows(_dataset(uri, storage_options))


def cleanup(uri: str, *, older_than: dt.timedelta, storage_options: dict | None = None) -> dict:
    """Remove the versions older than ``older_than`` (but the latest) and the files only they use,
    and data files no version uses (a crashed run's staged files) once they are a week old."""
    stats = _dataset(uri, storage_options).cleanup_old_versions(older_than=older_than)
    return {"bytes_removed": int(stats.bytes_removed), "old_versions": int(stats.old_versions)}
