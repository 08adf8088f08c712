"""Encoder defaults chosen by device: what "auto" means for precision, batch size
and ``torch.compile``.

On CUDA the defaults are the fastest measured configuration (bench/model.py on
one H200, base-patch32, 400 labels: bf16, batch 128, compiled = 5,208 clips/s
against 4,570 eager; gpu-host notes / bench/RESULTS.md). On CPU: fp32, batch
16, eager (bf16 is slower than fp32 on CPUs without AMX, and compiling costs
tens of seconds for little gain there). A value set explicitly is kept.
"""
from __future__ import annotations

import dataclasses

from jobs.config import EncoderConfig

CUDA_DEFAULTS = {"precision": "bf16", "batch_size": 128, "compile": True}
CPU_DEFAULTS = {"precision": "fp32", "batch_size": 16, "compile": False}


def encoder_uses_cuda(cfg: EncoderConfig, num_gpus: float) -> bool:
    """Whether the encoder actors get a GPU: ``device = "cuda"``, or ``"auto"``
    with at least one GPU in the cluster (the rule of ``jobs.cluster``)."""
    return cfg.device == "cuda" or (cfg.device == "auto" and num_gpus >= 1)


def resolve_encoder(cfg: EncoderConfig, *, cuda: bool) -> EncoderConfig:
    """``cfg`` with every "auto" setting (precision "auto", batch_size None,
    compile None) replaced by the device's default."""
    defaults = CUDA_DEFAULTS if cuda else CPU_DEFAULTS
    changes = {}
    if cfg.precision == "auto":
        changes["precision"] = defaults["precision"]
    if cfg.batch_size is None:
        changes["batch_size"] = defaults["batch_size"]
    if cfg.compile is None:
        changes["compile"] = defaults["compile"]
    return dataclasses.replace(cfg, **changes) if changes else cfg
