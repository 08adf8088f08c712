"""Flag ranges snapped to shot boundaries (moderation/snap.py, policy ``snap_to_shots``)."""
from __future__ import annotations

import pytest

from moderation.decide import Clip, decide
from moderation.policy import PolicyError, parse_policy
from moderation.snap import snap_flags

DOC = {"categories": [{"name": "weapons", "prompts": ["a gun"], "min_confidence": 0.5, "action": "review"}],
       "neutral": ["people talking"]}
SHOTS = [{"start_s": 0.0, "end_s": 3.0}, {"start_s": 3.0, "end_s": 4.2}, {"start_s": 4.2, "end_s": 9.0}]


def _clips(spans_probs):
    return [Clip(a, b, [p, 1 - p]) for (a, b), p in spans_probs]


def test_ranges_widen_to_the_shots_they_touch_and_merge():
    policy = parse_policy({**DOC, "snap_to_shots": True})
    # windows inside shots (as --segments shots lays them): (0-2, 1-3) | (3-4.2) | (4.2-6.2, 6.2-8.2, 7-9)
    clips = _clips([((0, 2), 0.1), ((1, 3), 0.9), ((3, 4.2), 0.1), ((4.2, 6.2), 0.1), ((6.2, 8.2), 0.8),
                    ((7, 9), 0.1)])
    snapped = decide(policy, clips, duration_s=9.0, shots=SHOTS)
    plain = decide(parse_policy(DOC), clips, duration_s=9.0, shots=SHOTS)
    assert [(f.start_s, f.end_s) for f in plain.flags] == [(1, 3), (6.2, 8.2)]
    assert [(f.start_s, f.end_s) for f in snapped.flags] == [(0.0, 3.0), (4.2, 9.0)]
    assert [f.confidence for f in snapped.flags] == pytest.approx([0.9, 0.8])
    # a video without shots (fixed segments) keeps its ranges
    assert decide(policy, clips, duration_s=9.0, shots=None).flags == plain.flags


def test_snapped_ranges_of_one_category_merge_when_they_meet():
    from moderation.decide import Flag

    flags = [Flag("w", 0.6, 0.5, 1.0), Flag("w", 0.9, 3.5, 4.0), Flag("x", 0.7, 3.2, 3.4)]
    got = snap_flags(flags, [(0.0, 3.0), (3.0, 4.2), (4.2, 9.0)])
    # shots 0 and 1 touch: one range, the peak kept; another category stays apart
    assert [(f.category, f.start_s, f.end_s, f.confidence) for f in got] == [
        ("w", 0.0, 4.2, 0.9), ("x", 3.0, 4.2, 0.7)]
    got = snap_flags([Flag("w", 0.6, 0.5, 1.0), Flag("w", 0.9, 5.0, 6.0)], [(0.0, 3.0), (3.0, 4.2), (4.2, 9.0)])
    assert [(f.start_s, f.end_s) for f in got] == [(0.0, 3.0), (4.2, 9.0)]  # a shot between: two ranges
    got = snap_flags([Flag("w", 0.6, 0.5, 3.5), Flag("w", 0.9, 3.6, 5.0)], [(0.0, 3.0), (3.0, 4.2), (4.2, 9.0)])
    assert [(f.start_s, f.end_s, f.confidence) for f in got] == [(0.0, 9.0, 0.9)]


def test_policy_option_is_validated_and_off_keeps_the_hash():
    base = parse_policy(DOC)
    assert base.snap_to_shots is False
    assert parse_policy({**DOC, "snap_to_shots": False}).policy_hash == base.policy_hash
    assert parse_policy({**DOC, "snap_to_shots": True}).policy_hash != base.policy_hash
    with pytest.raises(PolicyError, match="snap_to_shots: must be true or false"):
        parse_policy({**DOC, "snap_to_shots": "yes"})
