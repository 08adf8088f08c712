"""The job's Ray Data pipeline: input blocks -> decode tasks -> encoder actor pool, sized by the
resource plan (``jobs.cluster.plan_resources``), iterated by ``jobs.runner``.

The plan's ``write_cpus`` (``writer.writers > 1``: the write tasks of ``jobs.write_tasks``, which
are not Ray Data's) are excluded from what Ray Data may book, so decode tasks never take the CPUs
the write tasks need (``docs/planner.md``).
"""
from __future__ import annotations

import math
import sys
import warnings

import pyarrow as pa

from jobs.cluster import ResourcePlan
from jobs.config import JobConfig
from jobs.decoder import decode_batch
from jobs.encoder import Encoder


def blocks(inputs: pa.Table, total_cpus: float) -> list[pa.Table]:
    """Split the input list into blocks: one decode task each, at most 64 videos per block."""
    n = inputs.num_rows
    count = min(n, max(math.ceil(n / 64), int(total_cpus) * 4))
    size = math.ceil(n / count)
    return [inputs.slice(i, size) for i in range(0, n, size)]


def leave_to_write_tasks(ctx, plan: ResourcePlan) -> None:
    """Keep Ray Data off the write tasks' CPUs (none with one writer: set on every run, the context
    outlives it). ``exclude_resources`` is what Ray Data subtracts from the cluster's resources as
    they grow (an autoscaler), which a fixed ``resource_limits`` would cap; Ray 2.60 deprecates it
    for ``label_selector``, which cannot split one node, hence the warning silenced here."""
    from ray.data import ExecutionResources

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.execution_options.exclude_resources = ExecutionResources(cpu=plan.write_cpus)


def build(cfg: JobConfig, inputs: pa.Table, info, dcfg, plan: ResourcePlan, encoder_extra: dict | None = None):
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty()
    leave_to_write_tasks(ctx, plan)
    # No ctx.max_errored_blocks: a block that fails for good fails the run (an application error is
    # a bug, never retried; a crashed worker is retried by Ray's task retries first).
    ds = ray.data.from_arrow(blocks(inputs, plan.total_cpus))
    # The memory request also keeps Ray from fusing decode into the encoder actors (it fuses
    # task -> actor stages with equal resource requests), which would serialise decoding there.
    ds = ds.map_batches(decode_batch, fn_kwargs={"cfg": dcfg, "thumbnails": cfg.decoder.thumbnails},
                        batch_size=1, batch_format="pyarrow",
                        num_cpus=plan.decode_cpus, memory=cfg.decoder.memory_mb * 2**20, zero_copy_batch=True,
                        **plan.decode_remote_args())  # on decode nodes when the cluster has them (jobs.cluster)
    # An autoscaling pool: a pending GPU actor is what makes a cluster autoscaler start a GPU node.
    min_actors, max_actors = plan.pool_size
    ds = ds.map_batches(Encoder, fn_constructor_kwargs={"cfg": cfg.encoder, "labels": info.labels,
                                                              "num_threads": plan.torch_threads,
                                                              "prompts": info.prompts,
                                                              **(encoder_extra or {})},
                        batch_size=cfg.encoder.batch_size, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(min_size=min_actors, max_size=max_actors),
                        num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus)
    return ds
