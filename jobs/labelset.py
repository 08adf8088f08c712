"""One label set per index: which label set a ``run`` uses, and the check that it is the index's.

    cfg = resolve_labels(cfg)           # before the model check: --labels not given -> the index's set
    check_label_set(cfg, info)          # holding the output lease, before anything is written

Without ``--labels`` (``encoder.labels`` unset) a run on an existing output uses the label set the
output is labelled with now: the latest run or relabel manifest's label set (``runs/*.json``; a
relabel's ``label_set.source``, a run's ``config.encoder.labels``); a new output gets
``DEFAULT_LABELS``. A run whose label set (by content: sha256) is not the output's current one
refuses with one line (``ConfigError``, exit 2) naming the fix: ``xclip-index relabel`` changes the
label set of every stored video from its stored features, without decoding; then runs keep it.
Holding the lease, the check first finishes a relabel that was killed (``xclip_search.labelstate``),
so the set it compares with is the one readers will see.
"""
from __future__ import annotations

import dataclasses

from jobs.config import DEFAULT_LABELS, ConfigError, JobConfig


def current_label_set(output: str) -> dict | None:
    """The output's label set: ``{name, sha256, source, manifest}`` of the latest run or relabel, or
    None when no manifest names one (a new output)."""
    from xclip_search.index import IndexError_, read_manifests

    try:
        manifests = read_manifests(output)
    except (IndexError_, OSError, ValueError):
        return None
    labelled = [m for m in manifests if (m.get("label_set") or {}).get("sha256")]
    if not labelled:
        return None
    m = max(labelled, key=lambda m: (m.get("started_at") or "", m.get("finished_at") or ""))
    ls = m["label_set"]
    source = ls.get("source") if m.get("kind") == "relabel" else \
        (((m.get("config") or {}).get("encoder") or {}).get("labels"))
    return {"name": ls.get("name"), "sha256": ls["sha256"], "source": source or ls.get("name"),
            "manifest": m.get("run_id")}


def resolve_labels(cfg: JobConfig) -> JobConfig:
    """``cfg`` with ``encoder.labels`` set: as given, else the output's current label set, else
    ``DEFAULT_LABELS``."""
    if cfg.encoder.labels:
        return cfg
    current = current_label_set(cfg.writer.output)
    labels = current["source"] if current else DEFAULT_LABELS
    return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, labels=labels))


def check_label_set(cfg: JobConfig, info) -> None:
    """Raise ``ConfigError`` unless the run's label set (``info``: ``jobs.encoder.ModelInfo``) is the
    output's current one. Call while holding the output lease."""
    from xclip_search.labelstate import repair

    output = cfg.writer.output
    repair(output)
    current = current_label_set(output)
    if current is None or current["sha256"] == info.label_set_sha256:
        return
    raise ConfigError(
        f"--labels {cfg.encoder.labels}: the index at {output} is labelled with {current['name']}@"
        f"{current['sha256'][:12]} ({current['source']}, runs/{current['manifest']}.json), this run's set is "
        f"{info.label_set_name}@{info.label_set_sha256[:12]}; an index has one label set: relabel it first "
        f"(xclip-index relabel --index {output} --labels {cfg.encoder.labels}: from stored features, no "
        f"decoding) or run with --labels {current['source']}")
