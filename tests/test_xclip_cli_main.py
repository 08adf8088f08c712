"""xclip_cli.cli: one module per subcommand; every failure of every subcommand is one line with the
same exit code for the same cause (SIGTERM, argparse and bugs included)."""
from __future__ import annotations

import json
import os
import signal

import pytest

from tests.cli_helpers import after_nth_call, cli, cli_with_fault, error_line
from xclip_cli import EXIT_CONFIG, EXIT_INTERNAL, EXIT_OUTPUT, EXIT_TERMINATED, main
from xclip_cli.cli import COMMANDS, commands, parser


def test_one_module_per_subcommand():
    mods = commands()
    assert len(mods) == len(COMMANDS) and {"run", "search", "relabel", "build-index", "moderate", "restore"} <= set(mods)
    for name, mod in mods.items():
        assert mod.__name__.startswith("xclip_cli.") and callable(mod.main) and callable(mod.add_parser)
        assert isinstance(mod.LOG_LEVEL, int)
    assert parser().parse_args(["restore", "--index", "i", "--run", "r"])._command == "restore"


def test_bad_arguments_are_one_line():
    proc = cli("run", "--output", "o", timeout=120)
    assert proc.returncode == EXIT_CONFIG
    line = error_line(proc.stderr)
    assert proc.stderr.strip() == line and "--input" in line and "--model" in line and "usage:" not in proc.stderr


def test_missing_index_is_the_same_line_and_code_for_every_command(s3_server, tmp_path, capsys):
    for uri in (str(tmp_path / "nothing"), "s3://no-such-bucket-15b/index"):
        for argv in (["search", "--index", uri, "q"], ["relabel", "--index", uri, "--labels", "ucf101"],
                     ["build-index", "--index", uri], ["moderate", "--index", uri, "--policy", "example"]):
            assert main(argv) == EXIT_OUTPUT, argv
            assert f"no runs/*.json under {uri}" in error_line(capsys.readouterr().err), argv


def test_a_bug_is_one_line_exit_5(tmp_path, capsys, monkeypatch):
    import xclip_search.index

    def broken(*a, **k):
        raise TypeError("open_index() got an unexpected keyword argument 'x'")  # as after an API change

    monkeypatch.setattr(xclip_search.index, "open_index", broken)
    monkeypatch.delenv("XCLIP_INDEX_TRACEBACK", raising=False)
    assert main(["search", "--index", str(tmp_path), "q"]) == EXIT_INTERNAL
    line = error_line(capsys.readouterr().err)
    assert "internal error (a bug in xclip-index or a dependency): TypeError: open_index()" in line


@pytest.mark.slow
def test_sigterm_during_a_run_is_one_line(tmp_path):
    """SIGTERM right after Ray started (the 1st call of jobs.cluster.connect returned): one line,
    exit 143, no native stack dump; the run's manifest says failed and the lease is released."""
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    model = str(write_random_checkpoint(tmp_path / "model", preset="tiny", num_frames=4))
    write_video(tmp_path / "in" / "v.mp4", num_frames=30, width=32, height=32, fps=15)
    out = str(tmp_path / "out")
    proc = cli_with_fault(after_nth_call("jobs.cluster.connect", 1, "os.kill(os.getpid(), signal.SIGTERM)"),
                          "run", "--input", str(tmp_path / "in"), "--output", out, "--model", model,
                          "--run-id", "term")
    assert proc.returncode == EXIT_TERMINATED, proc.stderr[-3000:]
    assert "terminated (SIGTERM)" in error_line(proc.stderr)
    with open(os.path.join(out, "runs", "term.json")) as f:
        assert json.load(f)["status"] == "failed"
    from xclip_store.lease import Lease

    with Lease(out, "next"):  # free at once (raises LeaseError if the terminated run still held it)
        pass


def test_sigterm_without_ray_is_one_line(tmp_path):
    proc = cli_with_fault(after_nth_call("xclip_cli.errors.install_sigterm", 1,
                                         "os.kill(os.getpid(), signal.SIGTERM)"),
                          "search", "--index", str(tmp_path), "q", timeout=120)
    assert proc.returncode == EXIT_TERMINATED and "terminated (SIGTERM)" in error_line(proc.stderr)
    assert signal.SIGTERM == 15  # 143 = 128 + 15, the shell's convention
