"""The breaker: stop a run whose failures all look alike.

One corrupt file is a row; every file failing the same way is a broken
environment or dependency (a decoder missing from the FFmpeg build, an S3
policy that denies every GET, a library API that changed). The driver feeds
the breaker every ``videos`` row as it is finalised; it trips when

* the first ``first_n`` finished videos ALL failed with the same normalised
  reason, or
* once at least ``first_n`` videos are done, more than ``max_share`` of them
  failed with the same normalised reason.

A normalised reason is the reason with paths, URIs, quoted names and numbers
replaced by placeholders, so "cannot open container: InvalidDataError: [Errno
1094995529] Invalid data found when processing input: '/data/a.mp4'" is the
same reason for every file. Skipped videos (over a configured limit) count as
done, not as failures. ``first_n = 0`` turns the breaker off.

    breaker = Breaker(first_n=20, max_share=0.5)
    breaker.observe(videos_table)   # raises BreakerTripped
"""
from __future__ import annotations

import collections
import re

import pyarrow as pa

from schemas import STATUS_FAILED

_PATTERNS = [
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<name>"),
    (re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", re.I), "<uri>"),
    (re.compile(r"(?<![\w.])(?:/[^\s:;,'\"]+)+"), "<path>"),
    (re.compile(r"0x[0-9a-f]+", re.I), "<n>"),
    (re.compile(r"[-+]?\d+(?:\.\d+)?"), "<n>"),
]


def normalise(reason: str | None) -> str:
    """The reason with URIs, paths, quoted names and numbers stripped."""
    text = str(reason or "").strip()
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return re.sub(r"\s+", " ", text)


class BreakerTripped(RuntimeError):
    """Too many videos failed the same way: the run stops (see module doc)."""


class Breaker:
    def __init__(self, *, first_n: int, max_share: float):
        if first_n < 0:
            raise ValueError(f"first_n: must be >= 0, got {first_n}")
        if not 0 < max_share <= 1:
            raise ValueError(f"max_share: must be in (0, 1], got {max_share}")
        self.first_n, self.max_share = int(first_n), float(max_share)
        self.done = 0
        self.failed = collections.Counter()           # normalised reason -> count
        self.example: dict[str, str] = {}             # normalised reason -> one raw reason
        self._first: list[str | None] = []            # normalised reason (None: not failed), first N

    def observe(self, videos: pa.Table) -> None:
        """Count the finalised ``videos`` rows; raise ``BreakerTripped`` when it trips."""
        if not self.first_n:
            return
        for status, error in zip(videos.column("status").to_pylist(), videos.column("error").to_pylist()):
            self.done += 1
            key = normalise(error) if status == STATUS_FAILED else None
            if key is not None:
                self.failed[key] += 1
                self.example.setdefault(key, str(error))
            if len(self._first) < self.first_n:
                self._first.append(key)
        self.check()

    def check(self) -> None:
        if not self.first_n or self.done < self.first_n or not self.failed:
            return
        key, count = self.failed.most_common(1)[0]
        first_same = len(self._first) == self.first_n and len(set(self._first)) == 1 and self._first[0]
        if first_same:
            why = f"the first {self.first_n} finished videos all failed with the same reason"
        elif count > self.max_share * self.done:
            why = (f"{count} of {self.done} finished videos ({count / self.done:.0%}, over the "
                   f"breaker_max_share {self.max_share:g}) failed with the same reason")
        else:
            return
        raise BreakerTripped(
            f"breaker tripped: {why}: {self.example[key]!r}. That many alike failures point to the "
            f"environment or a dependency (codec, credentials, library version), not to the videos; "
            f"fix it and rerun (videos not finished yet were left unwritten; tune or turn off with "
            f"decoder.breaker_first_n / decoder.breaker_max_share)")
