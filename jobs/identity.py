"""The processing identity's view of the encoder settings (``jobs.incremental.processing_id``).

``precision = "auto"`` means fp32 on CPU and bf16 on CUDA (``jobs.gpu_defaults``): the identity
hashes that resolved value, never "auto", so the same index moved from a CPU cluster to a GPU
cluster is reprocessed instead of kept with rows of another precision.
"""
from __future__ import annotations

import dataclasses
import os

from jobs import cluster
from jobs.errors import ray_start_errors


def identity_encoder(cfg, resources: dict | None = None):
    """The encoder settings the processing identity hashes: precision "auto" resolved to what the
    actors will use (fp32 on CPU, bf16 on CUDA; ``jobs.gpu_defaults``), so moving an index from a
    CPU cluster to a GPU cluster reprocesses it. ``resources``: ``ray.cluster_resources()``; with
    ``device = "auto"`` and none given: a cluster to join (``--ray-address``, ``RAY_ADDRESS``) is
    asked; the local Ray a run starts has this machine's GPUs (no Ray started just for this)."""
    from jobs.gpu_defaults import encoder_uses_cuda, resolve_encoder

    enc = cfg.encoder
    if enc.precision != "auto":
        return enc
    if enc.device == "auto" and resources is None:
        import ray

        if not (ray.is_initialized() or cfg.ray_address or os.environ.get("RAY_ADDRESS")):
            import torch

            resources = {"GPU": float(torch.cuda.device_count())}
        else:
            with ray_start_errors():
                cluster.connect(cfg.ray_address)
                resources = ray.cluster_resources()
    cuda = encoder_uses_cuda(enc, float((resources or {}).get("GPU", 0.0)))
    return dataclasses.replace(enc, precision=resolve_encoder(enc, cuda=cuda).precision)
