"""Run one function over many small work items (table fragments, partitions) on Ray, a bounded
number at a time; ``relabel`` and ``moderate`` stream their tables through it.

    with FragmentMap.start(rows=table_rows) as fmap:
        for result in fmap.map(task, items, shared):      # task(shared, item) -> small result
            ...

* At most ``max_in_flight`` tasks are submitted at once (default: the cluster's CPUs, at least 2):
  the driver holds at most that many results, and a result is small by contract (paths,
  fragment metadata, counts), never the rows themselves.
* ``shared`` (e.g. a scorer with its text features, or a model) is put in the object store once.
* Ray: joined like the indexing job (``jobs.cluster.connect``: an initialised session, else
  ``RAY_ADDRESS``, else a local Ray this call starts and stops). ``use_ray=None`` decides:
  Ray when a session is already initialised or the table has at least ``RAY_MIN_ROWS`` rows;
  a small table runs the same tasks in this process (starting Ray costs seconds there).
* A task that raises fails the map with the task's own exception (its cause, unwrapped).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Callable, Iterable, Iterator

log = logging.getLogger(__name__)

RAY_MIN_ROWS = 100_000


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold(nbytes: int = 128 * 1024) -> bool:
    """Fix glibc's mmap threshold in this process (``mallopt(M_MMAP_THRESHOLD)``). By default glibc
    raises the threshold to the size of each large block freed, so a task's per-batch arrays (a few
    MB) then come from the heap, interleaved with the small buffers it keeps, and the heap never
    shrinks: a relabel task grew ~3 KB per row of its fragment that way (bench/RESULTS.md "Relabel
    at scale"). Fixed, every block over ``nbytes`` is mapped and returned when freed. False where
    there is no glibc (nothing to do)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(nbytes)))


def _call(fn, shared, item):
    import torch

    torch.set_num_threads(1)  # one core per task: the tasks are the parallelism
    fix_mmap_threshold()
    return fn(shared, item)


class FragmentMap:
    def __init__(self, use_ray: bool, *, max_in_flight: int | None = None, started: bool = False):
        self.use_ray, self.started = use_ray, started
        self.max_in_flight = max_in_flight
        if use_ray and not max_in_flight:
            import ray

            self.max_in_flight = max(2, int(ray.cluster_resources().get("CPU", 2)))

    @classmethod
    @contextlib.contextmanager
    def start(cls, *, rows: int = 0, use_ray: bool | None = None, max_in_flight: int | None = None):
        if use_ray is None:
            import ray

            use_ray = ray.is_initialized() or rows >= RAY_MIN_ROWS
        started = False
        if use_ray:
            from jobs.cluster import connect
            from jobs.errors import ray_start_errors

            with ray_start_errors():
                started = connect(None)
        try:
            yield cls(use_ray, max_in_flight=max_in_flight, started=started)
        finally:
            if started:
                import ray

                ray.shutdown()

    def map(self, fn: Callable, items: Iterable, shared=None) -> Iterator:
        """``fn(shared, item)`` for every item; results in completion order."""
        if not self.use_ray:
            fix_mmap_threshold()
            for item in items:
                yield fn(shared, item)
            return
        import ray

        remote = ray.remote(num_cpus=1, max_retries=2)(_call)
        ref = ray.put(shared)
        pending, todo = [], iter(items)
        while True:
            for item in todo:
                pending.append(remote.remote(fn, ref, item))
                if len(pending) >= self.max_in_flight:
                    break
            if not pending:
                return
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                for p in pending:
                    ray.cancel(p, force=True)
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                raise (cause or e) from None
