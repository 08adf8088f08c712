"""Ray connection and resource planning for the job.

``connect(address)``: join ``address`` (or ``RAY_ADDRESS``, as set by
``ray job submit``), else start a local Ray; reuses an already initialised
session (tests share one per module).

``plan_resources(encoder, decoder, resources, writers=N)``: where the stages run and how
many encoder actors to ask for (the rules, with numbers: ``docs/planner.md``):

- ``writer.writers > 1``: the write tasks' CPUs come first, ``WRITE_TASK_CPUS`` per writer but
  at most half the cluster (``write_cpus``, split evenly: ``write_task_cpus``); the rules below
  share the rest, and Ray Data is told to leave them (``jobs.dataset``), so decode tasks neither
  starve the write tasks nor oversubscribe the cores with them.

- GPU actors when ``encoder.device`` is ``cuda``/``auto`` and the cluster has
  GPUs now or may start them (``encoder.max_gpu_actors``: an autoscaler starts
  GPU nodes only when an actor asks for a GPU, so the pool must ask first). The
  pool starts with one actor per GPU there now (at least 1) and may grow up
  to the GPUs the decode cores can feed (never starting more); a GPU
  actor still runs on CPU where torch sees no CUDA (``encoder.device = auto``).
- Decode tasks go to the nodes that declare the custom resource
  ``xclip_decode`` (CPU decode nodes; one unit per core) when any node does,
  else anywhere.
- CPU-only clusters: half the CPUs' worth of encoder threads, but the actors
  book no CPU (unless ``encoder.num_cpus``): every core can run a decode task,
  and a booked-but-idle actor cannot starve them (two fully booked pools on a
  small box once hung the job).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import warnings

from jobs.config import DecoderConfig, EncoderConfig

DECODE_RESOURCE = "xclip_decode"  # declared by CPU decode nodes: decode tasks run only there
WRITE_TASK_CPUS = 1.0  # a write task's CPUs when the cluster has them (Parquet zstd + Lance files)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ResourcePlan:
    num_actors: int          # encoder actors to start with (the pool's min_size)
    actor_cpus: float
    actor_gpus: float
    decode_cpus: float
    torch_threads: int
    total_cpus: float
    total_gpus: float
    max_actors: int = 0      # the pool's max_size (>= num_actors; 0 = num_actors)
    decode_resources: dict = dataclasses.field(default_factory=dict)  # custom resources per decode task
    decode_clips_per_s: float = 0.0   # estimated decode capacity of the cluster now
    encode_clips_per_s: float = 0.0   # estimated encode capacity of max_actors GPU actors (0 on CPU)
    transfer_mb_s: float = 0.0        # frames decode nodes send to GPU nodes at that rate
    writers: int = 1                  # write tasks at once (writer.writers; 1: the driver writes)
    write_cpus: float = 0.0           # CPUs kept for them, out of Ray Data's reach (0 with one writer)

    @property
    def write_task_cpus(self) -> float:
        """CPUs each write task books (``jobs.write_tasks.RayTasks(num_cpus=...)``)."""
        return self.write_cpus / self.writers if self.writers > 1 else WRITE_TASK_CPUS

    @property
    def pool_size(self) -> tuple[int, int]:
        return self.num_actors, max(self.num_actors, self.max_actors)

    def decode_remote_args(self) -> dict:
        """Extra ``map_batches`` arguments for the decode stage (placement on decode nodes)."""
        return {"resources": dict(self.decode_resources)} if self.decode_resources else {}


def connect(address: str | None) -> bool:
    """Initialise Ray; returns True when this call started it (caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "log_to_driver": True}
    # address None: join RAY_ADDRESS when set (ray job submit), else start a local Ray: never silently
    # join whatever `ray start` head happens to run on this machine (a bare ray.init() would).
    # Ray's daemons are fork+exec'd, so lancedb's fork warning (the writer already connected) is moot.
    sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "local", **kwargs)
    if callable(sigterm):  # the caller's SIGTERM handler (xclip-index: one error line), not Ray's native dump
        signal.signal(signal.SIGTERM, sigterm)
    return True


def decode_cores_per_gpu(encoder: EncoderConfig, decoder: DecoderConfig) -> float:
    """The feeding rule: decode cores one GPU needs = encode clips/s per GPU / decode clips/s per core."""
    return encoder.gpu_clips_per_s / decoder.cpu_clips_per_s


