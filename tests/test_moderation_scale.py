"""``xclip-index moderate`` as a streaming job (issue 16): its peak memory (the whole process tree of
``python -m xclip_cli moderate``) does not grow with the number of videos. The driver holds one
partition's decision rows at a time; the report comes from running counts and the review queue from
sorted per-partition chunks merged at the end (``moderation.summary``). Tables are grown with
Lance's fragment API (bench/relabel_scale.py), one segment per video, so per-video state dominates."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.search_helpers import relabel_bench

pytestmark = pytest.mark.slow

DIM = 32  # the tiny preset's projection dim
# every video is flagged (min_confidence 0): each is a review-queue item, the most per-video state
POLICY = {"version": 1, "neutral": ["people talking", "a landscape"], "categories": [
    {"name": "weapons", "prompts": ["a person holding a gun"], "min_confidence": 0.3, "action": "block"},
    {"name": "everything", "prompts": ["a video"], "min_confidence": 0.0, "action": "review"}]}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from xclip_core.checkpoint import write_random_checkpoint

    return str(write_random_checkpoint(tmp_path_factory.mktemp("m") / "tiny", preset="tiny", num_frames=4))


def test_moderate_peak_memory_does_not_grow_with_the_videos(model, tmp_path):
    """20,000 and 80,000 videos of one segment each (1 and 4 partitions of about 20,000 videos; under
    100,000 segments, so both run in one process without Ray), every one in the review queue: the tree's
    peak RSS stays under 1.25 GiB and the 4x larger index peaks within 1.25x of the smaller one. The
    driver before (commit 8a6e941: one decision row per video, then the whole moderation table read for
    the report and queue) measured 862 vs 1,173 MiB here (1.36x) and fails; this one 848 vs 890 MiB (1.05x)."""
    bench = relabel_bench()
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    peaks = {}
    for n in (20_000, 80_000):
        uri = bench.build_index(tmp_path / f"idx-{n}", n, model=model, dim=DIM, per_video=1)
        review = tmp_path / f"review-{n}.jsonl"
        r = bench.run_measured(["moderate", "--index", uri, "--policy", str(policy), "--review-out", str(review)],
                               timeout=600)
        assert r["rc"] == 0, r["stderr"][-2000:]
        assert f": {n} videos (" in r["stdout"] and f"review queue: {n} items" in r["stdout"], r["stdout"]
        with open(review) as f:
            first = json.loads(f.readline())
            assert first["decision"] == "block" and sum(1 for _ in f) == n - 1
        peaks[n] = r["peak_rss_bytes"]
    print({n: round(p / 2**20) for n, p in peaks.items()}, "MiB")
    assert peaks[80_000] < 1.25 * 2**30, peaks
    assert peaks[80_000] / peaks[20_000] < 1.25, peaks
