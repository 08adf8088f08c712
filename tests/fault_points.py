"""Test-only fault points: act at an exact point, the Nth call of a function (no sleeps, no timing).

    with at_call(Writer, "_flush", 2, steal_lease):     # an action right before the 2nd call
    calls = fail_at(monkeypatch, Writer, "_replace", n=2, exc=OSError(28, "No space left on device"))
    with barrier("lancedb.table:LanceMergeInsertBuilder.execute", 1, fn) as calls:   # by dotted name
    proc = run_killed([("lance.dataset:LanceDataset.commit", 10)], ["run", ...])  # the writer's 10th Lance commit

``run_killed`` runs ``xclip-index ARGV`` in a child process (``python -m tests.fault_points
TARGET N ... -- ARGV``) whose Nth call of each target ends it with ``os._exit(KILLED)`` before doing
anything: no cleanup, no ``finally``, as a SIGKILL would.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import os
import subprocess
import sys

KILLED = 137


class _Hook:
    def __init__(self):
        self.calls = 0
        self.fired = False


@contextlib.contextmanager
def at_call(owner, name: str, n: int, action, *, when: str = "before"):
    """Patch ``owner.name`` (a class or module attribute) for the ``with`` block (see module doc)."""
    assert when in ("before", "after") and n >= 1
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    func = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original
    hook = _Hook()

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        hook.calls += 1
        fire = hook.calls == n
        if fire and when == "before":
            hook.fired = True
            action(*args, **kwargs)
        result = func(*args, **kwargs)
        if fire and when == "after":
            hook.fired = True
            action(*args, **kwargs)
        return result

    setattr(owner, name, wrapper)
    try:
        yield hook
    finally:
        setattr(owner, name, original)


class Calls:
    def __init__(self):
        self.count = 0
        self.raised = 0


def fail_at(monkeypatch, owner, name: str, *, n: int, exc: BaseException, sticky: bool = True,
            when=None) -> Calls:
    """From the ``n``-th call of ``owner.name`` on (only that call when ``sticky`` is false), raise ``exc``.
    ``when(*args, **kwargs)``: count only the calls it is true for (e.g. one table's commits)."""
    real = getattr(owner, name)
    calls = Calls()

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        if when is not None and not when(*args, **kwargs):
            return real(*args, **kwargs)
        calls.count += 1
        if calls.count == n or (sticky and calls.count > n):
            calls.raised += 1
            raise exc
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


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
    cmd = [sys.executable, "-m", "tests.fault_points"]
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
