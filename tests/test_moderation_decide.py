"""moderation.decide: range merging, min duration, decisions, coverage; and decisions from
constructed features scored by the real ClipScorer (thresholds exercised meaningfully)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from moderation.decide import Clip, coverage, decide, ranges
from moderation.policy import parse_policy

POLICY = parse_policy({
    "categories": [
        {"name": "weapons", "prompts": ["a person holding a gun"], "min_confidence": 0.6, "action": "block"},
        {"name": "violence", "prompts": ["people fighting"], "min_confidence": 0.5, "min_duration_s": 4.0,
         "action": "review"},
    ],
    "neutral": ["people talking", "a landscape"],
})


def clips(scores, window=2.0, other=0.0):
    """One 2 s clip per score; class 0 gets the score, class 1 ``other``."""
    return [Clip(i * window, (i + 1) * window, [s, other, 0.0, 0.0]) for i, s in enumerate(scores)]


def spans(flags):
    return [(f.start_s, f.end_s, round(f.confidence, 3)) for f in flags]


def test_adjacent_clips_merge_with_peak_confidence():
    assert spans(ranges(clips([0.1, 0.7, 0.9, 0.65, 0.1]), 0, 0.6)) == [(2.0, 8.0, 0.9)]


def test_gap_of_one_clip_is_bridged_two_are_not():
    assert spans(ranges(clips([0.7, 0.1, 0.8]), 0, 0.6)) == [(0.0, 6.0, 0.8)]
    assert spans(ranges(clips([0.7, 0.1, 0.1, 0.8]), 0, 0.6)) == [(0.0, 2.0, 0.7), (6.0, 8.0, 0.8)]
    # a trailing miss does not extend the range
    assert spans(ranges(clips([0.1, 0.7, 0.1]), 0, 0.6)) == [(2.0, 4.0, 0.7)]


def test_single_clip_and_threshold_is_inclusive():
    assert spans(ranges(clips([0.1, 0.6, 0.1, 0.1]), 0, 0.6)) == [(2.0, 4.0, 0.6)]
    assert ranges(clips([0.59, 0.1]), 0, 0.6) == []


def test_order_of_input_clips_does_not_matter():
    cs = clips([0.7, 0.1, 0.8, 0.1, 0.1, 0.9])
    rng = np.random.default_rng(0)
    shuffled = [cs[i] for i in rng.permutation(len(cs))]
    assert spans(ranges(shuffled, 0, 0.6)) == spans(ranges(cs, 0, 0.6)) == [(0.0, 6.0, 0.8), (10.0, 12.0, 0.9)]


def test_min_duration_drops_short_ranges():
    # violence (class 1) needs 4 s: a single 2 s clip is dropped, two clips (4 s) are kept
    d = decide(POLICY, clips([0, 0, 0, 0], other=0.0)[:1] + [Clip(2, 4, [0, 0.9, 0, 0])], duration_s=4.0)
    assert d.decision == "allow" and d.flags == () and d.action is None
    d = decide(POLICY, [Clip(0, 2, [0, 0.9, 0, 0]), Clip(2, 4, [0, 0.8, 0, 0]), Clip(4, 6, [0, 0, 0, 0])],
               duration_s=6.0)
    assert d.decision == "review" and spans(d.flags) == [(0.0, 4.0, 0.9)] and d.flags[0].category == "violence"


def test_several_categories_strictest_wins_and_flags_in_time_order():
    cs = [Clip(0, 2, [0.0, 0.9, 0, 0]), Clip(2, 4, [0.0, 0.9, 0, 0]), Clip(4, 6, [0.0, 0.1, 0, 0]),
          Clip(6, 8, [0.8, 0.0, 0, 0]), Clip(8, 10, [0.0, 0.0, 0, 0])]
    d = decide(POLICY, cs, duration_s=10.0)
    assert d.decision == "block" and d.action == "block"
    assert [(f.category, f.start_s, f.end_s) for f in d.flags] == [("violence", 0.0, 4.0), ("weapons", 6.0, 8.0)]
    assert d.coverage == pytest.approx(1.0)


def test_error_and_no_clips_are_never_allowed():
    d = decide(POLICY, [], duration_s=None, error="decode failed: invalid data")
    assert d.decision == "error" and d.error == "decode failed: invalid data" and d.coverage == 0.0
    d = decide(POLICY, [], duration_s=3.0)
    assert d.decision == "error" and "no clips" in d.error


def test_coverage_is_union_of_windows():
    assert coverage([Clip(0, 2, []), Clip(1, 3, []), Clip(6, 8, [])], 10.0) == pytest.approx(0.5)
    assert coverage([Clip(0, 2, [])], None) == 1.0 and coverage([], 5.0) == 0.0


def test_decisions_from_constructed_features_with_neutral_prompts():
    """Text features are orthonormal directions; a clip's embedding is a mix of them, scored by
    the real ClipScorer (approximate mode: logit_scale * cosine, softmax over category+neutral)."""
    from xclip_core.scoring import ClipScorer

    class Scale(torch.nn.Module):  # ClipScorer's approximate mode needs only logit_scale
        def __init__(self):
            super().__init__()
            self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(100.0)))

    k, dim = POLICY.num_classes, 16
    text = torch.eye(dim)[:k]  # class c -> direction e_c
    scorer = ClipScorer(Scale(), text)

    def emb(weights):  # weights over the classes
        return torch.tensor(np.asarray(weights, np.float32) @ text.numpy())

    # clips 0-1: mostly "weapons"; 2: neutral; 3: borderline weapons (below 0.6); 4-6 violence 6 s
    embs = torch.stack([emb([1, 0, 0.1, 0]), emb([1, 0, 0, 0.1]), emb([0, 0, 1, 0]), emb([0.5, 0, 0.5, 0]),
                        emb([0, 1, 0, 0]), emb([0, 1, 0.05, 0]), emb([0, 1, 0, 0]), emb([0, 0, 0, 1])])
    with torch.no_grad():
        probs = scorer.probs(embs).numpy()
    assert probs[3, 0] < 0.6  # a 50/50 mix with a neutral class is below the weapons threshold
    cs = [Clip(2.0 * i, 2.0 * (i + 1), probs[i]) for i in range(len(embs))]
    d = decide(POLICY, cs, duration_s=16.0)
    assert d.decision == "block"
    assert [(f.category, f.start_s, f.end_s) for f in d.flags] == [("weapons", 0.0, 4.0), ("violence", 8.0, 14.0)]
    assert all(f.confidence > 0.9 for f in d.flags)
    # the neutral clips alone: nothing fires, although a softmax over the 2 categories alone would
    neutral = [Clip(2.0 * i, 2.0 * (i + 1), probs[i]) for i in (2, 7)]
    assert decide(POLICY, neutral, duration_s=4.0).decision == "allow"
    two_class = torch.softmax(torch.tensor(probs[[2, 7]][:, :2]).log(), -1)
    assert (two_class.max(-1).values >= 0.5).all()
