"""Exact fault points for tests: make the Nth call (and, optionally, every later one) of a function raise.

    calls = fail_at(monkeypatch, Writer, "_upsert", n=2, exc=OSError(28, "No space left on device"))
    ...
    assert calls.count >= 2

The function is wrapped in place (``monkeypatch.setattr``, undone after the test), so the code under test
runs unchanged up to that exact call: no sleeps, no timing.
"""
from __future__ import annotations

import functools


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
