"""The writer's commit plan: the consistency order of its flat commits, and the hot path (issue 16).

Consistency order (a LanceDB reader never sees a segment without its videos row, nor a video
without segments it had before). A segments chunk is committed in three steps: (1) placeholder
videos rows ``status = 'indexing'`` (not for ``keep_visible``), (2) the segments replace the
videos' earlier segments in one transaction, (3) later, the final videos rows replace the
placeholders. A crash between (1) and (3) leaves ``indexing`` rows: readers filter on ``status =
'ok'``, the next run reindexes them. Segments come after their videos row and go before it, so a
video without a videos row has no segments. Side tables (``side_tables``) are committed like
segments, before the videos rows; those the run does not write lose the rows of every video the
run rewrites. A videos chunk comes after ``before_videos_commit``; the segments and side rows of
its videos no longer ``ok`` go after it.

Hot path. Every step is ONE Lance transaction (``flat_commit.commit_replace``) deleting the rows of
the chunk's videos and adding the staged files. Finding those rows used to be an index lookup that
also scanned every fragment the run had appended (one small unindexed fragment per chunk and
table), twice per segments chunk on ``videos``: the committer's cost per chunk grew over a run
(bench/RESULTS.md, "The writer's hot path"). Now the writer keeps, per table, a
``flat_commit.RunRows``: the fragments its own commits added and the videos in each (no lookup for
them), and, once ``Writer.indexed()`` has read the videos rows at the start of the run, the videos
that may have rows elsewhere (the same set for ``videos`` and ``segments``: a video without a
videos row has no segments). A video new to the output costs no lookup at all; a video the output
had is looked up once per table and chunk, only in the fragments the run did not write (the index,
plus the delta the run started with). Side tables get no such set (a crash can leave side rows of a
video without a videos row): their lookups skip only the run's own fragments. Everything else that
changes a table's rows (``tbl.update`` in ``delete_videos(mark=True)`` / ``repair_duplicates``, a
commit that raised) adds its videos to the set; a compaction of the run's fragments forgets it all.

The plan is a mixin of ``xclip_store.writer.Writer`` (its ``out``, ``run_id``, ``schemas``,
``per_segment``, ``other_side``, ``uri()``, ``storage_options``, ``parquet_files``, ``seconds``,
``_commit``, ``_stale``); it imports nothing from jobs/.
"""
from __future__ import annotations

import time

import pyarrow as pa

from schemas import SEGMENTS_TABLE, STATUS_INDEXING, STATUS_OK, VIDEOS_TABLE
from xclip_store import flat_commit

# the per-video columns a staged chunk carries to the committer (flat_commit.write(per_video=...)):
# a segments chunk's placeholder videos rows are made of them; a videos chunk's status says which go
PLACEHOLDER_COLUMNS = ("video_id", "uri", "model_id", "label_set", "run_id", "indexed_at")


def per_video_columns(name: str) -> tuple[str, ...]:
    """What ``flat_commit.write`` keeps of each video of a chunk of table ``name`` for ``commit_staged``."""
    return {SEGMENTS_TABLE: PLACEHOLDER_COLUMNS, VIDEOS_TABLE: ("video_id", "status")}.get(name, ())


