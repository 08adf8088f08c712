"""CPU and NVDEC decoding at once on GPU nodes: routing and the actor-side decode.

Routing (decode task side, ``route_to_nvdec``): a video goes to NVDEC when
``uniform(video_id) < share``, where ``uniform`` maps the video_id (a sha1) to
[0, 1): stateless, the same answer on every retry, and a share of the inputs
close to ``share``. Such a video leaves the decode task as one ``kind="nvdec"``
row (its input fields only, ``schemas.stream``); every other video is decoded
on the CPU as before.

The share (``decoder.nvdec_share``; None = automatic) splits the work in
proportion to measured decode capacity, so both finish together::

    share = G * nvdec_clips_per_s / (G * nvdec_clips_per_s + C * cpu_clips_per_s_per_core)

with G the cluster's GPUs and C its CPUs minus one per GPU (the encoder actor's).
Defaults are the H200 host's 360p H.264 figures (gpu-host notes; docs/scaling.md):
NVDEC 9,335 frames/s with 8 decoders = 155.6 clips/s of 60-frame windows; PyAV
293 clips/s on 16 cores = 18.3 clips/s per core. A cluster without GPUs, or an
encoder forced to the CPU, gets share 0.

Actor side (``expand_nvdec_rows``, called by ``jobs.encoder.Encoder``): each
nvdec row is decoded with ``xclip_core.video.nvdec.decode_nvdec`` (threads, one
NVDEC session each) and replaced by the video's clip rows and exactly one status
row, as the decode stage would have produced them. Clip frames decoded on the GPU
stay there (returned beside the table, keyed by row); a video NVDEC could not
decode was decoded on the CPU, its frames travel as bytes and its status row says
why (``decode_fallback``).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from jobs.decoded_rows import _clip_row, _meta_fields, _status_row
from schemas import STATUS_FAILED, STATUS_OK
from schemas.stream import DECODE_CONFIG, FRAMES, FRAMES_SHAPE, KIND_NVDEC, decoded_schema

log = logging.getLogger(__name__)

NVDEC_CLIPS_PER_S = 9335 / 60      # per GPU, 360p H.264, 8 decoders (measured frames/s / 60 frames per clip)
CPU_CLIPS_PER_S_PER_CORE = 293 / 16  # bench/decode.py, 16 processes, 360p H.264 (measured)
NVDEC_THREADS = 8                  # concurrent NVDEC sessions per actor (16 measured no faster than 8)


def auto_share(num_cpus: float, num_gpus: float, *, nvdec_clips_per_s: float = NVDEC_CLIPS_PER_S,
               cpu_clips_per_s_per_core: float = CPU_CLIPS_PER_S_PER_CORE) -> float:
    """The share of videos for NVDEC that balances NVDEC and CPU decode capacity."""
    gpus = int(num_gpus)
    if gpus < 1:
        return 0.0
    nvdec = gpus * nvdec_clips_per_s
    cpu = max(0.0, num_cpus - gpus) * cpu_clips_per_s_per_core
    return round(nvdec / (nvdec + cpu), 4)


@functools.lru_cache(maxsize=1)
def _cluster_share() -> float:
    import ray

    res = ray.cluster_resources() if ray.is_initialized() else {}
    return auto_share(res.get("CPU", 0.0), res.get("GPU", 0.0))


def resolve_share(cfg) -> float:
    """``cfg.nvdec_share`` (a ``DecodeConfig``), or the cluster's automatic share when None."""
    return _cluster_share() if cfg.nvdec_share is None else float(cfg.nvdec_share)


def resolve_for_cluster(cfg, dcfg, resources: dict):
    """Driver side, once Ray is up: (``cfg`` with the encoder's "auto" settings
    resolved for its device, ``dcfg`` with a fixed NVDEC share: automatic when
    None, 0 when the encoder has no GPU)."""
    from jobs.gpu_defaults import encoder_uses_cuda, resolve_encoder

    gpus = float(resources.get("GPU", 0.0))
    cuda = encoder_uses_cuda(cfg.encoder, gpus)
    share = dcfg.nvdec_share
    if not cuda:
        if share:
            log.warning("decoder.nvdec_share = %s ignored: the encoder runs on the CPU", share)
        share = 0.0
    elif share is None:
        share = auto_share(float(resources.get("CPU", 0.0)), gpus)
    return (dataclasses.replace(cfg, encoder=resolve_encoder(cfg.encoder, cuda=cuda)),
            dcfg.with_(nvdec_share=share))


