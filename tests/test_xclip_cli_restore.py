"""``xclip-index restore`` (xclip_cli.restore) over ``xclip_store.restore(uri, run_id)``.

xclip_store is written on another branch (issue 15a) at the same time as this CLI: these tests skip
until it is merged, then run end to end."""
from __future__ import annotations

import shutil

import pytest

from tests.cli_helpers import error_line
from tests.jobs_helpers import read_lance
from xclip_cli import EXIT_LOCKED, EXIT_OUTPUT, main

store = pytest.importorskip("xclip_store")
if not hasattr(store, "restore"):
    pytest.skip("xclip_store.restore is not merged yet", allow_module_level=True)

pytestmark = pytest.mark.slow  # the session's tiny index is written by `xclip-index run` (Ray)


def _labels(out: str) -> dict:
    return {v["video_id"]: v["labels"] for v in read_lance(out, "videos").to_pylist()}


def test_restore_brings_every_table_back_to_a_run(cli_index, tmp_path, capsys):
    out = str(tmp_path / "index")
    shutil.copytree(cli_index["out"], out)
    before = _labels(out)
    assert main(["relabel", "--index", out, "--labels", "ucf101"]) == 0
    assert _labels(out) != before
    capsys.readouterr()
    assert main(["restore", "--index", out, "--run", "run-1"]) == 0
    assert "run-1" in capsys.readouterr().out
    assert _labels(out) == before


def test_restore_errors_are_one_line(cli_index, tmp_path, capsys):
    out = str(tmp_path / "index")
    shutil.copytree(cli_index["out"], out)
    assert main(["restore", "--index", out, "--run", "no-such-run"]) == EXIT_OUTPUT
    assert "no-such-run" in error_line(capsys.readouterr().err)
    with store.Lease(out, "other-run"):
        assert main(["restore", "--index", out, "--run", "run-1"]) == EXIT_LOCKED
    assert "other-run" in error_line(capsys.readouterr().err)
