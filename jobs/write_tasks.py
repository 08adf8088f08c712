"""Ray tasks for ``xclip_store.write_pool.WritePool`` (the store imports no Ray; this is its executor).

    pool = WritePool(output, run_id=..., commit=..., cfg=WritePoolConfig(writers=4),
                     executor=RayTasks())

Each write task books ``num_cpus`` CPUs; a task whose worker died is run again once
(``max_retries``): writing a chunk again only rewrites its Parquet file and leaves the first try's
Lance data files unreferenced. A task's own exception comes back as itself (``RayTaskError.cause``),
so the pool words storage errors as ``OutputError`` the way the driver would.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RayTasks:
    """``xclip_store.write_pool.Executor`` on the Ray session this process has started or joined."""

    def __init__(self, *, num_cpus: float = 1.0, max_retries: int = 1):
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayTasks: no Ray session (jobs.cluster.connect first)")
        if num_cpus <= 0 or max_retries < 0:
            raise ValueError(f"RayTasks: num_cpus > 0 and max_retries >= 0 needed, got {num_cpus}, {max_retries}")
        self.num_cpus, self.max_retries = num_cpus, max_retries
        self._remote: dict[Callable, Any] = {}
        self.started = 0  # tasks started (the job's manifest: tables.write_pool.tasks)

    def start(self, fn: Callable, *args, **kwargs):
        import ray

        if fn not in self._remote:
            self._remote[fn] = ray.remote(fn).options(num_cpus=self.num_cpus, max_retries=self.max_retries,
                                                      name=getattr(fn, "__name__", "write"))
        self.started += 1
        return self._remote[fn].remote(*args, **kwargs)

    def ended(self, handles: list, *, timeout: float | None, every: bool = False) -> set:
        import ray

        if not handles:
            return set()
        if timeout != 0:
            ray.wait(handles, num_returns=len(handles) if every else 1, timeout=timeout)
        ready, _ = ray.wait(handles, num_returns=len(handles), timeout=0)
        return set(ready)

    def result(self, handle) -> Any:
        import ray
        from ray.exceptions import RayTaskError

        try:
            return ray.get(handle)
        except RayTaskError as e:
            raise (e.cause if isinstance(e.cause, BaseException) else e) from None

    def value(self, ref) -> Any:
        import ray

        return ray.get(ref)
