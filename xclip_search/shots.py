"""Shot hits for ``Query.per_shot()`` (the ``shots`` table of ``--segments shots`` runs).

A shot row is current when its video's current ``videos`` row has ``shots`` (the video was last
indexed with ``segments = "shots"``) and the same ``run_id``: a video reindexed with fixed segments
later keeps its old shot rows in the table (the fixed run writes no ``shots`` table), and they are
left out here.
"""
from __future__ import annotations

import pyarrow as pa

from schemas import VIDEOS_TABLE
from schemas.shots import SHOTS_TABLE
from schemas.sql import sql_list

SHOT_COLUMNS = ["video_id", "uri", "shot_id", "shot_index", "start_s", "end_s", "num_segments", "run_id",
                "labels", "label_scores"]

__all__ = ["SHOTS_TABLE", "SHOT_COLUMNS", "check_shots", "current_shots"]


def check_shots(index) -> None:
    if SHOTS_TABLE not in index.table_names:
        raise ValueError(f"per_shot: {index.uri} has no {SHOTS_TABLE!r} table: index with --segments shots "
                         "(or [decoder] segments = \"shots\") first")


def current_shots(index, hits: pa.Table) -> pa.Table:
    """``hits`` (shot rows) without the stale ones (module doc), ``run_id`` dropped."""
    if hits.num_rows:
        vids = hits.column("video_id").unique().to_pylist()
        videos = index.table(VIDEOS_TABLE).search().where(
            f"video_id IN ({sql_list(vids)}) AND status = 'ok' AND shots IS NOT NULL") \
            .select(["video_id", "run_id"]).limit(len(vids)).to_arrow()
        current = {(v, r) for v, r in zip(videos.column("video_id").to_pylist(), videos.column("run_id").to_pylist())}
        keep = [(v, r) in current for v, r in zip(hits.column("video_id").to_pylist(),
                                                  hits.column("run_id").to_pylist())]
        hits = hits.filter(pa.array(keep, pa.bool_()))
    return hits.drop_columns(["run_id"])


