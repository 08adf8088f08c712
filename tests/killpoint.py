"""Test-only kill points: stop a process at an exact point, the Nth call of a function.

    python -m tests.killpoint lancedb.table:LanceMergeInsertBuilder.execute 2 -- relabel --index OUT ...

runs ``xclip_cli.main([...])`` in this process with ``LanceMergeInsertBuilder.execute`` patched so
that its 2nd call ends the process with ``os._exit(KILLED)`` before doing anything (no cleanup,
no ``finally``, as a SIGKILL would). Several ``TARGET N`` pairs may be given before ``--``.

``barrier(target, n, fn)`` (in-process) calls ``fn()`` just before the Nth call of ``target``
runs, for "another writer commits exactly here" tests.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys

KILLED = 137


def _resolve(target: str):
    module, _, attr = target.partition(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for p in path:
        owner = getattr(owner, p)
    return owner, name


def _wrap(target: str, n: int, action):
    owner, name = _resolve(target)
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            action()
        return original(*args, **kwargs)

    wrapper.calls = calls
    setattr(owner, name, wrapper)
    return owner, name, original, wrapper


def kill_at(target: str, n: int) -> None:
    """Patch ``target`` ("module:Class.method" or "module:function") to end the process at its Nth call."""
    def die():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(KILLED)

    _wrap(target, n, die)


@contextlib.contextmanager
def barrier(target: str, n: int, fn):
    """Within the block, ``fn()`` runs just before the Nth call of ``target``; yields the call counter."""
    owner, name, original, wrapper = _wrap(target, n, fn)
    try:
        yield wrapper.calls
    finally:
        setattr(owner, name, original)


def run_killed(points: list[tuple[str, int]], argv: list[str], *, env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``xclip-index ARGV`` in a child process that dies at the given kill points."""
    cmd = [sys.executable, "-m", "tests.killpoint"]
    for target, n in points:
        cmd += [target, str(n)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([*cmd, "--", *argv], capture_output=True, text=True, timeout=timeout, cwd=root,
                          env={**os.environ, "PYTHONPATH": path, **(env or {})})


def main(argv: list[str]) -> int:
    sep = argv.index("--")
    pairs = argv[:sep]
    for i in range(0, len(pairs), 2):
        kill_at(pairs[i], int(pairs[i + 1]))
    from xclip_cli import main as cli_main

    return cli_main(argv[sep + 1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
