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
run's labels. The write goes through ``xclip_search.labelstate.commit_relabel``: staged, announced in
``runs/<relabel_id>.json`` (``"kind": "relabel"``, ``"status": "running"``), committed, finished; readers
see one label set throughout, and a relabel killed half-way is finished by the next write command
(``labelstate.repair``). The manifest records the label set, its hash, the mode, counts and the
table versions before and after. The Parquet log gets label rows (``xclip_store.parquet_log.log_labels``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import numpy as np
import pyarrow as pa

from jobs.labeler import Labeler
from xclip_store import held, leased, migrate_table
from schemas import SEGMENTS_TABLE, STATUS_OK, VIDEOS_TABLE, SCHEMA_VERSION
from schemas.features import PROMPT_FEATURES_TABLE
from schemas.output import label_text
from xclip_search.labelstate import GUARD_COLUMN, LABEL_COLUMNS, commit_relabel, label_columns, repair

EXACT, APPROXIMATE = "exact", "approximate"


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


def _tokens_for(index, segment_ids: list[str]) -> np.ndarray | None:
    """[S, N, P] float32 stored visual tokens aligned with ``segment_ids``, or None unless all have them."""
    if PROMPT_FEATURES_TABLE not in index.table_names or not segment_ids:
        return None
    pf = index.table(PROMPT_FEATURES_TABLE).to_arrow().select(["segment_id", "visual_tokens", "num_tokens"])
    pos = dict(zip(pf.column("segment_id").to_pylist(), range(pf.num_rows)))
    if any(s not in pos for s in segment_ids):
        return None
    col = pf.column("visual_tokens").combine_chunks()
    flat = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1)
    n_tok = int(pf.column("num_tokens")[0].as_py())
    take = np.asarray([pos[s] for s in segment_ids])
    return flat[take].astype(np.float32).reshape(len(segment_ids), n_tok, -1)


@leased("relabel", uri_arg="uri")  # holds the output lease for the whole call (exit 7 while a run holds it)
def relabel(uri: str, labels: str, *, top_k: int | None = None, model: str | None = None,
            relabel_id: str | None = None, batch_size: int = 256, index=None) -> RelabelResult:
    """Relabel the index at ``uri`` with the label set ``labels`` (a built-in name or a file)."""
    import torch

    from xclip_core.labels import load_labels
    from xclip_core.scoring import ClipScorer, class_text_features
    from xclip_search.index import Index

    idx = index or Index(uri, model=model)
    started = dt.datetime.now(dt.timezone.utc)
    relabel_id = relabel_id or started.strftime("%Y%m%dT%H%M%SZ") + "-relabel-" + uuid.uuid4().hex[:6]
    enc_cfg = (idx.manifest.get("config") or {}).get("encoder") or {}
    top_k = int(top_k or enc_cfg.get("top_k") or 5)
    ls = load_labels(labels)
    label_set_id = f"{ls.name}@{ls.sha256[:12]}"
    text = class_text_features(idx.model, idx.tokenizer, ls.class_prompts(enc_cfg.get("prompt_template") or "{}"))
    scorer, labeler = ClipScorer(idx.model, text), Labeler(ls.labels, top_k)

    repair(uri)  # a relabel killed earlier is finished first (its label set, then this one)
    seg_tbl, vid_tbl = (_latest(idx, uri, n) for n in (SEGMENTS_TABLE, VIDEOS_TABLE))  # latest, not pinned
    migrate_table(seg_tbl, SEGMENTS_TABLE)  # an index written before a column was added
    migrate_table(vid_tbl, VIDEOS_TABLE)
    segs = seg_tbl.search().select(["segment_id", "video_id", "embedding", GUARD_COLUMN, *LABEL_COLUMNS]) \
        .limit(None).to_arrow()
    vids = vid_tbl.search().where(f"status = '{STATUS_OK}'") \
        .select(["video_id", GUARD_COLUMN, *LABEL_COLUMNS]).limit(None).to_arrow()
    ids = segs.column("segment_id").to_pylist()
    emb_col = segs.column("embedding").combine_chunks()
    emb = emb_col.values.to_numpy(zero_copy_only=False).reshape(len(emb_col), -1).astype(np.float32)
    tokens = _tokens_for(idx, ids)
    mode = EXACT if tokens is not None else APPROXIMATE
    probs = np.zeros((len(ids), len(ls)), np.float32)
    with torch.inference_mode():
        for i in range(0, len(ids), batch_size):
            v = torch.from_numpy(emb[i:i + batch_size])
            t = None if tokens is None else torch.from_numpy(tokens[i:i + batch_size])
            probs[i:i + batch_size] = scorer.probs(v, t).numpy()
    seg_labels, seg_scores = labeler(probs)
    n = segs.num_rows
    segs = _set(segs, "labels", pa.array(seg_labels, pa.list_(pa.string())))
    segs = _set(segs, "label_scores", pa.array(seg_scores, pa.list_(pa.float32())))
    segs = _set(segs, "label_text", label_text(segs.column("labels")))
    segs = _set(segs, "label_set", pa.array([label_set_id] * n, pa.string()))

    seg_vid = np.asarray(segs.column("video_id").to_pylist(), dtype=object)
    means, keep = [], []
    for j, vid in enumerate(vids.column("video_id").to_pylist()):
        mask = seg_vid == vid
        if mask.any():
            means.append(probs[mask].mean(axis=0))
            keep.append(j)
    vids = vids.take(pa.array(keep, pa.int64()))
    v_labels, v_scores = labeler(np.stack(means)) if means else ([], [])
    m = vids.num_rows
    vids = _set(vids, "labels", pa.array(v_labels, pa.list_(pa.string())))
    vids = _set(vids, "label_scores", pa.array(v_scores, pa.list_(pa.float32())))
    vids = _set(vids, "label_text", label_text(vids.column("labels")))
    vids = _set(vids, "label_set", pa.array([label_set_id] * m, pa.string()))
    keep_days = ((idx.manifest.get("config") or {}).get("writer") or {}).get("keep_versions_days", 7.0)
    manifest = {
        "kind": "relabel", "run_id": relabel_id, "schema_version": SCHEMA_VERSION,
        "started_at": started.isoformat(),
        "output": uri, "model_source": model or idx.manifest["model_source"], "model_id": idx.manifest["model_id"],
        "weights_sha256": idx.manifest.get("weights_sha256"), "config": idx.manifest.get("config"),
        "label_set": {"name": ls.name, "sha256": ls.sha256, "num_labels": len(ls), "source": str(labels),
                      "labels": list(ls.labels)},
        "mode": mode, "top_k": top_k, "num_segments": n, "num_videos": m}
    # label columns only, staged, announced, committed, then finished (xclip_search.labelstate)
    manifest, manifest_uri = commit_relabel(
        uri, {SEGMENTS_TABLE: seg_tbl, VIDEOS_TABLE: vid_tbl}, manifest,
        label_columns(segs, SEGMENTS_TABLE), label_columns(vids, VIDEOS_TABLE), keep_days=keep_days)
    return RelabelResult(relabel_id, mode, label_set_id, n, m, manifest_uri)


def _latest(idx, uri: str, name: str):
    """Table ``name`` at its latest version; under the relabel's lease a ``GuardedTable`` (every
    commit checks the lease first)."""
    owner = held(uri)
    return owner.table(name) if owner is not None else idx.db.open_table(name)


def _set(t: pa.Table, name: str, col: pa.Array) -> pa.Table:
    i = t.column_names.index(name)
    return t.set_column(i, t.schema.field(name), col.cast(t.schema.field(name).type))

