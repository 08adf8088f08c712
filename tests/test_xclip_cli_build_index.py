"""``xclip-index build-index`` (xclip_cli.build_index): says why an index is not built; a missing
index (local or a missing S3 bucket) is the one missing-index line, exit 4."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.cli_helpers import error_line
from xclip_cli import EXIT_OUTPUT, main


@pytest.mark.slow  # the session's tiny index is written by `xclip-index run` (Ray)
def test_not_built_says_why(cli_index, tmp_path, capsys):
    out = str(tmp_path / "index")
    shutil.copytree(cli_index["out"], out)
    assert main(["build-index", "--index", out]) == 0
    report = json.loads(capsys.readouterr().out)
    for name, n in (("segments", 3), ("videos", 2)):
        assert report[name]["vectors"] == n and "embedding" not in report[name]["indexes"]
        assert report[name]["not_built"]["embedding"].startswith(f"{n} vectors; the ANN index needs 256")


def test_missing_index_and_missing_bucket(s3_server, tmp_path, capsys):
    for uri in (str(tmp_path / "nothing"), "s3://no-such-bucket-15b/index"):
        assert main(["build-index", "--index", uri]) == EXIT_OUTPUT
        line = error_line(capsys.readouterr().err)
        assert f"no runs/*.json under {uri}" in line and "testing-secret" not in line


@pytest.mark.slow
def test_an_index_that_could_not_be_built_is_exit_4(cli_index, tmp_path, capsys, monkeypatch):
    """Fault point: the vector index's create_index raises (as LanceDB does on a failed training);
    the 256-vector threshold is lowered so the tiny index wants one."""
    import lancedb.table

    import xclip_store.indexes as indexes

    out = str(tmp_path / "index")
    shutil.copytree(cli_index["out"], out)
    real = lancedb.table.LanceTable.create_index

    def create_index(self, column, *a, **k):
        if column == "embedding":
            raise RuntimeError("injected: KMeans training failed")
        return real(self, column, *a, **k)

    monkeypatch.setattr(indexes, "MIN_VECTOR_ROWS", 2)
    monkeypatch.setattr(lancedb.table.LanceTable, "create_index", create_index)
    assert main(["build-index", "--index", out]) == EXIT_OUTPUT
    line = error_line(capsys.readouterr().err)
    assert "the vector index of segments (3 vectors), videos (2 vectors) could not be built" in line


def test_delta_by_default_full_rebuild_with_retrain(tmp_path, capsys):
    """A second build-index adds the new rows as a delta index (the base index stays, ``delta`` and
    ``unindexed_before`` say how many rows); ``--retrain`` rebuilds every index (one index segment,
    a new uuid, ``retrained`` names it)."""
    from tests.test_xclip_store_indexes import _add_videos, _small_index
    from xclip_store.indexes import index_state

    uri = _small_index(tmp_path, finished=True)
    seg = f"{uri}/lancedb/segments.lance"

    def build(*extra) -> dict:
        assert main(["build-index", "--index", uri, *extra]) == 0
        return json.loads(capsys.readouterr().out)["segments"]

    first = build()
    assert {"segment_id", "video_id"} <= set(first["built"]) and first["delta"] == {} and first["retrained"] == []
    assert first["unindexed_before"] == {} and set(first["unindexed"].values()) == {0}
    base = index_state(seg)
    _add_videos(uri, "r2", ["v4"])

    second = build()
    cols = set(base)
    assert second["unindexed_before"] == second["delta"] == dict.fromkeys(cols, 1)
    assert second["unindexed"] == dict.fromkeys(cols, 0) and second["built"] == {} and second["retrained"] == []
    delta = index_state(seg)
    assert all(delta[c]["uuids"][0] == base[c]["uuids"][0] and delta[c]["num_indices"] == 2 for c in cols)

    assert build()["delta"] == {}  # nothing new: nothing to add
    _add_videos(uri, "r3", ["v5"])
    third = build("--retrain")
    assert third["unindexed_before"] == dict.fromkeys(cols, 1) and third["delta"] == {}
    assert set(third["retrained"]) == cols and set(third["built"]) == cols
    assert third["unindexed"] == dict.fromkeys(cols, 0) and third["rows"] == 5
    rebuilt = index_state(seg)
    assert all(rebuilt[c]["num_indices"] == 1 and rebuilt[c]["uuids"][0] not in delta[c]["uuids"] for c in cols)
