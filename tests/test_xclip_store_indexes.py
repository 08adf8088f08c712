"""xclip_store.indexes: one builder; the ANN index is used and keeps recall on a clustered set."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from schemas.output import vectors
from tests.search_helpers import brute_force
from xclip_store.indexes import SEARCH_NPROBES, SEARCH_REFINE_FACTOR, ensure_indexes, vector_index_config

DIM, ROWS = 64, 4000


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    import lancedb

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, DIM)).astype(np.float32)
    x = centres[rng.integers(0, 40, ROWS)] + 0.25 * rng.normal(size=(ROWS, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = pa.table({"segment_id": [f"s{i:05d}" for i in range(ROWS)], "video_id": [f"v{i % 97}" for i in range(ROWS)],
                  "labels": [["a", "b"] if i % 2 else ["c"] for i in range(ROWS)], "embedding": vectors(x, DIM)})
    tbl = lancedb.connect(str(tmp_path_factory.mktemp("lance"))).create_table("segments", t)
    built = ensure_indexes(tbl, "segments")
    return tbl, x, built, rng


def test_builds_the_indexes_once(table):
    tbl, _, built, _ = table
    assert set(built) == {"segment_id", "video_id", "labels", "embedding"}
    assert ensure_indexes(tbl, "segments") == {}  # nothing left to build
    types = sorted(i.index_type for i in tbl.list_indices())
    assert types == ["BTree", "BTree", "IvfHnswSq", "LabelList"]


def test_ann_index_is_used_and_keeps_recall(table):
    tbl, x, _, rng = table
    plan = tbl.search(x[0], vector_column_name="embedding").distance_type("cosine").limit(10).explain_plan(True)
    assert "ANNSubIndex" in plan and "embedding_idx" in plan
    assert tbl.index_stats("embedding_idx").num_indexed_rows == ROWS
    recalls = []
    for qi in rng.choice(ROWS, 20, replace=False):
        q = x[qi] + 0.05 * rng.normal(size=DIM).astype(np.float32)
        s = tbl.search(q, vector_column_name="embedding").distance_type("cosine").nprobes(SEARCH_NPROBES)
        if SEARCH_REFINE_FACTOR:
            s = s.refine_factor(SEARCH_REFINE_FACTOR)
        got = s.limit(10).select(["segment_id"]).to_arrow()
        want = {f"s{i:05d}" for i in brute_force(x, q, 10)}
        recalls.append(len(want & set(got.column("segment_id").to_pylist())) / 10)
    assert np.mean(recalls) >= 0.9, recalls


def test_vector_index_parameters_follow_the_row_count():
    """LanceDB's guidance: IVF_PQ partitions ~ rows/4,096, HNSW-backed ~ rows/1,048,576, 1..4,096."""
    pq = {n: vector_index_config(n, 512, kind="ivf_pq").num_partitions
          for n in (100, 4_096, 1_000_000, 10_485_760, 16_777_216, 1_800_000_000)}
    assert pq == {100: 1, 4_096: 1, 1_000_000: 244, 10_485_760: 2_560, 16_777_216: 4_096, 1_800_000_000: 4_096}
    hnsw = {n: vector_index_config(n, 512).num_partitions
            for n in (4_000, 1_000_000, 10_485_760, 1_800_000_000, 10**10)}
    assert hnsw == {4_000: 1, 1_000_000: 1, 10_485_760: 10, 1_800_000_000: 1_717, 10**10: 4_096}
    assert vector_index_config(1_000_000, 512, kind="ivf_pq").num_sub_vectors == 32
    assert vector_index_config(300, 48, kind="ivf_pq").num_sub_vectors == 3
    with pytest.raises(ValueError, match="ivf_pq"):
        vector_index_config(10, 8, kind="flat")


