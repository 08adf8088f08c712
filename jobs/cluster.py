"""Ray connection and resource planning for the job.

``connect(address)``: join ``address`` (or ``RAY_ADDRESS``, as set by
``ray job submit``), else start a local Ray; reuses an already initialised
session (tests share one per module).

``plan_resources(...)``: size the encoder actor pool from
``ray.cluster_resources()`` so decode tasks always keep CPU: on a small
CPU-only box two fully-booked pools starve the read tasks and the job hangs.
"""
from __future__ import annotations

import dataclasses
import logging
import warnings

from jobs.config import DecoderConfig, EncoderConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ResourcePlan:
    num_actors: int
    actor_cpus: float
    actor_gpus: float
    decode_cpus: float
    torch_threads: int
    total_cpus: float
    total_gpus: float


def connect(address: str | None) -> bool:
    """Initialise Ray; returns True when this call started it (caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": True}
    # address None: ray.init joins RAY_ADDRESS when set (ray job submit), else starts a local Ray.
    # Ray's daemons are fork+exec'd, so lancedb's fork warning (the writer already connected) is moot.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
        ray.init(address=address or None, **kwargs)
    return True


def plan_resources(encoder: EncoderConfig, decoder: DecoderConfig, resources: dict) -> ResourcePlan:
    total_cpus = float(resources.get("CPU", 0.0))
    total_gpus = float(resources.get("GPU", 0.0))
    if total_cpus <= 0:
        raise RuntimeError("the Ray cluster reports no CPUs")
    use_gpu = total_gpus >= 1 and encoder.device != "cpu"
    if encoder.device == "cuda" and not use_gpu:
        raise RuntimeError("encoder.device = 'cuda' but the Ray cluster has no GPU")
    if use_gpu:
        actors = encoder.num_actors or int(total_gpus)
        actor_cpus = encoder.num_cpus or 1.0
        actor_gpus = 1.0
    else:
        actor_cpus = encoder.num_cpus or (1.0 if total_cpus <= 4 else 2.0)
        actors = encoder.num_actors or max(1, int((total_cpus / 2) // actor_cpus))
        actor_gpus = 0.0
    decode_cpus = min(decoder.num_cpus, total_cpus / 2)
    budget = total_cpus - decode_cpus  # what the actors may take, leaving one decode task room
    if actors * actor_cpus > budget:
        actor_cpus = budget / actors
        log.warning("encoder: %d actor(s) x %.2f CPU to leave %.2f CPU for decode tasks",
                    actors, actor_cpus, decode_cpus)
    return ResourcePlan(num_actors=int(actors), actor_cpus=float(actor_cpus), actor_gpus=actor_gpus,
                        decode_cpus=float(decode_cpus), torch_threads=max(1, int(round(actor_cpus))),
                        total_cpus=total_cpus, total_gpus=total_gpus)
