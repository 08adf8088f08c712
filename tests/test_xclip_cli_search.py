"""``xclip-index search`` (xclip_cli.search): bad options and paths end in one line, never a traceback."""
from __future__ import annotations

import json

import pytest

from tests.cli_helpers import cli, cli_with_fault, error_line, limit_file_size
from xclip_cli import EXIT_CONFIG, EXIT_OUTPUT, main

pytestmark = pytest.mark.slow  # the session's tiny index is written by `xclip-index run` (Ray)

Q = "a dog jumping into a lake"


def test_html_to_a_bad_path_is_one_line(cli_index, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    for bad in (tmp_path / "no-such-folder" / "page.html", tmp_path / "a-file" / "page.html", tmp_path):
        assert main(["search", "--index", cli_index["out"], Q, "--html", str(bad)]) == EXIT_CONFIG
        assert "--html" in error_line(capsys.readouterr().err)
    assert main(["search", "--index", cli_index["out"], Q, "--html", str(tmp_path / "page.html")]) == 0
    assert (tmp_path / "page.html").read_text().startswith("<!")


def test_html_write_failing_midway_is_one_line(cli_index, tmp_path):
    """The page cannot be written in full (EFBIG past 1 KiB, as a full disk gives ENOSPC): exit 4."""
    page = tmp_path / "page.html"
    proc = cli_with_fault(limit_file_size(1024), "search", "--index", cli_index["out"], Q, "--html", str(page))
    assert proc.returncode == EXIT_OUTPUT, proc.stderr[-2000:]
    line = error_line(proc.stderr)
    assert f"--html {page}: cannot write it" in line and "File too large" in line


def test_limit_out_of_range_is_one_line(cli_index):
    proc = cli("search", "--index", cli_index["out"], Q, "--limit", "4294967296")
    assert proc.returncode == EXIT_CONFIG and "--limit: expected 1 to 1000000" in error_line(proc.stderr)
    import xclip_search

    q = xclip_search.open_index(cli_index["out"]).search(Q)
    with pytest.raises(ValueError, match="limit: expected an int from 1 to"):
        q.limit(2**32)


def test_where_cannot_drop_the_label_filter(cli_index, capsys):
    import xclip_search

    idx = xclip_search.open_index(cli_index["out"])
    assert idx.search(Q).where("start_s >= 0").labels_any(["no such label"]).limit(100).to_list() == []
    for escape in ("1=1) OR (1=1", "1=1 OR 1=1) OR (1=1", "start_s >= 0 --"):
        with pytest.raises(ValueError, match="where: "):
            idx.search(Q).where(escape).labels_any(["no such label"]).limit(100).to_list()
        assert main(["search", "--index", cli_index["out"], Q, "--where", escape, "--label", "x", "--json"]) \
            == EXIT_CONFIG
        out, err = capsys.readouterr()
        assert out == "" and "where: " in error_line(err)
    # parentheses and quotes inside a literal are the caller's text
    hits = idx.search(Q).where("uri NOT LIKE '%) OR (1=1%' AND (start_s >= 0)").limit(100).to_list()
    assert len(hits) == 3
    assert main(["search", "--index", cli_index["out"], Q, "--where", "(start_s >= 0)", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
