"""Good rows stay visible: a breakdown, a failed reprocess or a full disk never hides an earlier ``ok`` row.

Three paths used to replace a video's ``ok`` row (and delete its segments) before
anything better was committed:

* the writer's ``indexing`` placeholder, committed before a chunk's segments: a
  full disk after it left every reprocessed video ``indexing`` with a null
  embedding. The writer now writes placeholders only for videos that have no
  ``ok`` row (``Writer.keep_visible``); an ``ok`` video's row is replaced only
  by its new final row, after its new segments (a crash in between leaves the
  old ``ok`` row, with segments of the same source: never a segment without
  its videos row, never an ``ok`` video without segments);
* the ``failed`` rows the runner writes for unfinished videos after a pipeline
  breakdown (``VideoAssembler.finish(reason=...)``);
* a ``failed`` row from a reprocess of a source that has not changed (same
  fingerprint as its ``ok`` row): the file decoded before, so the failure says
  more about this run than about the video.

In the last two cases :class:`KeepGood` drops the ``failed`` row before it is
written: the earlier ``ok`` row and its segments stay, the run still counts the
video as failed (manifest, report), and the next run retries it when its
processing identity differs. A failure of a source that changed does replace
its row (the old row describes content that is gone), and so does a ``skipped``
row (a limit the user set).
"""
from __future__ import annotations

import logging

import pyarrow as pa

from jobs.incremental import _same_source
from schemas import STATUS_FAILED, STATUS_OK

log = logging.getLogger(__name__)


_FINGERPRINT = ("source_size", "source_etag", "source_mtime")


class KeepGood:
    """Filters the videos rows of a run so that ``failed`` rows never replace earlier ``ok`` rows
    of an unchanged source (see module doc). ``indexed``: ``Writer.indexed()`` read before the run."""

    def __init__(self, indexed: pa.Table):
        self.ok = {r["video_id"]: r for r in indexed.select(["video_id", "status", *_FINGERPRINT]).to_pylist()
                   if r["status"] == STATUS_OK}
        self.kept = 0

    def ok_ids(self) -> set[str]:
        return set(self.ok)

    def filter(self, videos: pa.Table, *, breakdown: bool = False) -> pa.Table:
        """``videos`` without the ``failed`` rows that must not hide an ``ok`` row; ``breakdown``: rows
        written for videos a broken pipeline left unfinished (kept back whatever their fingerprint)."""
        if not self.ok or not videos.num_rows:
            return videos
        keep = []
        for r in videos.select(["video_id", "status", *_FINGERPRINT]).to_pylist():
            old = self.ok.get(r["video_id"])
            hide = (old is not None and r["status"] == STATUS_FAILED
                    and (breakdown or _same_source(r, old)))
            keep.append(not hide)
        dropped = keep.count(False)
        if dropped:
            self.kept += dropped
            log.warning("%d failed video(s) keep their earlier ok row and segments (unchanged source or a "
                        "pipeline breakdown); the next run retries them", dropped)
            videos = videos.filter(pa.array(keep, pa.bool_()))
        return videos
