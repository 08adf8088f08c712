"""Rewrite a few columns of a LanceDB table at a cost that follows the rewritten columns, not the table.

Why. A relabel changes four small columns (``labels``, ``label_scores``, ``label_text``,
``label_set``) of every row. The old write path was a ``merge_insert`` on the key: Lance joins the
new columns against the whole table, and the caller held every row in memory to build them.
Here each fragment is rewritten on its own (anywhere: a Ray worker), and one commit swaps them in:

1. **rewrite** (per fragment, many processes at once): ``rewrite_fragment`` hands Lance the new
   values keyed by row address (``LanceFragment.update_columns``, the fragment's own rows only).
   Lance writes ONE new data file holding just those columns and returns the fragment's new
   metadata (the old data file keeps every other column: embeddings are never rewritten). Nothing
   is visible yet. The metadata is small and picklable.
2. **commit** (one process, through the leased ``Output.commit``): ``commit_columns`` makes every
   rewritten fragment visible in ONE Lance transaction (``Update``, ``rewrite_columns``) against
   the version the rows were read at, carrying ``message`` (the relabel id; ``committed_version``
   finds it again, so a repair never commits twice). Indexes on the rewritten columns drop those
   fragments until the next ``optimize`` re-indexes them; the vector index is untouched.

Rows someone else rewrote after they were read (a run's upsert: a deletion in the old fragment and
the new row elsewhere) keep that writer's values: the commit always goes on the latest version, each
rewritten fragment with that version's deletion vector. A fragment whose data files changed meanwhile
(compacted) cannot be carried over: ``LabelCommitError`` (Lance's own conflict resolution would let
such a commit through as a no-op).

Measured (bench/relabel_scale.py, bench/RESULTS.md "Relabel at scale"): the rewrite costs about the
label columns' bytes; the commit is one manifest write.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pyarrow as pa

from xclip_core import storage

ROW_ADDR = "_rowaddr"
JOIN = "_rowid"  # Lance's join column for update_columns (the row address on tables without stable ids)


class LabelCommitError(RuntimeError):
    """The staged columns cannot be committed (their fragments were rewritten since they were read)."""


@dataclasses.dataclass(frozen=True)
class StagedColumns:
    """Rewritten fragments of one table, not committed yet (JSON-able with ``to_json``)."""

    read_version: int
    fragments: tuple  # lance.fragment.FragmentMetadata
    fields_modified: tuple[int, ...]

    def to_json(self) -> dict:
        return {"read_version": self.read_version, "fields_modified": list(self.fields_modified),
                "fragments": [f.to_json() for f in self.fragments]}

    @classmethod
    def from_json(cls, doc: dict) -> "StagedColumns":
        import json

        from lance.fragment import FragmentMetadata

        return cls(int(doc["read_version"]), tuple(FragmentMetadata.from_json(json.dumps(f)) for f in doc["fragments"]),
                   tuple(int(i) for i in doc["fields_modified"]))


def dataset(db_uri: str, name: str, *, version: int | None = None, storage_options: dict | None = None):
    """The Lance dataset of LanceDB table ``name`` in the database at ``db_uri`` (at ``version``)."""
    import lance

    return lance.dataset(storage.join(db_uri, f"{name}.lance"), version=version,
                         storage_options=storage_options or None)


def rewrite_fragment(fragment, addresses, columns: pa.Table):
    """Worker side: new values ``columns`` (existing columns of the table) for the rows at row
    addresses ``addresses`` (uint64, as read with ``with_row_address``) of ``fragment``; other rows
    keep theirs. Returns (new FragmentMetadata, modified field ids); nothing is committed."""
    schema = fragment.schema  # the table's own types (list item names, nullability)
    columns = columns.cast(pa.schema([schema.field(n) for n in columns.column_names]))
    data = columns.add_column(0, JOIN, pa.array(addresses, pa.uint64()))
    meta, fields = fragment.update_columns(data, left_on=JOIN)
    return meta, tuple(fields)


def merge_staged(parts) -> StagedColumns | None:
    """One ``StagedColumns`` from per-fragment ``(read_version, meta, fields)`` results."""
    parts = list(parts)
    if not parts:
        return None
    versions = {p[0] for p in parts}
    if len(versions) != 1:
        raise ValueError(f"fragments read at different versions: {sorted(versions)}")
    fields = sorted({f for p in parts for f in p[2]})
    return StagedColumns(versions.pop(), tuple(sorted((p[1] for p in parts), key=lambda m: m.id)), tuple(fields))


def stage_by_key(ds, key: str, guard: str, columns: pa.Table) -> tuple[StagedColumns | None, int]:
    """Stage ``columns`` (``key``, ``guard`` and the columns to rewrite) into the rows of dataset
    ``ds`` whose (``key``, ``guard``) match, one fragment at a time (rows rewritten since ``columns``
    was read have another ``guard`` and keep theirs). For callers that hold the new values already.
    Returns (staged, rows matched)."""
    import pyarrow.compute as pc

    if not columns.num_rows:
        return None, 0
    want = columns.select([key, guard]).append_column("_i", pa.array(range(columns.num_rows), pa.int64()))
    values = columns.drop_columns([key, guard])
    parts, rows = [], 0
    for frag in ds.get_fragments():
        cur = frag.to_table(columns=[key, guard], with_row_address=True)
        hit = cur.join(want, keys=[key, guard], join_type="inner")
        if hit.num_rows:
            hit = hit.sort_by(ROW_ADDR)
            meta, fields = rewrite_fragment(frag, hit.column(ROW_ADDR), values.take(pc.cast(hit.column("_i"), pa.int64())))
            parts.append((int(ds.version), meta, fields))
            rows += hit.num_rows
    return merge_staged(parts), rows


def committed_version(ds, message: str, *, after: int) -> int | None:
    """The version after ``after`` whose transaction carries ``message`` (None: not committed)."""
    from lance.dataset import LANCE_COMMIT_MESSAGE_KEY

    for v in range(int(after) + 1, int(ds.latest_version) + 1):
        try:
            tx = ds.read_transaction(v)
        except Exception:  # a version whose transaction file was cleaned up: not ours
            continue
        if tx is not None and (tx.transaction_properties or {}).get(LANCE_COMMIT_MESSAGE_KEY) == message:
            return v
    return None


def _compacted(ds, *, after: int) -> bool:
    """Whether a version after ``after`` rewrote fragments (compaction: their rows live on elsewhere)."""
    import lance

    for v in range(after + 1, int(ds.version) + 1):
        tx = ds.read_transaction(v)
        if tx is None or isinstance(tx.operation, lance.LanceOperation.Rewrite):
            return True
    return False


def _rebased(staged: StagedColumns, read, latest) -> list:
    """The staged fragments with the newest deletion vectors of ``latest`` (module doc); ``read``: the
    dataset at the version the fragments were read at."""
    then = {f.fragment_id: [d.path for d in f.metadata.files] for f in read.get_fragments()}
    now = {f.fragment_id: f.metadata for f in latest.get_fragments()}
    out = []
    for meta in staged.fragments:
        cur = now.get(meta.id)
        if cur is None and not _compacted(latest, after=int(read.version)):
            continue  # every row of it was deleted since: nothing to label
        if cur is None or [f.path for f in cur.files] != then.get(meta.id):
            raise LabelCommitError(f"fragment {meta.id} was rewritten since it was read (compaction or a column "
                                   "change by another writer); rerun the relabel")
        out.append(dataclasses.replace(meta, deletion_file=cur.deletion_file))
    return out


def commit_columns(db_uri: str, name: str, staged: StagedColumns, *, message: str,
                   storage_options: dict | None = None, before_commit: Callable[[], None] | None = None,
                   conflict_retries: int = 5) -> int:
    """Make the rewritten fragments of table ``name`` visible in one transaction (module doc);
    idempotent: a staged set already committed (its ``message`` found) returns that version."""
    import lance
    from lance.commit import CommitConflictError

    ds = dataset(db_uri, name, storage_options=storage_options)
    done = committed_version(ds, message, after=staged.read_version)
    if done is not None:
        return done
    read = dataset(db_uri, name, version=staged.read_version, storage_options=storage_options)
    for attempt in range(conflict_retries + 1):
        # always against the latest version, checked here: Lance itself lets an Update whose fragments
        # a compaction replaced commit as a no-op (measured with pylance 13), which would lose the labels
        frags = _rebased(staged, read, ds)
        if not frags:
            return int(ds.version)
        op = lance.LanceOperation.Update(updated_fragments=frags, fields_modified=list(staged.fields_modified),
                                         update_mode="rewrite_columns")
        if before_commit is not None:
            before_commit()
        try:
            return int(lance.LanceDataset.commit(ds, op, read_version=int(ds.version), commit_message=message,
                                                 storage_options=storage_options or None).version)
        except CommitConflictError:
            if attempt == conflict_retries:
                raise
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
            ds = dataset(db_uri, name, storage_options=storage_options)
    raise AssertionError("unreachable")