def _rows(first: int, n: int, rng) -> pa.Table:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return pa.table({"segment_id": [f"s{i:05d}" for i in range(first, first + n)],
                     "video_id": [f"v{i % 97}" for i in range(first, first + n)],
                     "labels": [["a"]] * n, "embedding": vectors(x, DIM)}), x


def test_update_indexes_adds_the_delta_without_retraining(tmp_path):
    """A delta appended to an indexed table is unindexed; ``update_indexes`` makes it a delta index
    of each index: nothing unindexed afterwards, the base index (its uuid) is kept, one more index
    segment each, and an ANN search finds a delta row."""
    import lancedb

    from xclip_store.indexes import index_state, unindexed_rows, update_indexes

    rng = np.random.default_rng(1)
    base, _ = _rows(0, 1000, rng)
    tbl = lancedb.connect(str(tmp_path)).create_table("segments", base)
    ensure_indexes(tbl, "segments")
    before = index_state(tbl)
    assert set(before) == {"segment_id", "video_id", "labels", "embedding"}
    delta, x = _rows(1000, 300, rng)
    tbl.add(delta)
    assert unindexed_rows(tbl) == dict.fromkeys(before, 300)
    plan = tbl.search(x[7], vector_column_name="embedding").distance_type("cosine").limit(1).explain_plan(True)
    assert "LanceScan" in plan and "deltas=1" in plan  # the delta is searched by brute force

    report = update_indexes(tbl)

    assert report["unindexed_before"] == dict.fromkeys(before, 300)
    assert report["delta"] == dict.fromkeys(before, 300) and report["unindexed"] == dict.fromkeys(before, 0)
    after = index_state(tbl)
    for col, st in after.items():  # not retrained: the base index stays, a delta index is added
        assert st["uuids"][0] == before[col]["uuids"][0] and st["num_indices"] == 2, (col, st)
        assert st["indexed"] == 1300 and st["unindexed"] == 0
    plan = tbl.search(x[7], vector_column_name="embedding").distance_type("cosine").limit(1).explain_plan(True)
    assert "LanceScan" not in plan and "deltas=2" in plan  # the delta is in the index now
    hit = tbl.search(x[7], vector_column_name="embedding").distance_type("cosine").nprobes(SEARCH_NPROBES) \
        .limit(1).select(["segment_id"]).to_arrow()
    assert hit.column("segment_id").to_pylist() == ["s01007"]
    assert update_indexes(tbl)["delta"] == {}  # nothing left: no commit
    assert index_state(tbl) == after


def _small_index(tmp_path, *, finished: bool = False) -> str:
    """An output whose tables have several fragments (one commit per row, no optimize); ``finished``:
    with run r1's manifest (the CLI's build-index checks for a finished run first, as search does)."""
    from jobs.config import WriterConfig
    from tests.test_xclip_store_writer import P, _segments, _videos
    from xclip_store.writer import Writer

    uri = str(tmp_path / "out")
    w = Writer(WriterConfig(output=uri, chunk_rows=1, optimize=False), run_id="r1", dim=P)
    for v in ("v1", "v2", "v3"):
        w.add("segments", _segments(v, 1, "r1"))
        w.add("videos", _videos([v], "r1"))
    w.flush()
    if finished:
        (tmp_path / "out" / "runs").mkdir()
        (tmp_path / "out" / "runs" / "r1.json").write_text(json.dumps(
            {"run_id": "r1", "status": "finished", "model_source": "m", "finished_at": "2026-12-03T00:00:00+00:00"}))
    return uri


