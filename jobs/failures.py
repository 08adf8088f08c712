"""Tell a bug from a breakdown when the Ray pipeline raises.

Per-video handlers turn bad media into rows (``xclip_core.video.errors``);
any other exception raised in a decode or encode task is a bug in us or a
dependency. Ray does not retry application exceptions, so it reaches the
driver as a ``RayTaskError`` (in Ray Data wrapping a ``UserCodeException``),
whose text carries the original traceback. ``bug_reason`` digs the original
``Type: message`` line out of it; it returns None for everything else (a
worker or node that died after Ray's retries, a lost object, a writer error),
which stays a pipeline breakdown.
"""
from __future__ import annotations

import re

_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): ?(.*)$")


def bug_reason(exc: BaseException) -> str | None:
    """``"TypeError: message"`` when ``exc`` is an application error raised in a
    Ray task, else None."""
    import ray.exceptions

    if not isinstance(exc, ray.exceptions.RayTaskError):
        return None
    if isinstance(exc, (ray.exceptions.WorkerCrashedError, ray.exceptions.RayActorError)):
        return None
    for line in str(exc).splitlines():
        m = _EXC_LINE.match(line.strip())
        if m and not m.group(1).startswith("ray."):
            return f"{m.group(1).rsplit('.', 1)[-1]}: {m.group(2)}"[:300]
    cause = getattr(exc, "cause", None)
    return f"{type(cause or exc).__name__}: {str(cause or exc).splitlines()[0] if str(cause or exc) else ''}"[:300]
