"""Incremental reindex: which listed inputs are already indexed, unchanged.

With ``writer.skip_unchanged`` (``--skip-unchanged``) a nightly rerun only
decodes and encodes what is new or changed. An input is *unchanged* when the
output's ``videos`` table already holds an ``ok`` row for its ``video_id`` with

  * the same model (``model_id``: name and sha256 of the weights) and label set
    (``label_set``: name and sha256 of the labels), and
  * the same source fingerprint: equal ``source_size`` and, when both sides have
    one, equal ``source_etag`` (S3), else equal ``source_mtime`` (local files).

Everything else runs: new inputs, changed files, and earlier ``failed`` or
``skipped`` rows (failures are retried every run). Inputs without a
fingerprint (manifest entries, which are not stat'ed at listing) always run.
Unchanged inputs keep their existing row, so every listed input still has
exactly one ``videos`` row. Sampler settings are not compared: rerun without
the flag after changing them. A run that died midway resumes the same way:
its committed chunks are skipped.
"""
from __future__ import annotations

import pyarrow as pa


def changed_mask(inputs: pa.Table, indexed: pa.Table, *, model_id: str, label_set: str) -> list[bool]:
    """True for each row of ``inputs`` (``schemas.stream.INPUT_SCHEMA``) that must
    be processed; ``indexed`` holds the output's existing ``ok`` videos rows
    (video_id, model_id, label_set and the fingerprint columns)."""
    known = {}
    for r in indexed.to_pylist():
        if r["model_id"] == model_id and r["label_set"] == label_set:
            known[r["video_id"]] = r
    keep = []
    for r in inputs.to_pylist():
        old = known.get(r["video_id"])
        keep.append(old is None or not _same_source(r, old))
    return keep


def _same_source(new: dict, old: dict) -> bool:
    if new["source_size"] is None or new["source_size"] != old["source_size"]:
        return False
    if new["source_etag"] and old["source_etag"]:
        return new["source_etag"] == old["source_etag"]
    return new["source_mtime"] is not None and new["source_mtime"] == old["source_mtime"]