def uniform(video_id: str) -> float:
    """A video's fixed point in [0, 1) (video ids are sha1 hex)."""
    return int(str(video_id)[:12], 16) / 16 ** 12


def route_to_nvdec(row: dict, cfg) -> bool:
    share = resolve_share(cfg)
    return share > 0 and uniform(row["video_id"]) < share


def passthrough_table(row: dict, cfg) -> pa.Table:
    """The undecoded row a decode task emits for a video NVDEC will decode."""
    out = _status_row(row)
    out.update(kind=KIND_NVDEC, num_segments=None, decode_config=json.dumps(dataclasses.asdict(cfg)))
    return pa.Table.from_pylist([out], schema=decoded_schema())


def _decode_rows(row: dict, device, read) -> tuple[list[dict], list]:
    """One nvdec row -> (decoded_schema rows: clips then the status row, frames per row or None)."""
    from xclip_core.video import DecodeConfig
    from xclip_core.video.nvdec import decode_nvdec

    cfg = DecodeConfig(**json.loads(row[DECODE_CONFIG]))
    got = decode_nvdec(row["uri"], cfg.with_(backend="nvdec"), device=device, read=read)
    res = got.result
    rows, frames = [], []
    if res.status == STATUS_OK and res.clips:
        for clip in res.clips:
            if got.backend == "nvdec":  # frames stay on the GPU; the row carries their shape only
                r = _clip_row(row, dataclasses.replace(clip, frames=np.empty(0, np.uint8)))
                r.update({FRAMES: None, FRAMES_SHAPE: list(clip.frames.shape)})
                frames.append(clip.frames)
            else:
                r = _clip_row(row, clip)
                frames.append(None)
            rows.append(r)
    status = res.status if (res.status != STATUS_OK or rows) else STATUS_FAILED
    error = None if status == STATUS_OK else (res.reason or "no clips decoded")
    rows.append(_status_row(row, status=status, error=error, num_segments=len(rows), decode_s=res.decode_s,
                            decode_backend=got.backend, decode_fallback=got.note, **_meta_fields(res.meta)))
    frames.append(None)
    return rows, frames


def expand_nvdec_rows(batch: pa.Table, *, device, read=None,
                      threads: int = NVDEC_THREADS) -> tuple[pa.Table, list]:
    """Replace every ``kind="nvdec"`` row of a decoded batch by its video's rows
    (decoded here with the DecodeConfig the row carries). Returns the table and,
    aligned with its rows, the frames tensor of each NVDEC-decoded clip (None
    elsewhere: frames are in the bytes column). ``read``: see ``decode_nvdec`` (tests use a CPU reader)."""
    kinds = batch.column("kind").to_pylist()
    todo = [i for i, k in enumerate(kinds) if k == KIND_NVDEC]
    if not todo:
        return batch, [None] * batch.num_rows
    rows_in = {i: r for i, r in zip(todo, batch.take(todo).to_pylist())}  # only these: no frame bytes copied
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(todo)))) as pool:
        done = dict(zip(todo, pool.map(lambda i: _decode_rows(rows_in[i], device, read), todo)))
    schema = decoded_schema()
    parts, frames, start = [], [], 0
    for i in todo:  # the other rows are kept as slices of the batch
        if i > start:
            parts.append(batch.slice(start, i - start))
            frames.extend([None] * (i - start))
        parts.append(pa.Table.from_pylist(done[i][0], schema=schema))
        frames.extend(done[i][1])
        start = i + 1
    if start < batch.num_rows:
        parts.append(batch.slice(start))
        frames.extend([None] * (batch.num_rows - start))
    return pa.concat_tables([t.cast(schema) if t.schema != schema else t for t in parts]), frames
