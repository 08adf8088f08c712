"""Test hook: make ``av.open`` behave like PyAV 19's in this process.

PyAV 19 removed ``metadata_errors``, ``metadata_encoding`` and ``stream_options``
from ``av.open``; passing one is a ``TypeError`` (the break reported in issue 7).
``install()`` wraps ``av.open`` so the installed PyAV 18 rejects them the same
way. It is a Ray ``worker_process_setup_hook`` in tests/test_jobs_breaker.py,
so every Ray worker decodes under the strict signature.

Also, opening a path whose file name contains ``INJECT_BUG`` raises a
``TypeError`` whatever the keywords: an injected programming error in the
decode path, to check that a bug fails the run instead of becoming rows.
"""
from __future__ import annotations

import os

REMOVED_IN_PYAV19 = ("metadata_errors", "metadata_encoding", "stream_options")
INJECT_BUG = "inject-bug"


def install() -> None:
    import av

    if getattr(av.open, "_pyav19_strict", False):
        return
    real_open = av.open

    def open_like_pyav19(file, *args, **kwargs):
        bad = sorted(set(kwargs) & set(REMOVED_IN_PYAV19))
        if bad:
            raise TypeError(f"open() got an unexpected keyword argument '{bad[0]}'")
        if isinstance(file, (str, os.PathLike)) and INJECT_BUG in os.path.basename(str(file)):
            raise TypeError("open() got an unexpected keyword argument 'injected_by_test'")
        return real_open(file, *args, **kwargs)

    open_like_pyav19._pyav19_strict = True
    av.open = open_like_pyav19
