"""``xclip-index moderate`` (xclip_cli.moderate): a bad --review-out is refused before any work (exit 2,
one line); a full disk is one line, exit 4."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.cli_helpers import cli_with_fault, error_line, limit_file_size
from xclip_cli import EXIT_CONFIG, EXIT_OUTPUT, main

pytestmark = pytest.mark.slow  # the session's tiny index is written by `xclip-index run` (Ray)


def test_bad_review_out_is_refused_before_any_work(cli_index, tmp_path, capsys):
    out = str(tmp_path / "index")
    shutil.copytree(cli_index["out"], out)
    (tmp_path / "a-file").write_text("x")
    for bad in (tmp_path / "a-file" / "review.jsonl", tmp_path):
        assert main(["moderate", "--index", out, "--policy", "example", "--review-out", str(bad)]) == EXIT_CONFIG
        assert "--review-out" in error_line(capsys.readouterr().err)
    assert not os.path.exists(os.path.join(out, "lancedb", "moderation.lance"))  # nothing was written
    review = tmp_path / "new" / "folder" / "review.jsonl"  # missing folders are made, as before
    assert main(["moderate", "--index", out, "--policy", "example", "--review-out", str(review)]) == 0
    assert review.exists()


def test_full_disk_is_one_line(cli_index, tmp_path):
    out = str(tmp_path / "index")
    shutil.copytree(cli_index["out"], out)
    proc = cli_with_fault(limit_file_size(2048), "moderate", "--index", out, "--policy", "example")
    assert proc.returncode == EXIT_OUTPUT, proc.stderr[-3000:]
    assert "File too large" in error_line(proc.stderr)
