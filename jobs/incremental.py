"""Incremental reindex (the default): what to process, what to keep, what to delete.

A rerun into the same ``--output`` only decodes and encodes what is new or
changed (``--full`` processes everything). An input is *unchanged* when the
output's ``videos`` table already holds an ``ok`` row for its ``video_id`` with

  * the same processing identity (``processing_id``, :func:`processing_id`): a
    hash of the model weights, the label set, the sampler/decode settings (the segmentation mode
    included: ``segments = "shots"`` and its knobs; a ``fixed`` identity is unchanged from before), the
    precision, the prompt template and the rows version (``schemas.output.ROWS_VERSION``):
    changing any of them reprocesses every video, and
  * the same source fingerprint: equal ``source_size`` and, when both sides have
    one, equal ``source_etag`` (S3), else equal ``source_mtime`` (local files).

Everything else runs: new inputs, changed files, and earlier ``failed``,
``skipped`` or ``indexing`` rows (failures are retried every run). Inputs
without a fingerprint (manifest entries, which are not stat'ed at listing)
always run. Unchanged inputs keep their row, so every listed input still has
exactly one ``videos`` row. A run that died midway resumes the same way: its
committed chunks are unchanged, the rest runs.

Deletions. A video that is gone from the source leaves the index (its videos
row, segments and side-table rows; or, with ``writer.on_deleted = "mark"``, its
videos row stays with ``status = 'deleted'``). Only rows in the run's *deletion
scope* can go: rows whose ``uri`` lies under one of the run's folder or prefix
inputs (``s3://bucket/prefix/`` with its trailing slash, or a local folder) and
that pass the run's include/exclude globs and extensions. Manifest and
single-file inputs give no scope (a manifest may list a subset), so a run over
another prefix or a manifest never deletes anything else.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os

import pyarrow as pa

from schemas import STATUS_OK, normalize_uri
from schemas.output import ROWS_VERSION, STATUS_DELETED
from xclip_core import storage
from xclip_core.video.config import decode_identity


def processing_id(info, dcfg, encoder_cfg, *, outputs: dict | None = None) -> str:
    """sha256 (16 hex) of everything but the source that decides a video's rows. ``outputs``: what
    else the run writes per video (side tables, a moderation policy's hash, a blocklist), so turning
    one on (or changing the policy) reprocesses videos instead of leaving them without those rows;
    recomputing decisions for a new policy without decoding is ``xclip-index moderate``. The label set
    is not part of it: an output has one label set (``jobs.labelset``: a run with another one refuses)
    and ``xclip-index relabel`` changes it for every stored video without decoding."""
    identity = {"weights_sha256": info.weights_sha256,
                "decode": decode_identity(dcfg), "precision": encoder_cfg.precision,
                "prompt_template": encoder_cfg.prompt_template, "top_k": encoder_cfg.top_k,
                "schema_version": ROWS_VERSION, **(outputs or {})}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def changed_mask(inputs: pa.Table, indexed: pa.Table, *, processing_id: str) -> list[bool]:
    """True for each row of ``inputs`` (``schemas.stream.INPUT_SCHEMA``) that must be processed;
    ``indexed`` holds the output's existing videos rows (at least video_id, status, processing_id and
    the fingerprint columns)."""
    known = {r["video_id"]: r for r in indexed.to_pylist()
             if r["status"] == STATUS_OK and r["processing_id"] == processing_id}
    return [known.get(r["video_id"]) is None or not _same_source(r, known[r["video_id"]])
            for r in inputs.to_pylist()]


def _same_source(new: dict, old: dict) -> bool:
    if new["source_size"] is None or new["source_size"] != old["source_size"]:
        return False
    if new["source_etag"] and old["source_etag"]:
        return new["source_etag"] == old["source_etag"]
    return new["source_mtime"] is not None and new["source_mtime"] == old["source_mtime"]


def deletion_prefixes(reader_cfg) -> list[str]:
    """The folder/prefix inputs of a run, as normalised URI prefixes ending in '/'."""
    out = []
    for uri in reader_cfg.inputs:
        uri = str(uri)
        if storage.is_s3(uri):
            if uri.endswith("/"):
                out.append(normalize_uri(uri))
        else:
            path = uri[len("file://"):] if uri.startswith("file://") else uri
            if os.path.isdir(path):
                out.append(normalize_uri(path).rstrip("/") + "/")
    return out


def gone_videos(indexed: pa.Table, inputs: pa.Table, reader_cfg) -> list[str]:
    """video_ids of indexed rows in the run's deletion scope that the run did not list."""
    prefixes = deletion_prefixes(reader_cfg)
    if not prefixes:
        return []
    listed = set(inputs.column("video_id").to_pylist())
    exts = tuple(reader_cfg.extensions)
    gone = []
    for vid, uri, status in zip(indexed.column("video_id").to_pylist(), indexed.column("uri").to_pylist(),
                                indexed.column("status").to_pylist()):
        if vid in listed or status == STATUS_DELETED or not uri.startswith(tuple(prefixes)):
            continue
        name = uri.rsplit("/", 1)[-1]
        if "." not in name or name.rsplit(".", 1)[-1].lower() not in exts:
            continue
        if reader_cfg.include and not any(fnmatch.fnmatchcase(uri, g) for g in reader_cfg.include):
            continue
        if any(fnmatch.fnmatchcase(uri, g) for g in reader_cfg.exclude):
            continue
        gone.append(vid)
    return gone
