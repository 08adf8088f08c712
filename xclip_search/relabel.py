"""``relabel(uri, labels)``: new ``labels`` / ``label_scores`` for every segment and video, from stored data.

No decoding and no vision tower: only the text tower runs (the new label set, once).

    exact        when every segment has stored prompt features (``--store-prompt-features``):
                 ``ClipScorer.probs(segment embedding, visual tokens)``, the job's own rule, in fp32.
                 Bound: within 1e-4 in probability, same top-k, of a fresh **fp32** run with the new
                 labels (the run scores the same fp16-rounded tokens it stores; measured <= 2e-6 on
                 tiny/demo/base-patch32 checkpoints at logit scale 100, bench/RESULTS.md "Exact
                 relabel"). Not of a bf16 run (the CUDA default): its own probabilities carry bf16
                 rounding (measured 2.8e-3 to 7.4e-2), and relabel gives the fp32 labels instead.
    approximate  otherwise: ``ClipScorer.probs(segment embedding, None)`` (no video-specific
                 prompting; see ``xclip_core.scoring``)

Video labels are the top-k of the mean of its segments' probabilities (as in the job:
``jobs.assembler``). Only the label columns of the LanceDB ``segments`` and ``videos`` tables are
written (``labels``, ``label_scores``, ``label_text``, ``label_set``): embeddings, ``run_id``,
``source_size``... are never rewritten, and a row a run rewrote after the relabel read it keeps that
run's labels. It streams (``xclip_search.relabel_tasks`` on Ray, ``jobs.fragment_map``): one task per
fragment, per-video sums reduced in ``video_id`` partitions; the driver holds no rows. The write goes
through ``xclip_search.labelstate.commit_staged``: staged, announced in
``runs/<relabel_id>.json`` (``"kind": "relabel"``, ``"status": "running"``), committed, finished; readers
see one label set throughout, and a relabel killed half-way is finished by the next write command
(``labelstate.repair``). The manifest records the label set, its hash, the mode, counts and the
table versions before and after. The Parquet log gets label rows (``xclip_store.parquet_log.log_labels``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
import uuid

from jobs.fragment_map import FragmentMap
from jobs.labeler import Labeler
from schemas import SEGMENTS_TABLE, VIDEOS_TABLE, SCHEMA_VERSION
from schemas.features import PROMPT_FEATURES_TABLE
from xclip_core import storage
from xclip_search.labelstate import commit_staged, repair
from xclip_search.relabel_tasks import LabelJob, label_segments, label_video_part, label_videos
from xclip_store import held, leased, migrate_table
from xclip_store.label_commit import dataset, merge_staged

EXACT, APPROXIMATE = "exact", "approximate"
VIDEOS_PER_PART = 100_000  # per-video partial sums are reduced in partitions of at most this many videos
PART_SUM_BYTES = 64 * 2**20  # ... and of at most this many bytes of float64 sums (videos x labels x 8)


def video_partitions(num_videos: int, num_labels: int) -> int:
    """How many partitions the per-video sums are reduced in: each holds at most ``VIDEOS_PER_PART``
    videos and ``PART_SUM_BYTES`` of sums, so a reduce task's memory does not follow the table."""
    per = max(1, min(VIDEOS_PER_PART, PART_SUM_BYTES // (8 * max(1, num_labels))))
    return max(1, math.ceil(num_videos / per))


@dataclasses.dataclass(frozen=True)
class RelabelResult:
    relabel_id: str
    mode: str
    label_set: str
    num_segments: int
    num_videos: int
    manifest_uri: str

    def format(self) -> str:
        return (f"relabel {self.relabel_id}: {self.mode} mode, label set {self.label_set}: "
                f"{self.num_segments} segments, {self.num_videos} videos\nmanifest: {self.manifest_uri}")


@leased("relabel", uri_arg="uri")  # holds the output lease for the whole call (exit 7 while a run holds it)
def relabel(uri: str, labels: str, *, top_k: int | None = None, model: str | None = None,
            relabel_id: str | None = None, batch_size: int = 2048, index=None,
            use_ray: bool | None = None) -> RelabelResult:
    """Relabel the index at ``uri`` with the label set ``labels`` (a built-in name or a file).
    ``use_ray``: None decides by table size (``jobs.fragment_map``)."""
    from xclip_core.labels import load_labels
    from xclip_core.scoring import ClipScorer, ScaleOnly, class_text_features
    from xclip_search.index import Index

    idx = index or Index(uri, model=model)
    started = dt.datetime.now(dt.timezone.utc)
    relabel_id = relabel_id or started.strftime("%Y%m%dT%H%M%SZ") + "-relabel-" + uuid.uuid4().hex[:6]
    enc_cfg = (idx.manifest.get("config") or {}).get("encoder") or {}
    top_k = int(top_k or enc_cfg.get("top_k") or 5)
    ls = load_labels(labels)
    label_set_id = f"{ls.name}@{ls.sha256[:12]}"
    Labeler(ls.labels, top_k)  # a bad --top-k fails here, before any work
    text = class_text_features(idx.model, idx.tokenizer, ls.class_prompts(enc_cfg.get("prompt_template") or "{}"))

    repair(uri)  # a relabel killed earlier is finished first (its label set, then this one)
    seg_tbl, vid_tbl = (_latest(idx, uri, n) for n in (SEGMENTS_TABLE, VIDEOS_TABLE))  # latest, not pinned
    migrate_table(seg_tbl, SEGMENTS_TABLE)  # an index written before a column was added
    migrate_table(vid_tbl, VIDEOS_TABLE)
    db_uri, opts = storage.join(uri, "lancedb"), storage.lancedb_storage_options(uri)
    seg_ds, vid_ds = (dataset(db_uri, n, storage_options=opts) for n in (SEGMENTS_TABLE, VIDEOS_TABLE))
    versions = {SEGMENTS_TABLE: int(seg_ds.version), VIDEOS_TABLE: int(vid_ds.version)}
    num_segments = seg_ds.count_rows()
    exact = PROMPT_FEATURES_TABLE in idx.table_names and num_segments > 0
    if exact:
        pf = dataset(db_uri, PROMPT_FEATURES_TABLE, storage_options=opts)
        versions[PROMPT_FEATURES_TABLE] = int(pf.version)
        exact = pf.count_rows() >= num_segments  # each task checks its segments' tokens too
    parts = video_partitions(vid_ds.count_rows(), len(ls.labels))
    stage = storage.join(uri, f"runs/{relabel_id}-labels")
    job = LabelJob(db_uri, opts, stage, versions, tuple(ls.labels), top_k, label_set_id, parts, exact,
                   ClipScorer(idx.model if exact else ScaleOnly(idx.model), text), batch_size, relabel_id)
    t0 = time.perf_counter()
    seconds = {}
    with FragmentMap.start(rows=num_segments, use_ray=use_ray) as fmap:
        seconds["start"] = time.perf_counter() - t0
        seg_parts = _run(fmap, label_segments, [f.fragment_id for f in seg_ds.get_fragments()], job)
        if seg_parts is None:  # a segment without stored tokens: approximate for all, as one label set
            job = dataclasses.replace(job, exact=False, scorer=ClipScorer(ScaleOnly(idx.model), text),
                                      stage=storage.join(uri, f"runs/{relabel_id}-labels/approximate"))
            seg_parts = _run(fmap, label_segments, [f.fragment_id for f in seg_ds.get_fragments()], job)
        seconds["segments"] = time.perf_counter() - t0 - seconds["start"]
        list(fmap.map(label_video_part, range(parts), job))
        vid_parts = _run(fmap, label_videos, [f.fragment_id for f in vid_ds.get_fragments()], job)
        seconds["videos"] = time.perf_counter() - t0 - seconds["start"] - seconds["segments"]
    n, m = sum(r["rows"] for r in seg_parts), sum(r["rows"] for r in vid_parts)
    mode = EXACT if job.exact else APPROXIMATE
    keep_days = ((idx.manifest.get("config") or {}).get("writer") or {}).get("keep_versions_days", 7.0)
    manifest = {
        "kind": "relabel", "run_id": relabel_id, "schema_version": SCHEMA_VERSION,
        "started_at": started.isoformat(),
        "output": uri, "model_source": model or idx.manifest["model_source"], "model_id": idx.manifest["model_id"],
        "weights_sha256": idx.manifest.get("weights_sha256"), "config": idx.manifest.get("config"),
        "label_set": {"name": ls.name, "sha256": ls.sha256, "num_labels": len(ls), "source": str(labels),
                      "labels": list(ls.labels)},
        "mode": mode, "top_k": top_k, "num_segments": n, "num_videos": m, "video_partitions": parts,
        "seconds": {k: round(v, 3) for k, v in seconds.items()}}
    staged = {name: {"columns": (merge_staged((r["read_version"], r["meta"], r["fields"]) for r in rs if "meta" in r)),
                     "log": sorted(r["log"] for r in rs if r.get("log"))}
              for name, rs in ((SEGMENTS_TABLE, seg_parts), (VIDEOS_TABLE, vid_parts))}
    # label columns only, staged, announced, committed, then finished (xclip_search.labelstate)
    manifest, manifest_uri = commit_staged(uri, {SEGMENTS_TABLE: seg_tbl, VIDEOS_TABLE: vid_tbl}, manifest,
                                           staged, keep_days=keep_days)
    return RelabelResult(relabel_id, mode, label_set_id, n, m, manifest_uri)


def _run(fmap, task, fragments: list[int], job) -> list[dict] | None:
    """Every fragment's result; None when a task found a segment without stored tokens."""
    out = []
    for r in fmap.map(task, fragments, job):
        if r.get("missing_tokens"):
            return None
        out.append(r)
    return out


def _latest(idx, uri: str, name: str):
    """Table ``name`` at its latest version; under the relabel's lease a ``GuardedTable`` (every
    commit checks the lease first)."""
    owner = held(uri)
    return owner.table(name) if owner is not None else idx.db.open_table(name)



