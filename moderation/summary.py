"""What the moderation report and the review queue need, gathered chunk by chunk in bounded memory.

    s = Summary(policy, spill=stage_uri)  # spill=None: the queue's sorted chunks stay in memory
    s.add_run(rows)                       # this run's decision rows (peak-confidence histograms)
    s.add_current(rows)                   # current rows after review (moderation.reviews.with_reviews)
    lines = s.queue_lines()               # the whole review queue, most severe first (JSON lines)

Counts are running counters (per decision, after review, reviewed, flagged per category); the
report's top ``TOP_ITEMS`` queue items and its first ``ERRORS_SHOWN`` errors (by URI) are kept in
bounded lists. The queue is an external sort: each chunk's items are sorted
(``moderation.store.review_queue``) and, with ``spill``, written to ``<spill>/queue/c<k>.jsonl``;
``queue_lines`` merges the chunks lazily (``heapq.merge``), one line per chunk in memory. Only
the per-category histograms, the counters and those bounded lists are held, whatever the number
of videos (``xclip-index moderate`` feeds it one partition at a time: ``moderation.recompute``).
"""
from __future__ import annotations

import collections
import heapq
import io
import json

from moderation.policy import Policy
from moderation.store import queue_key, review_queue

TOP_ITEMS = 20
ERRORS_SHOWN = 1000
BINS = 10


class Summary:
    def __init__(self, policy: Policy, *, spill: str | None = None):
        self.policy, self.spill = policy, spill
        self.videos = self.run_videos = self.errors = self.queued = 0
        self.model: collections.Counter = collections.Counter()       # the model's decisions
        self.effective: collections.Counter = collections.Counter()   # after review
        self.reviewed: collections.Counter = collections.Counter()    # model decision -> reviewed videos
        self.flagged: collections.Counter = collections.Counter()     # category -> videos
        self.histograms = {c.name: [0] * BINS for c in policy.categories}
        self.error_rows: list[tuple] = []   # (uri, video_id, reason): the first ERRORS_SHOWN by URI
        self.top: list[dict] = []           # the first TOP_ITEMS queue items
        self._chunks: list = []             # spill URIs, or (spill=None) lists of lines

    def add_run(self, rows: list[dict]) -> None:
        """This run's rows: their peak confidences (``peaks``, not a column) per category."""
        self.run_videos += len(rows)
        for r in rows:
            peaks = r.get("peaks") or {}
            for name, counts in self.histograms.items():
                if name in peaks:
                    counts[min(int(peaks[name] * BINS), BINS - 1)] += 1

    def add_current(self, rows: list[dict]) -> None:
        """Current rows (each video once over all chunks) with ``effective`` and ``review``."""
        from moderation.reviews import queue_rows

        errors = []
        for r in rows:
            eff = r.get("effective", r["decision"])
            self.videos += 1
            self.model[r["decision"]] += 1
            self.effective[eff] += 1
            self.reviewed[r["decision"]] += bool(r.get("review"))
            self.flagged.update({f["category"] for f in (r["flags"] or [])})
            if eff == "error":
                errors.append((r["uri"], r["video_id"], r.get("error") or "no reason given"))
        self.errors += len(errors)
        self.error_rows = heapq.nsmallest(ERRORS_SHOWN, self.error_rows + errors)
        items = review_queue(queue_rows(rows))
        if not items:
            return
        self.queued += len(items)
        self.top = sorted(self.top + items[:TOP_ITEMS], key=queue_key)[:TOP_ITEMS]
        lines = [json.dumps(queue_key(i)) + "\t" + json.dumps(i, ensure_ascii=False) + "\n" for i in items]
        if self.spill is None:
            self._chunks.append(lines)
            return
        from moderation.store import write_lines
        from xclip_core import storage

        uri = storage.join(self.spill, f"queue/c{len(self._chunks):05d}.jsonl")
        write_lines(uri, lines)
        self._chunks.append(uri)

    def queue_lines(self):
        """The review queue's JSON lines (``moderation.store``), merged from the sorted chunks."""
        def key(line: str) -> list:
            return json.loads(line.split("\t", 1)[0])  # JSON escapes a tab inside a string

        runs = [c if isinstance(c, list) else _read_lines(c) for c in self._chunks]
        for line in heapq.merge(*runs, key=key):
            yield line.split("\t", 1)[1]


def _read_lines(uri: str):
    from xclip_core import storage

    fs, path = storage.pyarrow_filesystem(uri)
    with fs.open_input_stream(path) as f:
        yield from io.TextIOWrapper(f, encoding="utf-8", newline="\n")
