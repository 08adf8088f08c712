"""``xclip-index relabel`` (xclip_cli.relabel): a bad label set is exit 2; a disk that fills up is one
line, exit 4, and the index stays readable."""
from __future__ import annotations

import shutil

import pytest

from tests.cli_helpers import cli_with_fault, error_line, limit_file_size
from tests.jobs_helpers import read_lance
from xclip_cli import EXIT_CONFIG, EXIT_OUTPUT, main

pytestmark = pytest.mark.slow  # the session's tiny index is written by `xclip-index run` (Ray)


def test_bad_label_set_is_exit_2(cli_index, tmp_path, capsys):
    assert main(["relabel", "--index", cli_index["out"], "--labels", str(tmp_path / "missing.txt")]) == EXIT_CONFIG
    assert "--labels" in error_line(capsys.readouterr().err)


def test_full_disk_is_one_line_and_the_index_stays_readable(cli_index, tmp_path):
    out = str(tmp_path / "index")
    shutil.copytree(cli_index["out"], out)
    before = sorted(read_lance(out, "videos").column("video_id").to_pylist())
    # no file this process writes may pass 2 KiB (EFBIG, as a full disk's ENOSPC): LanceDB's writes fail
    proc = cli_with_fault(limit_file_size(2048), "relabel", "--index", out, "--labels", "ucf101")
    assert proc.returncode == EXIT_OUTPUT, proc.stderr[-3000:]
    assert "File too large" in error_line(proc.stderr)
    assert sorted(read_lance(out, "videos").column("video_id").to_pylist()) == before
    import xclip_search

    assert len(xclip_search.open_index(out).search("a dog").limit(10).to_list()) == 3
