"""Shared pieces of the CLI tests (tests/test_xclip_cli_*.py): the command line as a user runs it,
the one-line error check, a tiny real index, and exact fault points in a CLI subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

CLI = [sys.executable, "-m", "xclip_cli"]  # the `xclip-index` console script runs xclip_cli.cli:entry
ROOT = Path(__file__).resolve().parents[1]


def error_line(err: str) -> str:
    """The one ``xclip-index: error:`` line of ``err`` (and no traceback or native dump)."""
    lines = [ln for ln in err.splitlines() if ln.startswith("xclip-index: error:")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err and ".rs:" not in err and "*** SIG" not in err, err[-3000:]
    return lines[0]


def env() -> dict:
    e = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT))
    e.pop("RAY_ADDRESS", None)
    return e


def cli(*argv: str, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """``xclip-index ARGV`` in a fresh process."""
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout, env=env(), cwd=cwd)


def cli_with_fault(fault: str, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``xclip-index ARGV`` in a fresh process after ``fault`` (Python run first: it patches the
    exact point, e.g. "SIGTERM after the 1st call of jobs.cluster.connect"; see the callers)."""
    code = textwrap.dedent(fault) + "\nimport sys\nfrom xclip_cli.cli import entry\nsys.argv[0] = 'xclip-index'\nentry()\n"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=timeout, env=env())


def after_nth_call(target: str, n: int, action: str) -> str:
    """Fault code: run ``action`` (Python, in the caller's process) right after the ``n``-th call of
    ``target`` ("package.module.function") returns."""
    module, func = target.rsplit(".", 1)
    return f"""
import importlib, os, signal
_m = importlib.import_module({module!r})
_orig, _calls = getattr(_m, {func!r}), [0]
def _wrapped(*a, **k):
    r = _orig(*a, **k)
    _calls[0] += 1
    if _calls[0] == {n}:
        {action}
    return r
setattr(_m, {func!r}, _wrapped)
"""


def limit_file_size(nbytes: int) -> str:
    """Fault code: no file this process writes may grow past ``nbytes`` (RLIMIT_FSIZE: writes
    fail with EFBIG, as on a full disk with ENOSPC; SIGXFSZ ignored so the write returns the error)."""
    return f"""
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({nbytes}, {nbytes}))
"""


def make_index(root: Path) -> dict:
    """A tiny real index (2 videos, a random tiny model, prompt features) written by ``xclip-index run``."""
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    model = str(write_random_checkpoint(root / "model", preset="tiny", num_frames=4))
    for i in range(2):
        write_video(root / "videos" / f"v{i}.mp4", num_frames=30 + 15 * i, width=32, height=32, fps=15)
    out = str(root / "index")
    argv = ("run", "--input", str(root / "videos"), "--output", out, "--model", model, "--run-id", "run-1",
            "--batch-size", "4", "--store-prompt-features")
    proc = cli(*argv)
    if proc.returncode == 1 and "cannot start or reach Ray" in proc.stderr:  # an overloaded machine: once more
        proc = cli(*argv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "model": model, "videos": str(root / "videos")}
