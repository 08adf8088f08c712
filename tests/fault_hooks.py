"""Test-only barrier points: run an action at the Nth call of a function (no sleeps, no timing).

    with at_call(Writer, "_flush", 2, steal_lease):   # before the 2nd call of Writer._flush
        ...

The action runs in the calling thread, right before (``when="before"``) or right after
(``when="after"``) the Nth real call; it gets the call's arguments. ``hook.calls`` counts the calls.
"""
from __future__ import annotations

import contextlib
import functools


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