def plan_resources(encoder: EncoderConfig, decoder: DecoderConfig, resources: dict, *,
                   clip_bytes: int = 0, writers: int = 1) -> ResourcePlan:
    """``resources``: ``ray.cluster_resources()``; ``clip_bytes``: bytes of one decoded clip
    (T*S*S*3), for the frame transfer estimate; ``writers``: ``writer.writers``."""
    total_cpus = float(resources.get("CPU", 0.0))
    total_gpus = float(resources.get("GPU", 0.0))
    if total_cpus <= 0:
        raise RuntimeError("the Ray cluster reports no CPUs")
    write_cpus = min(writers * WRITE_TASK_CPUS, total_cpus / 2) if writers > 1 else 0.0
    cpus = total_cpus - write_cpus  # what decode tasks and encoder actors share
    gpus_possible = max(int(total_gpus), encoder.max_gpu_actors) if encoder.device != "cpu" else 0
    use_gpu = gpus_possible >= 1
    if encoder.device == "cuda" and not use_gpu:
        raise RuntimeError("encoder.device = 'cuda' but the Ray cluster has no GPU; if an autoscaler can start "
                           "GPU nodes, set encoder.max_gpu_actors (--max-gpus N), else use --device cpu/auto")
    decode_cpus = min(decoder.num_cpus, cpus / 2)
    decode_nodes = float(resources.get(DECODE_RESOURCE, 0.0))
    decode_resources = {DECODE_RESOURCE: decode_cpus} if decode_nodes > 0 else {}
    if use_gpu:
        actor_cpus = threads = encoder.num_cpus or 1.0
        actor_gpus = 1.0
        decode_cores = decode_nodes or max(cpus - actor_cpus * total_gpus, decode_cpus)
        decode_cps = decode_cores * decoder.cpu_clips_per_s
        fed = max(1, math.ceil(decode_cps / encoder.gpu_clips_per_s))  # GPUs the decoders can keep busy
        if encoder.num_actors:
            min_actors = max_actors = encoder.num_actors
        else:
            min_actors = max(1, int(total_gpus))  # GPUs already there are paid for: use them all
            max_actors = max(min_actors, min(gpus_possible, fed))  # start no GPU the decoders cannot feed
        encode_cps = max_actors * encoder.gpu_clips_per_s
        if decode_cps < encode_cps:
            log.warning("planner: %.0f decode cores give ~%.0f clips/s, %d GPU actor(s) could encode ~%.0f: "
                        "a GPU needs ~%.0f decode cores to be fed (docs/planner.md)", decode_cores, decode_cps,
                        max_actors, encode_cps, decode_cores_per_gpu(encoder, decoder))
        if gpus_possible > max_actors and not encoder.num_actors:
            log.warning("planner: asking for at most %d of %d possible GPU(s): the decode cores cannot feed more",
                        max_actors, gpus_possible)
    else:
        threads = encoder.num_cpus or (1.0 if cpus <= 4 else 2.0)
        min_actors = max_actors = encoder.num_actors or max(1, int((cpus / 2) // threads))
        # A CPU actor books no CPU unless asked (encoder.num_cpus): it idles while it waits for
        # batches, and a booked core would be one decode task fewer (the 2-core box ran at a third of
        # its decode capacity). Its torch threads share the cores with the decode tasks; Ray Data's
        # backpressure stops decoding when the encoder falls behind.
        actor_cpus = encoder.num_cpus
        actor_gpus = 0.0
        decode_cps = (decode_nodes or cpus) * decoder.cpu_clips_per_s
        encode_cps = 0.0
    if not decode_resources:  # decode tasks share nodes with the actors: leave one decode task room
        budget = cpus - decode_cpus
        if min_actors * actor_cpus > budget:
            actor_cpus = budget / min_actors
            log.warning("encoder: %d actor(s) x %.2f CPU to leave %.2f CPU for decode tasks",
                        min_actors, actor_cpus, decode_cpus)
    transfer = min(decode_cps, encode_cps) * clip_bytes / 1e6 if (use_gpu and decode_resources) else 0.0
    return ResourcePlan(num_actors=int(min_actors), actor_cpus=float(actor_cpus), actor_gpus=actor_gpus,
                        decode_cpus=float(decode_cpus),
                        torch_threads=max(1, int(round(threads))),
                        total_cpus=total_cpus, total_gpus=total_gpus, max_actors=int(max_actors),
                        decode_resources=decode_resources, decode_clips_per_s=float(decode_cps),
                        encode_clips_per_s=float(encode_cps), transfer_mb_s=float(transfer),
                        writers=int(writers), write_cpus=float(write_cpus))
