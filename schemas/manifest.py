"""The run manifest written to ``<output>/runs/<run_id>.json`` (one per run).

Fields (JSON object):
    schema_version      str   ``schemas.output.SCHEMA_VERSION``
    run_id              str
    status              str   "running" (written at start) | "finished" | "failed" | "interrupted"
                              (set by the next run when a run died without finishing: jobs.resume)
    package_version     str   installed ``xclip-index`` version
    started_at, finished_at  str  ISO 8601 UTC
    inputs              list[str]  the ``--input`` arguments as given
    output              str
    num_inputs          int   videos listed (= sum of ``counts`` + ``num_unchanged``)
    num_unchanged       int   inputs kept as already indexed and unchanged (jobs.incremental)
    counts              {"ok", "failed", "skipped", "unchanged", "deleted": int}; ok + failed +
                        skipped + unchanged == num_inputs; deleted: videos gone from the source
    num_segments        int   segment rows written
    model_source        str   the ``--model`` argument
    model_id            str
    weights_sha256      str
    label_set           {"name": str, "sha256": str, "num_labels": int, "labels": [str]}
                        (``labels``, the set's labels, since schema "3": ``labels_match`` queries)
    decode_config       dict  the sampler/decode settings used
    config              dict  every stage config (reader, decoder, encoder, writer)
    stage_seconds       dict  seconds per stage (see ``jobs.runner``)
    clips_per_s         float
    tables              {"videos": {"version": int, "rows": int},
                         "segments": {...}}  LanceDB table versions after this run; with
                        writer.writers > 1 also "write_pool": {"writers", "tasks", "chunks",
                        "commits", "max_seen_in_flight", "wait_s", ...} (``xclip_store.pooled``)
    parquet_files       list[str]  Parquet files this run wrote
    num_partial         int   of ``counts["ok"]``, videos indexed from part of the file (their
                              ``videos.error`` starts with "partial: "; e.g. a truncated stream)
    error               str   why the run failed ("" when it did not)
    listing_errors      list[str]  folders/files the listing could not read (first 100); when any,
                              the run deleted nothing (jobs.deletions)

No field ever holds a credential: only URIs and settings the user passed.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from schemas.output import SCHEMA_VERSION


@dataclasses.dataclass(frozen=True)
class RunManifest:
    run_id: str
    package_version: str
    started_at: str
    finished_at: str
    inputs: list
    output: str
    num_inputs: int
    num_unchanged: int
    counts: dict
    num_segments: int
    model_source: str
    model_id: str
    weights_sha256: str
    label_set: dict
    decode_config: dict
    config: dict
    stage_seconds: dict
    clips_per_s: float
    tables: dict
    parquet_files: list
    status: str = "finished"
    schema_version: str = SCHEMA_VERSION
    num_partial: int = 0
    error: str = ""
    listing_errors: list = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> "RunManifest":
        d: dict[str, Any] = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = required - set(d)
        if missing:
            raise ValueError(f"run manifest lacks {sorted(missing)}")
        return cls(**{k: d[k] for k in names if k in d})
