"""Per-video decisions from per-clip policy probabilities (pure functions).

Input: the scored clips of one video, ``Clip(start_s, end_s, probs)`` with ``probs`` over the
policy's classes (categories first, then neutral; ``moderation.policy``).

Ranges, per category: clips are taken in time order and a clip *fires* when its probability
for the category is >= the category's ``min_confidence``. Consecutive firing clips form one
range; a gap of at most one clip is bridged: two firing clips separated by exactly one
non-firing clip belong to the same range (two or more non-firing clips in a row end it). A
range spans from the start of its first firing clip to the end of its last; its
``confidence`` is the peak probability over its firing clips. A range shorter than the
category's ``min_duration_s`` is dropped (so one flickering clip does not flag a video).

Decision: the strictest action among the categories with a range left (``block`` >
``review``), else ``allow``; ``error`` when the video could not be scored (failed to decode,
skipped, no clips): a broken upload is never silently allowed. ``coverage`` is the fraction
of the video's duration covered by scored clips (union of their windows).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from moderation.policy import Policy

ALLOW, REVIEW, BLOCK, ERROR = "allow", "review", "block", "error"
DECISIONS = (ALLOW, REVIEW, BLOCK, ERROR)
_SEVERITY = {ALLOW: 0, REVIEW: 1, BLOCK: 2}


@dataclasses.dataclass(frozen=True)
class Clip:
    start_s: float
    end_s: float
    probs: Sequence[float]  # over the policy's classes (categories first)


@dataclasses.dataclass(frozen=True)
class Flag:
    category: str
    confidence: float  # peak probability in the range
    start_s: float
    end_s: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Decision:
    decision: str              # allow | review | block | error
    action: str | None         # strictest action that fired (None: none fired)
    flags: tuple[Flag, ...]
    coverage: float
    error: str | None = None
    peaks: dict = dataclasses.field(default_factory=dict)  # category -> max clip probability
    evidence: tuple = ()       # per blocklist match: schemas.moderation.EVIDENCE_TYPE dicts


def ranges(clips: Sequence[Clip], index: int, threshold: float) -> list[Flag]:
    """Firing ranges of class ``index`` with their peak confidence (see module doc);
    ``category`` is left empty for the caller."""
    order = sorted(clips, key=lambda c: (c.start_s, c.end_s))
    out: list[Flag] = []
    cur: list[Clip] = []  # firing clips of the open range
    misses = 0
    for c in order:
        if float(c.probs[index]) >= threshold:
            cur.append(c)
            misses = 0
        elif cur:
            misses += 1
            if misses > 1:
                out.append(_flag(cur, index))
                cur, misses = [], 0
    if cur:
        out.append(_flag(cur, index))
    return out


def _flag(firing: list[Clip], index: int) -> Flag:
    return Flag(category="", confidence=max(float(c.probs[index]) for c in firing),
                start_s=float(firing[0].start_s), end_s=float(max(c.end_s for c in firing)))


def coverage(clips: Sequence[Clip], duration_s: float | None) -> float:
    """Fraction of ``[0, duration_s]`` covered by the union of the clip windows."""
    spans = sorted((float(c.start_s), float(c.end_s)) for c in clips)
    covered, end = 0.0, float("-inf")
    for s, e in spans:
        s = max(s, end)
        if e > s:
            covered += e - s
            end = e
    if not duration_s or duration_s <= 0:
        return 1.0 if covered > 0 else 0.0
    return min(1.0, covered / float(duration_s))


def with_matches(d: Decision, matches) -> Decision:
    """Add known-bad matches (``moderation.blocklist.Match``) to a decision: each is a flag
    ``blocklist:<item id>`` (confidence = 1 - median distance / 256) with its evidence, and makes
    the decision ``block``."""
    if not matches or d.decision == ERROR:
        return d
    extra = [Flag(f"blocklist:{m.item_id}", 1.0 - m.median_distance / 256, m.start_s, m.end_s) for m in matches]
    evidence = tuple(dict(m.evidence(), category=f"blocklist:{m.item_id}") for m in matches)
    flags = tuple(sorted((*d.flags, *extra), key=lambda f: (f.start_s, f.category)))
    return dataclasses.replace(d, decision=BLOCK, action=BLOCK, flags=flags, evidence=d.evidence + evidence)


def decide(policy: Policy, clips: Sequence[Clip], *, duration_s: float | None,
           error: str | None = None, shots=None) -> Decision:
    """The decision for one video (see module doc). ``shots``: the video's shots (``videos.shots``);
    with ``policy.snap_to_shots`` each range is widened to whole shots (``moderation.snap``)."""
    if error is not None or not clips:
        return Decision(ERROR, None, (), coverage(clips, duration_s), error or "no clips were scored")
    flags: list[Flag] = []
    action = ALLOW
    for j, cat in enumerate(policy.categories):
        for r in ranges(clips, j, cat.min_confidence):
            if r.end_s - r.start_s + 1e-9 < cat.min_duration_s:
                continue
            flags.append(dataclasses.replace(r, category=cat.name))
            if _SEVERITY[cat.action] > _SEVERITY[action]:
                action = cat.action
    if policy.snap_to_shots and shots:
        from moderation.snap import snap_flags

        flags = snap_flags(flags, shots)
    flags.sort(key=lambda f: (f.start_s, f.category))
    peaks = {cat.name: max(float(c.probs[j]) for c in clips) for j, cat in enumerate(policy.categories)}
    return Decision(action, None if action == ALLOW else action, tuple(flags), coverage(clips, duration_s),
                    peaks=peaks)