class CommitPlan:
    """``commit_staged`` and the leased flat commits under it (module doc)."""

    def _init_plan(self) -> None:
        self.before_videos_commit = None  # fn(video_id, status of a videos chunk): what must precede it
        self._keep_visible: set[str] = set()
        self._tried: set[tuple] = set()  # stage ids of the staged chunks whose commit failed
        self._run_rows = {name: flat_commit.RunRows() for name in self.schemas}  # what this run knows (module doc)

    def _known_videos(self, video_ids) -> None:
        """The videos rows there are (``Writer.indexed``): no other video has rows in videos or segments."""
        for name in (VIDEOS_TABLE, SEGMENTS_TABLE):
            self._run_rows[name].others = set(video_ids)

    def _changed_elsewhere(self, name: str, video_ids) -> None:
        """Rows of ``video_ids`` in table ``name`` were written by other than a flat commit (``tbl.update``)."""
        if name in self._run_rows:
            self._run_rows[name].maybe_elsewhere(video_ids)

    def _replace(self, name: str, staged=(), *, delete=(), replace_staged: bool = True, what: str = "") -> None:
        """ONE Lance transaction on table ``name``: the rows of ``delete`` (and, with ``replace_staged``,
        of the staged chunks' videos) go, the staged rows come (``flat_commit.commit_replace``)."""
        lease = self.out.lease
        props = {"lance.commit.message": what, "xclip.run_id": self.run_id, "xclip.command": self.out.command,
                 **({"xclip.lease_generation": lease.generation, "xclip.lease_id": lease.lease_id} if lease else {})}
        ids = tuple(s.stage_id for s in ([staged] if isinstance(staged, flat_commit.Staged) else staged))
        resume = bool(ids) and ids in self._tried  # tried before: it may have landed (retries, pending chunks)
        self._tried.add(ids)
        self._stale.add(name)
        flat_commit.commit_replace(self.uri(name), staged, delete_video_ids=list(delete),
                                   replace_staged=replace_staged, storage_options=self.storage_options,
                                   properties=props, resume=resume, rows=self._run_rows.get(name))
        self._tried.discard(ids)

    def _flat(self, what: str, name: str, staged=(), *, delete=(), replace_staged: bool = True) -> None:
        self._commit(what, lambda: self._replace(name, staged, delete=delete, replace_staged=replace_staged, what=what))

    def _drop_other_side(self, video_ids: list[str]) -> None:
        for name in self.other_side:
            self._flat(f"delete stale {name}", name, delete=video_ids)

    def commit_staged(self, name: str, staged, parquet_uri=None) -> None:
        """Commit a staged chunk (or a list of consecutive ones: one commit) of table ``name`` in the
        consistency order (module doc). Chunks staged elsewhere (``flat_commit.write(writer.uri(name),
        rows, per_video=per_video_columns(name))``, ``xclip_store.pooled``) are committed here in
        submission order; ``parquet_uri`` (or a list) is recorded in the manifest."""
        staged = [staged] if isinstance(staged, flat_commit.Staged) else list(staged)
        if name in (SEGMENTS_TABLE, VIDEOS_TABLE) and any(s.per_video is None for s in staged):
            raise ValueError(f"commit_staged({name!r}): staged without write(..., per_video=per_video_columns({name!r}))")
        self.parquet_files += [u for u in ([parquet_uri] if isinstance(parquet_uri, str) else parquet_uri or ())
                               if u not in self.parquet_files]
        t0 = time.perf_counter()
        vids = [v for s in staged for v in s.video_ids]
        per_video = pa.concat_tables([s.per_video for s in staged]) if name in (SEGMENTS_TABLE, VIDEOS_TABLE) else None
        if name == SEGMENTS_TABLE:
            placeholders = self._indexing_rows(per_video)
            if placeholders.num_rows:  # none for videos whose ok row must stay visible (keep_visible)
                self._commit("commit videos (indexing)", lambda: self._replace(  # a retry replaces what landed
                    VIDEOS_TABLE, flat_commit.write(self.uri(VIDEOS_TABLE), placeholders,
                                                    storage_options=self.storage_options),
                    what="commit videos (indexing)"))
            self._drop_other_side(vids)
            self._flat("commit segments", SEGMENTS_TABLE, staged)
        elif name == VIDEOS_TABLE:
            if self.before_videos_commit is not None:
                self._commit("commit what precedes the videos rows", lambda: self.before_videos_commit(per_video))
            self._flat("commit videos", VIDEOS_TABLE, staged)
            not_ok = [v for v, st in zip(per_video.column("video_id").to_pylist(),
                                         per_video.column("status").to_pylist())
                      if st not in (STATUS_OK, STATUS_INDEXING)]
            if not_ok:  # segments (and side rows) of a video no longer ok
                for other in self.per_segment:
                    self._flat(f"delete {other} of videos not ok", other, delete=not_ok)
                self._drop_other_side(not_ok)
        else:
            self._flat(f"commit {name}", name, staged)
        self.seconds["lancedb"] += time.perf_counter() - t0

    def keep_visible(self, video_ids: set[str]) -> None:
        """Videos whose earlier ``ok`` row stays until their new final row replaces it: no ``indexing``
        placeholder for them (``jobs.visibility``)."""
        self._keep_visible = set(video_ids)

    def _indexing_rows(self, first: pa.Table) -> pa.Table:
        """Placeholder videos rows (``status = 'indexing'``) for the videos of a segments chunk (``first``:
        each video's ``PLACEHOLDER_COLUMNS``), except those of ``keep_visible``."""
        import pyarrow.compute as pc

        seg = first.filter(pc.invert(pc.is_in(first.column("video_id"),
                                               pa.array(sorted(self._keep_visible), pa.string()))))
        schema = self.schemas[VIDEOS_TABLE]
        n = seg.num_rows
        cols = {f.name: pa.nulls(n, f.type) for f in schema}
        for c in PLACEHOLDER_COLUMNS:
            cols[c] = seg.column(c).cast(schema.field(c).type)
        cols["status"] = pa.array([STATUS_INDEXING] * n, pa.string())
        cols["error"] = pa.array([f"being indexed by run {self.run_id}"] * n, pa.string())
        cols["num_segments"] = pa.array([0] * n, pa.int32())
        return pa.table([cols[f.name] for f in schema], schema=schema)
