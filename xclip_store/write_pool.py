"""Writes from many workers, one committer (issue 16, item 2).

A chunk (an Arrow table, or a Ray object ref to one) of table ``name`` becomes, in a write task,

* its Parquet file ``parquet/<name>/<run_id>-<n>-<token>.parquet`` (the naming of
  ``xclip_store/writer.py``), and
* its Lance data files (``flat_commit.write``: written, not committed, invisible to readers),

and the task returns only the small picklable :class:`Written` record (``flat_commit.Staged`` +
the Parquet URI). The driver (:class:`WritePool`) keeps at most ``max_in_flight`` chunks
submitted-but-uncommitted (queued, running, or written and waiting their turn), runs at most
``writers`` write tasks at once, and hands every result to ONE commit callback strictly in
submission order, so the writer's consistency order holds (placeholder videos rows and segments of
a chunk before the videos rows that follow them). When the committer lags behind (later chunks
already written), up to ``max_batch`` consecutive written chunks of one table go to one call, to
become visible in one commit: the per-commit cost (index lookups, manifest) is paid once for them.
``writers = 1`` (the default) writes in the driver itself, chunk by chunk: no Ray (the job does
not use a pool then: ``Writer`` stages in the driver).

The commit callback is the writer's leased commit: ``xclip_store.pooled`` (the job's adapter, with
``writer.writers > 1``) passes ``Writer.commit_staged(name, [staged, ...], [parquet_uri, ...])``,
which commits the batch through ``Output.commit`` in the writer's consistency order (placeholder
videos rows, then the segments; ``before_videos_commit``, then the videos rows, then the segments
of videos no longer ok). The tasks keep each video's ``per_video(name)`` columns on the staged
chunk for it (``flat_commit.write(per_video=...)``), and the Parquet files are named by
``relpath(name)`` (the writer's ``parquet_path``: one numbering whoever writes)::

    pool = pooled.pool_for(writer, jobs.write_tasks.RayTasks())   # the writer's chunks go there
    pool.submit("segments", chunk)                                  # per segments / side-table chunk
    pool.submit("videos", rows, barrier=True)                       # a videos chunk
    pool.drain()                                                    # Writer.flush / close

``barrier=True`` (videos chunks) first commits every earlier chunk: a finished video's Parquet row
is never written before the segments Parquet files of its chunk are committed.

Failure. A write task that fails (a storage error still failing after ``attempts`` tries with
backoff, ``xclip_store.retry``; a worker that died on every try) makes ``submit``/``drain`` raise
``OutputError`` in one line. The chunks before it are committed, the failed one and every later
one are not: the pool waits for their running tasks to end (no new ones start), their Lance data
files stay unreferenced (invisible; removed by ``optimize``'s cleanup) and their Parquet files are
deleted once their task has ended (a crash of the driver leaves them: they hold rows of videos
whose videos row this run did not write, so ``CURRENT_SEGMENTS_SQL`` does not show them). A failed commit callback stops the pool
the same way and is raised as is.

Measured (bench/write_pool.py; 2 cores shared with other sessions, so ratios only): 512-d
segments, 4,096-row chunks; 200k rows: 1 writer 18k segments/s (median), 4 writers 1.37x, 4
writers with up to 8 chunks a commit 1.63x; 1M rows: 4.3k, 2.3x, 3.1x (before ``commit_plan``
stopped the committer's cost per chunk from growing over a run), hence ``max_batch``.

Chosen (bench/write_pool.py, bench/RESULTS.md "Writes from many workers"): Lance's fragment API
(``lance.fragment.write_fragments`` in the tasks, one ``LanceDataset.commit`` per chunk in the
driver (or per batch of chunks), ``flat_commit``). Rejected, reasons in bench/RESULTS.md: Ray
Data ``Dataset.write_lance`` and lance-ray's ``write_lance`` commit ``Append``/``Overwrite``
themselves (no deletion vectors for a rerun's old rows, no lease check, no per-chunk order), and
Ray 2.60's datasink does not run with pylance 13.0.0 (``TypeError`` on ``storage_options_provider``).

Imports nothing from jobs/ and no Ray (the store runs in the driver, ``tests/test_imports.py``): with
``writers > 1`` the write tasks run on an :class:`Executor`, ``jobs.write_tasks.RayTasks`` (Ray
tasks on the session ``jobs.cluster.connect`` started).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from xclip_core import storage
from xclip_store import flat_commit
from xclip_store.errors import OutputError
from xclip_store.retry import PROGRAMMING_ERRORS, retry, short_error

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WritePoolConfig:
    """``writers``: write tasks at once (1: in the driver, no Ray); ``max_in_flight``: chunks
    submitted and not yet committed (0: ``2 * writers``);
    ``attempts``: tries of each storage write in a task (transient errors only); ``max_batch``: written
    chunks of one table, next in order, handed to ONE commit when the committer lags behind (0: up to
    ``max_in_flight``; 1: a commit per chunk)."""

    writers: int = 1
    max_in_flight: int = 0
    attempts: int = 5
    max_batch: int = 0
    flat: flat_commit.FlatCommitConfig = flat_commit.FlatCommitConfig()

    def __post_init__(self):
        if not isinstance(self.writers, int) or self.writers < 1:
            raise ValueError(f"writers must be an integer >= 1, got {self.writers!r}")
        if self.max_in_flight and self.max_in_flight < self.writers:
            raise ValueError(f"max_in_flight must be 0 (2 x writers) or >= writers ({self.writers}), "
                             f"got {self.max_in_flight}")
        if self.max_in_flight < 0 or self.attempts < 1 or self.max_batch < 0:
            raise ValueError(f"max_in_flight >= 0, attempts >= 1 and max_batch >= 0 needed, got "
                             f"{self.max_in_flight}, {self.attempts}, {self.max_batch}")

    @property
    def in_flight_limit(self) -> int:
        return self.max_in_flight or 2 * self.writers

    @property
    def batch_limit(self) -> int:
        return self.max_batch or self.in_flight_limit


@dataclasses.dataclass(frozen=True)
class Written:
    """One written, uncommitted chunk, as the commit callback gets it. ``info``: what the caller
    passed to ``submit`` (e.g. the chunk's placeholder videos rows)."""

    name: str
    seq: int
    staged: flat_commit.Staged
    parquet_uri: str
    info: Any = None


def parquet_relpath(name: str, run_id: str, seq: int, token: str) -> str:
    """Where chunk ``seq`` of table ``name`` goes under the output (the writer's naming)."""
    return f"parquet/{name}/{run_id}-{seq:05d}-{token}.parquet"


def write_chunk(output_uri: str, name: str, table: pa.Table, relpath: str, *, attempts: int = 5,
                flat: flat_commit.FlatCommitConfig = flat_commit.FlatCommitConfig(),
                hook: Callable | None = None, seq: int = 0,
                per_video: Sequence[str] = ()) -> tuple[flat_commit.Staged, str]:
    """Write ``table`` as its Parquet file and as Lance data files of table ``name`` (uncommitted;
    ``per_video``: as ``flat_commit.write``). Runs in a write task or in the driver; storage options
    come from this process's environment.
    ``hook(name, seq, point)`` (tests): ``"parquet"`` before each try of the Parquet write,
    ``"done"`` once the chunk is written."""
    fs, base = storage.pyarrow_filesystem(output_uri)
    path = f"{base.rstrip('/')}/{relpath}"
    local = not storage.is_s3(output_uri)

    def parquet():
        if hook is not None:
            hook(name, seq, "parquet")
        if local:
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, path, filesystem=fs, compression="zstd")

    retry(parquet, what=f"write {name} Parquet", attempts=attempts)
    uri = flat_commit.table_uri(storage.join(output_uri, "lancedb"), name)
    opts = storage.lancedb_storage_options(output_uri)
    staged = retry(lambda: flat_commit.write(uri, table, storage_options=opts, cfg=flat,
                                                 per_video=per_video),
                   what=f"write {name} data files", attempts=attempts)
    if hook is not None:
        hook(name, seq, "done")
    return staged, (path if local else "s3://" + path)


