"""The job's writer on a write pool (``writer.writers > 1``; issue 16).

``use_pool(writer, executor)`` gives ``writer`` (``xclip_store.writer.Writer``) a
``xclip_store.write_pool.WritePool``: each chunk ``Writer._flush`` would stage in the driver goes to
a write task instead (its Parquet file and Lance data files, with the per-video columns the
committer needs), and the driver commits the written chunks through ``Writer.commit_staged`` (the
leased ``Output.commit`` path: placeholders before segments, ``before_videos_commit``, videos rows
after their segments, ``keep_visible``, the side tables this run does not write) strictly in
submission order, consecutive chunks of one table in one commit when the committer lags. A videos
chunk is submitted with ``barrier``: every earlier chunk is committed first, as in the driver path.
``Writer.flush`` / ``close`` drain the pool. ``writers == 1`` never comes here: the writer stages
in the driver as before.

The executor comes from the caller (``jobs.write_tasks.RayTasks``): the store imports no Ray.
"""
from __future__ import annotations

import time

from xclip_store.write_pool import Executor, WritePool, WritePoolConfig, Written
from xclip_store.writer import Writer, per_video_columns


class PooledWrites:
    """What the writer calls (``submit``, ``drain``); ``wait_s``: driver seconds in the pool minus
    its commits (waiting for write tasks or a free slot); ``stats()`` for the run manifest."""

    def __init__(self, writer: Writer, executor: Executor):
        cfg = writer.cfg
        self.writer, self.executor, self.wait_s = writer, executor, 0.0
        base = writer.base.rstrip("/")
        self.pool = WritePool(
            writer.out.uri, run_id=writer.run_id, token=writer._token, executor=executor,
            cfg=WritePoolConfig(writers=cfg.writers, max_in_flight=cfg.max_in_flight),
            check=lambda: writer.out.check("write Parquet"), per_video=per_video_columns,
            relpath=lambda name: writer.parquet_path(name)[0][len(base) + 1:],  # the writer's numbering
            commit=self._commit)

    def _commit(self, batch: list[Written]) -> None:
        self.writer.commit_staged(batch[0].name, [w.staged for w in batch], [w.parquet_uri for w in batch])

    def _timed(self, fn, *args, **kwargs) -> None:
        t0, lance0 = time.perf_counter(), self.writer.seconds["lancedb"]
        try:
            fn(*args, **kwargs)
        finally:
            self.wait_s += time.perf_counter() - t0 - (self.writer.seconds["lancedb"] - lance0)

    def submit(self, name: str, table, *, barrier: bool = False) -> None:
        self._timed(self.pool.submit, name, table, barrier=barrier)

    def drain(self) -> None:
        self._timed(self.pool.drain)

    def stats(self) -> dict:
        return {"writers": self.pool.cfg.writers, "max_in_flight": self.pool.cfg.in_flight_limit,
                "tasks": int(getattr(self.executor, "started", 0)), "chunks": self.pool.committed,
                "task_cpus": float(getattr(self.executor, "num_cpus", 0.0)),
                "commits": self.pool.commits, "max_seen_in_flight": self.pool.max_seen_in_flight,
                "wait_s": round(self.wait_s, 3)}


def use_pool(writer: Writer, executor: Executor) -> PooledWrites:
    """From now on ``writer``'s chunks are written by ``writer.cfg.writers`` tasks on ``executor``."""
    if writer.cfg.writers < 2:
        raise ValueError(f"use_pool: writer.writers is {writer.cfg.writers}; 1 writes in the driver")
    if any(writer._pending.values()) or any(writer._buffers.values()):
        writer.flush()  # what the driver staged or buffered first: the order stays the submission order
    writer.pool = PooledWrites(writer, executor)
    return writer.pool
