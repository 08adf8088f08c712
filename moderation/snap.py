"""Flag ranges snapped to shot boundaries (policy ``snap_to_shots: true``).

A range ``[start, end]`` becomes ``[start of the shot holding start, end of the shot holding end]``;
ranges of one category that then overlap or touch are merged (peak confidence kept). Shots are
``videos.shots`` (``{start_s, end_s}`` dicts or pairs) of a video indexed with ``--segments shots``;
a video without shots keeps its ranges as they are.
"""
from __future__ import annotations

import bisect
import dataclasses


def _spans(shots) -> list[tuple[float, float]]:
    out = []
    for s in shots:
        a, b = (s["start_s"], s["end_s"]) if isinstance(s, dict) else s
        out.append((float(a), float(b)))
    return sorted(out)


def snap_flags(flags, shots) -> list:
    spans = _spans(shots)
    if not spans:
        return list(flags)
    starts = [a for a, _ in spans]

    def shot_of(t: float) -> tuple[float, float]:
        i = max(0, bisect.bisect_right(starts, t + 1e-9) - 1)
        return spans[i]

    snapped = [dataclasses.replace(f, start_s=shot_of(f.start_s)[0], end_s=max(f.end_s, shot_of(f.end_s - 1e-6)[1]))
               for f in flags]
    merged: list = []
    for f in sorted(snapped, key=lambda f: (f.category, f.start_s)):
        last = merged[-1] if merged else None
        if last is not None and last.category == f.category and f.start_s <= last.end_s + 1e-9:
            merged[-1] = dataclasses.replace(last, end_s=max(last.end_s, f.end_s),
                                             confidence=max(last.confidence, f.confidence))
        else:
            merged.append(f)
    return merged
