"""Which exceptions mean "this input is bad" (a row with a reason) and which mean
"we or a dependency are broken" (the run fails).

``MEDIA_ERRORS`` is the one tuple every per-video handler catches: FFmpeg/PyAV
errors, ``OSError`` (missing file, permissions, timeouts, S3 errors that s3fs
maps), our own ``VideoError``, and botocore's client errors (raised after its
retries). Anything else (``TypeError``, ``AttributeError``, ``NameError``,
``KeyError``, ...) is a bug in us or in a dependency's API: it propagates and
fails the run instead of being recorded as a bad video.

``decord_errors()`` is for decord calls only (decord raises ``RuntimeError``
subclasses for bad media); never use it around our own code.
"""
from __future__ import annotations

import av.error


class VideoError(Exception):
    """A video cannot be used; ``status`` is "failed" or "skipped"."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def _botocore_errors() -> tuple[type[BaseException], ...]:
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # local files only: botocore is not needed
        return ()
    return (ClientError, BotoCoreError)


MEDIA_ERRORS: tuple[type[BaseException], ...] = (
    (av.error.FFmpegError, OSError, VideoError) + _botocore_errors())


def decord_errors() -> tuple[type[BaseException], ...]:
    """What decord raises for bad media (import decord first)."""
    try:
        from decord._ffi.base import DECORDError
    except ImportError:
        return (RuntimeError,)
    return (DECORDError, RuntimeError)


def short(e: BaseException) -> str:
    """``"TypeName: first line of the message"`` (at most 300 characters)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}"[:300]


class Stopped(Exception):
    """A consumer stopped a decode early (``ClipStream.close``); not a media error."""
