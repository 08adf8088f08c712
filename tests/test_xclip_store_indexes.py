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
    cfg = vector_index_config(1_000_000, 512, kind="ivf_pq")
    assert (cfg.num_partitions, cfg.num_sub_vectors) == (1000, 32)
    assert vector_index_config(300, 48, kind="ivf_pq").num_sub_vectors == 3
    assert vector_index_config(1_000_000, 512).num_partitions == 125
    with pytest.raises(ValueError, match="ivf_pq"):
        vector_index_config(10, 8, kind="flat")


def _small_index(tmp_path) -> str:
    """An output whose tables have several fragments (one commit per row, no optimize)."""
    from jobs.config import WriterConfig
    from tests.test_xclip_store_writer import P, _segments, _videos
    from xclip_store.writer import Writer

    uri = str(tmp_path / "out")
    w = Writer(WriterConfig(output=uri, chunk_rows=1, optimize=False), run_id="r1", dim=P)
    for v in ("v1", "v2", "v3"):
        w.add("segments", _segments(v, 1, "r1"))
        w.add("videos", _videos([v], "r1"))
    w.flush()
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

    uri = _small_index(tmp_path)
    (tmp_path / "out" / "runs").mkdir()  # a finished run (build-index checks for one first, as search does)
    (tmp_path / "out" / "runs" / "r1.json").write_text(json.dumps(
        {"run_id": "r1", "status": "finished", "model_source": "m", "finished_at": "2026-12-03T00:00:00+00:00"}))
    with open_output(uri, mode="w", command="run", run_id="running"):
        assert main(["build-index", "--index", uri]) == 7  # a run holds the output
    assert main(["build-index", "--index", uri]) == 0