class Executor(Protocol):
    """Where write tasks run when ``writers > 1`` (``jobs.write_tasks.RayTasks``: Ray tasks; the
    store itself imports no Ray)."""

    def start(self, fn: Callable, *args, **kwargs) -> Any:
        """Run ``fn(*args, **kwargs)`` as a task (object-ref arguments resolved); returns its handle."""

    def ended(self, handles: list, *, timeout: float | None, every: bool = False) -> set:
        """The handles whose task has ended: after ``timeout`` s (0: now; None: once at least one has,
        or with ``every`` all of them)."""

    def result(self, handle) -> Any:
        """The ended task's return value, or its own exception raised."""

    def value(self, ref) -> Any:
        """The object behind an object ref (a chunk handed over as a ref)."""


@dataclasses.dataclass
class _Chunk:
    name: str
    seq: int
    relpath: str
    info: Any
    table: Any = None      # not started yet (the table or its object ref)
    ref: Any = None        # the running / finished task
    done: bool = False     # written (or failed): its task has ended
    committing: bool = False  # handed to the commit callback
    result: tuple | None = None  # (staged, parquet_uri) once known


class WritePool:
    """The driver side (see module doc). ``commit(batch)``: the one committer, called in submission
    order with a list of written chunks of one table (one chunk unless ``max_batch`` > 1), each
    call to become visible at once (``Writer.commit_staged`` of all their ``Staged``); ``check()``:
    the lease check, before each chunk is submitted; ``relpath(name)``: the next chunk's Parquet file
    under the output (default ``parquet_relpath`` with the pool's own numbering); ``per_video(name)``:
    the columns each staged chunk keeps per video (``xclip_store.writer.per_video_columns``)."""

    def __init__(self, output_uri: str, *, run_id: str, commit: Callable[[list[Written]], None],
                 cfg: WritePoolConfig = WritePoolConfig(), token: str | None = None,
                 check: Callable[[], None] | None = None, hook: Callable | None = None,
                 start_seq: dict[str, int] | None = None, executor: Executor | None = None,
                 relpath: Callable[[str], str] | None = None, per_video: Callable[[str], Sequence[str]] | None = None):
        self.output_uri, self.run_id, self.cfg = output_uri, run_id, cfg
        self.token = token or uuid.uuid4().hex[:8]
        self._commit_fn, self._check, self._hook = commit, check, hook
        self._relpath, self._per_video = relpath, per_video or (lambda name: ())
        self._seq = collections.Counter(start_seq or {})
        self._queue: collections.deque[_Chunk] = collections.deque()
        self.parquet_files: list[str] = []
        self.committed = 0   # chunks
        self.commits = 0     # calls of the committer
        self.max_seen_in_flight = 0
        if cfg.writers > 1 and executor is None:
            raise ValueError("WritePool: writers > 1 needs an executor (jobs.write_tasks.RayTasks)")
        self._tasks = executor
        self._failed: BaseException | None = None

    # ------------------------------------------------------------ state
    @property
    def in_flight(self) -> int:
        """Chunks submitted and not committed."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Write tasks started and not seen ended."""
        return sum(1 for c in self._queue if c.ref is not None and not c.done)

    # ------------------------------------------------------------ driver API
    def submit(self, name: str, table, *, info: Any = None, barrier: bool = False) -> None:
        """Hand one chunk over; returns once it is queued (blocking while ``max_in_flight`` chunks
        are in flight). ``barrier``: commit every earlier chunk first."""
        self._alive()
        if self._check is not None:  # the lease: once lost, no chunk in flight is committed either
            self._guard(self._check)
        if barrier:
            self.drain()
        seq = self._seq[name]
        self._seq[name] += 1
        rel = self._relpath(name) if self._relpath else parquet_relpath(name, self.run_id, seq, self.token)
        chunk = _Chunk(name, seq, rel, info, table=table)
        if self.cfg.writers == 1:
            self._queue.append(chunk)
            self.max_seen_in_flight = max(self.max_seen_in_flight, 1)
            self._guard(self._write_here, chunk)
            chunk.done = True
            self._guard(self._commit_head)
            return
        while self.in_flight >= self.cfg.in_flight_limit:
            self._guard(self._step, True)
        self._queue.append(chunk)
        self.max_seen_in_flight = max(self.max_seen_in_flight, self.in_flight)
        self._guard(self._step, False)

    def drain(self) -> None:
        """Commit every submitted chunk (in order)."""
        self._alive()
        while self._queue:
            self._guard(self._step, True)

    def close(self) -> None:
        self.drain()

    def __enter__(self) -> "WritePool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.drain()
        elif self._queue:
            self.abort()

    # ------------------------------------------------------------ inside
    def _alive(self) -> None:
        if self._failed is not None:  # an earlier error dropped the chunks in flight: never "all committed"
            raise OutputError(f"--output {self.output_uri}: the write pool stopped after an error: "
                              f"{short_error(self._failed)}")

    def _guard(self, fn, *args) -> None:
        """Run a pool step; on any error stop the pool (``abort``) and raise."""
        try:
            fn(*args)
        except BaseException as e:
            self._failed = e
            self.abort()
            raise

    def _write_here(self, chunk: _Chunk) -> None:
        table, chunk.table = chunk.table, None
        if not isinstance(table, pa.Table):  # an object ref
            if self._tasks is None:
                raise TypeError(f"WritePool: a chunk of {chunk.name} is a {type(table).__name__}, not a pyarrow "
                                "Table (an object ref needs an executor)")
            table = self._tasks.value(table)
        try:
            chunk.result = write_chunk(self.output_uri, chunk.name, table, chunk.relpath,
                                       attempts=self.cfg.attempts, flat=self.cfg.flat, hook=self._hook, seq=chunk.seq,
                                       per_video=tuple(self._per_video(chunk.name)))
        except Exception as e:
            raise self._write_error(chunk, e) from None

    def _step(self, block: bool) -> None:
        """Start queued chunks while fewer than ``writers`` tasks run; commit the written head of the
        queue, in order. ``block``: return only once at least one chunk is committed."""
        while True:
            running = [c for c in self._queue if c.ref is not None and not c.done]
            if running:  # which tasks have ended (a later one may end before the head)
                ready = self._tasks.ended([c.ref for c in running], timeout=0)
                for c in running:
                    c.done = c.ref in ready
                running = [c for c in running if not c.done]
            for chunk in self._queue:
                if len(running) >= self.cfg.writers:
                    break
                if chunk.ref is None:
                    chunk.ref = self._tasks.start(write_chunk, self.output_uri, chunk.name, chunk.table, chunk.relpath,
                                                    attempts=self.cfg.attempts, flat=self.cfg.flat,
                                                    hook=self._hook, seq=chunk.seq,
                                                    per_video=tuple(self._per_video(chunk.name)))
                    chunk.table = None  # the object store holds it now
                    running.append(chunk)
            committed = False
            while self._queue and self._queue[0].done:
                batch, error = [], None
                for c in self._queue:  # the written chunks next in order, of the head's table
                    if not c.done or c.name != self._queue[0].name or len(batch) == self.cfg.batch_limit:
                        break
                    if c.result is None:
                        try:
                            c.result = self._tasks.result(c.ref)
                        except Exception as e:
                            error = self._write_error(c, e)
                            break
                    batch.append(c)
                if batch:
                    self._commit_head(len(batch))
                    committed = True
                if error is not None:
                    raise error
            if committed:  # slots are free: start the next chunks before returning
                block = False
                continue
            if not block or not self._queue:
                return
            self._tasks.ended([c.ref for c in self._queue if c.ref is not None and not c.done], timeout=None)

    def _commit_head(self, n: int = 1) -> None:
        """The first ``n`` chunks of the queue (written, one table) in one call of the committer."""
        batch = [self._queue[i] for i in range(n)]
        for c in batch:
            c.committing = True
        self._commit_fn([Written(c.name, c.seq, *c.result, c.info) for c in batch])
        for c in batch:
            self._queue.popleft()
            self.parquet_files.append(c.result[1])
        self.committed += n
        self.commits += 1

    def _write_error(self, chunk: _Chunk, e: BaseException) -> BaseException:
        if isinstance(e, PROGRAMMING_ERRORS + (ValueError,)):  # a bug or a schema mismatch: as is
            return e
        return OutputError(f"--output {self.output_uri}: cannot write {chunk.name} chunk {chunk.seq} "
                           f"({short_error(e)}); nothing after the last commit is lost: rerun the job to finish")

    def abort(self, wait_s: float = 60.0) -> None:
        """Stop: let the running write tasks of the uncommitted chunks end (up to ``wait_s``; no
        ``ray.cancel``: in Ray 2.60 cancelling a task while it completes can fail a check in the
        driver's core worker and end the driver), delete the Parquet files of every uncommitted
        chunk whose task has ended (their Lance data files stay unreferenced), forget them all."""
        chunks, self._queue = list(self._queue), collections.deque()
        refs = [c.ref for c in chunks if c.ref is not None]
        ended = set()
        if refs:
            ended = self._tasks.ended(refs, timeout=wait_s, every=True)
        fs, base = storage.pyarrow_filesystem(self.output_uri)
        for c in chunks:
            if c.table is not None or c.committing:
                continue  # never started: nothing written; or (partly) committed: its rows may be visible
            if c.ref is not None and c.ref not in ended:
                log.warning("write pool: task of %s chunk %d still running; its Parquet file may stay",
                            c.name, c.seq)
                continue
            try:
                fs.delete_file(f"{base.rstrip('/')}/{c.relpath}")
            except FileNotFoundError:
                pass
            except Exception as e:
                log.warning("write pool: cannot delete %s: %s", c.relpath, short_error(e))
