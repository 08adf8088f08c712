"""xclip_store.label_commit on real Lance datasets: rewritten label columns become visible in one
commit, nothing else changes, a commit is never made twice, a writer that committed in between keeps
its rows, a compacted fragment is refused; and a relabel commit needs the output lease."""
from __future__ import annotations

import lance
import numpy as np
import pyarrow as pa
import pytest

from xclip_store.label_commit import (LabelCommitError, StagedColumns, commit_columns, dataset, merge_staged,
                                      rewrite_fragment, stage_by_key)


def _table(n: int, first: int = 0, label: str = "old") -> pa.Table:
    ids = [f"s{i:05d}" for i in range(first, first + n)]
    return pa.table({"segment_id": ids, "emb": pa.FixedSizeListArray.from_arrays(
        pa.array(np.arange(first * 4, (first + n) * 4, dtype=np.float32)), 4),
        "labels": pa.array([[label]] * n, pa.list_(pa.string())), "label_set": [label] * n,
        "run_id": ["r1"] * n})


@pytest.fixture
def db(tmp_path):
    """A LanceDB-style database with a ``segments`` table of 3 fragments (100 rows each)."""
    uri = str(tmp_path / "lancedb")
    lance.write_dataset(_table(300), f"{uri}/segments.lance", max_rows_per_file=100)
    return uri


def _stage_all(uri: str, label: str) -> StagedColumns:
    ds = dataset(uri, "segments")
    parts = []
    for frag in ds.get_fragments():
        rows = frag.to_table(columns=["segment_id"], with_row_address=True)
        n = rows.num_rows
        cols = pa.table({"labels": pa.array([[label, "x"]] * n, pa.list_(pa.string())), "label_set": [label] * n})
        meta, fields = rewrite_fragment(frag, rows.column("_rowaddr"), cols)
        parts.append((ds.version, meta, fields))
    return merge_staged(parts)


def _rows(uri: str) -> dict:
    return {r["segment_id"]: r for r in dataset(uri, "segments").to_table().to_pylist()}


def test_rewritten_columns_commit_once_and_nothing_else_changes(db):
    before = _rows(db)
    staged = StagedColumns.from_json(_stage_all(db, "new").to_json())  # as a repair reads it back
    assert {r["label_set"] for r in _rows(db).values()} == {"old"}  # staged: invisible
    v = commit_columns(db, "segments", staged, message="relabel a segments")
    after = _rows(db)
    assert set(after) == set(before) and {r["label_set"] for r in after.values()} == {"new"}
    assert all(after[k]["labels"] == ["new", "x"] for k in after)
    assert all((after[k]["emb"], after[k]["run_id"]) == (before[k]["emb"], before[k]["run_id"]) for k in after)
    ds = dataset(db, "segments")
    assert len(ds.get_fragments()) == 3 and all(len(f.metadata.files) == 2 for f in ds.get_fragments())
    assert commit_columns(db, "segments", staged, message="relabel a segments") == v == ds.version  # not twice


def test_a_writer_that_committed_in_between_keeps_its_rows(db):
    """Relabelled twice (the second relabel replaces the first's label files); between the second's
    staging and its commit another writer rewrites one row (delete + append) and deletes another."""
    commit_columns(db, "segments", _stage_all(db, "one"), message="relabel 1")
    staged = _stage_all(db, "two")
    ds = dataset(db, "segments")
    ds.delete("segment_id IN ('s00005', 's00150')")
    changed = _table(1, first=5, label="later")
    ds = lance.write_dataset(changed, f"{db}/segments.lance", mode="append")
    commit_columns(db, "segments", staged, message="relabel 2")
    rows = _rows(db)
    assert len(rows) == 299 and "s00150" not in rows
    assert (rows["s00005"]["label_set"], rows["s00005"]["labels"]) == ("later", ["later"])
    assert {r["label_set"] for k, r in rows.items() if k != "s00005"} == {"two"}


def test_a_fragment_compacted_since_it_was_read_is_refused(db):
    staged = _stage_all(db, "new")
    ds = dataset(db, "segments")
    ds.delete("segment_id = 's00001'")
    ds.optimize.compact_files(target_rows_per_fragment=1000, materialize_deletions_threshold=0.0)
    with pytest.raises(LabelCommitError, match="rewritten since it was read"):
        commit_columns(db, "segments", staged, message="relabel c")
    assert {r["label_set"] for r in _rows(db).values()} == {"old"}


def test_stage_by_key_writes_only_rows_whose_guard_is_unchanged(db):
    ds = dataset(db, "segments")
    cols = pa.table({"segment_id": ["s00001", "s00002", "s00250"], "run_id": ["r1", "other", "r1"],
                     "labels": pa.array([["k"]] * 3, pa.list_(pa.string())), "label_set": ["k"] * 3})
    staged, rows = stage_by_key(ds, "segment_id", "run_id", cols)
    assert rows == 2 and len(staged.fragments) == 2  # s00002's guard differs; two fragments touched
    commit_columns(db, "segments", staged, message="relabel k")
    got = _rows(db)
    assert [k for k, r in sorted(got.items()) if r["label_set"] == "k"] == ["s00001", "s00250"]


def test_a_relabel_commit_without_the_lease_is_refused(tmp_path):
    from xclip_search.labelstate import _commit
    from xclip_store import LeaseError

    uri = str(tmp_path / "out")
    lance.write_dataset(_table(10), f"{uri}/lancedb/segments.lance")
    staged = _stage_all(f"{uri}/lancedb", "new")
    with pytest.raises(LeaseError, match="does not hold the output lease"):
        _commit(uri, None, "segments", staged, "relabel z")
    assert {r["label_set"] for r in _rows(f"{uri}/lancedb").values()} == {"old"}