def test_build_index_retries_a_commit_conflict(tmp_path):
    """Another process compacts the table between build-index's read and its first index commit
    (a barrier at the 1st create_index call): LanceDB raises "Retryable commit conflict"; the
    build is retried on the table's latest version and succeeds (before: a traceback, exit 1)."""
    import lancedb
    from lancedb.table import LanceTable

    from tests.fault_points import at_call
    from xclip_store import build_indexes

    uri = _small_index(tmp_path)

    def compact_elsewhere(tbl, *args, **kwargs):
        other = lancedb.connect(f"{uri}/lancedb").open_table(tbl.name)
        other.optimize()  # a Rewrite commit the build-index handle has not seen

    with at_call(LanceTable, "create_index", 1, compact_elsewhere) as hook:
        report = build_indexes(uri)
    assert hook.fired and hook.calls > len(report["segments"]["built"]) + len(report["videos"]["built"])
    assert {"segment_id", "video_id"} <= set(report["segments"]["built"])
    assert "segment_id" in report["segments"]["indexes"] and "video_id" in report["videos"]["indexes"]


def test_build_index_takes_the_lease(tmp_path):
    from xclip_cli import main
    from xclip_store import open_output

    uri = _small_index(tmp_path, finished=True)
    with open_output(uri, mode="w", command="run", run_id="running"):
        assert main(["build-index", "--index", uri]) == 7  # a run holds the output
    assert main(["build-index", "--index", uri]) == 0


def _add_videos(uri: str, run: str, vids: list[str]) -> None:
    """Another run's rows, one commit (one unindexed fragment) per video."""
    from jobs.config import WriterConfig
    from tests.test_xclip_store_writer import P, _segments, _videos
    from xclip_store.writer import Writer

    w = Writer(WriterConfig(output=uri, chunk_rows=1, optimize=False), run_id=run, dim=P)
    for v in vids:
        w.add("segments", _segments(v, 1, run))
        w.add("videos", _videos([v], run))
    w.flush()


def test_build_index_adds_the_delta_and_retries_a_conflict(tmp_path, caplog):
    """build-index on indexed tables with a delta: the delta becomes a delta index. Another process
    compacts the segments table between build-index's read and its index commit (at the 1st
    optimize_indices call): the commit conflicts, is retried on the latest version, and succeeds."""
    import lance
    from lance.dataset import DatasetOptimizer

    from tests.fault_points import at_call
    from xclip_store import build_indexes
    from xclip_store.indexes import index_state

    uri = _small_index(tmp_path)
    build_indexes(uri)
    seg_uri = f"{uri}/lancedb/segments.lance"
    base = index_state(seg_uri)
    indexed = [f.fragment_id for f in lance.dataset(seg_uri).get_fragments()]
    _add_videos(uri, "r2", ["v4", "v5"])
    compacted = []

    def compact_elsewhere(opt, *args, **kwargs):  # the 2 new fragments become 1 (a Rewrite commit)
        ds = lance.dataset(seg_uri)
        compacted.append(ds.optimize.compact_files(excluded_fragment_ids=indexed).fragments_removed)

    with caplog.at_level("WARNING", logger="xclip_store.retry"), \
            at_call(DatasetOptimizer, "optimize_indices", 1, compact_elsewhere) as hook:
        report = build_indexes(uri)
    assert compacted == [2]  # the concurrent Rewrite commit happened
    retries = [r.getMessage() for r in caplog.records if "add the unindexed rows" in r.getMessage()]
    assert len(retries) == 1 and "commit conflict" in retries[0], retries
    assert hook.calls == 3  # segments: the conflicted call + its retry; videos: one call
    for name, t_uri in (("segments", seg_uri), ("videos", f"{uri}/lancedb/videos.lance")):
        r = report[name]
        assert {"segment_id" if name == "segments" else "video_id", "labels"} <= set(r["unindexed_before"])
        assert r["unindexed_before"] == r["delta"] == dict.fromkeys(r["unindexed_before"], 2), (name, r)
        assert r["unindexed"] == dict.fromkeys(r["unindexed_before"], 0) and r["built"] == {}
        assert r["retrained"] == []
    after = index_state(seg_uri)
    assert {k: v["num_indices"] for k, v in after.items()} == dict.fromkeys(base, 2)
    assert all(after[k]["uuids"][0] == base[k]["uuids"][0] for k in base)  # not rebuilt
