"""``xclip-index moderate``: recompute every decision of an index from its stored features,
without decoding (a policy change must not cost a re-decode).

    from moderation.recompute import moderate
    result = moderate("s3://bucket/index", "policy.yaml", review_out="s3://bucket/review.jsonl")

The model is the one named by the index's latest run manifest (``runs/*.json``,
``model_source``); it must be the model that wrote the segments (``model_id``). Per segment:

  exact        the ``prompt_features`` table (``schemas.features``) holds the segment's visual
               tokens: X-CLIP's own prompted logits, as at encode time (tokens stored as float16)
  approximate  only the stored clip embedding: ``logit_scale * cosine`` (``xclip_core.scoring``)

``result.mode`` says which ran: ``exact``, ``approximate`` or ``mixed``; each row's
``score_mode`` says it per video. Videos that are not ``ok`` in ``videos`` get ``error``.
With ``blocklist``, known-bad matching uses the stored ``frame_hashes`` (written by runs with
``--blocklist``); ``result.unhashed`` counts ok videos without stored hashes (not matched).
The rows are upserted into the ``moderation`` table under a new run id; the run writes
``runs/<run_id>-moderation.html`` (cumulative, after review) and ``runs/<run_id>.json``
(``"kind": "moderate"``: policy, mode, counts, report).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json

import numpy as np

from moderation.collector import decision_row, rows_table, video_decision
from moderation.blocklist import match
from moderation.decide import Clip, with_matches
from moderation.policy import load_policy
from moderation.report import moderate_manifest, write_outputs
from moderation.store import write_decisions, write_text
from schemas.features import PROMPT_FEATURES_TABLE
from schemas.manifest import RunManifest
from schemas.moderation import FRAME_HASHES_TABLE
from schemas.output import SEGMENTS_TABLE, VIDEOS_TABLE
from schemas.sql import sql_list
from xclip_core import storage
from xclip_core.scoring import APPROXIMATE, EXACT

VIDEOS_PER_QUERY = 256


class ModerateError(RuntimeError):
    """The index cannot be moderated (no manifest, no tables, another model); says the fix."""


@dataclasses.dataclass(frozen=True)
class ModerateResult:
    run_id: str
    mode: str               # exact | approximate | mixed
    counts: dict            # decision -> videos
    table: dict             # write_decisions() result
    rows: list
    review_items: int | None = None
    unhashed: int = 0

    def format(self) -> str:
        c = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        return f"moderate {self.run_id}: {len(self.rows)} videos ({c}); scores: {self.mode}"


def latest_manifest(index: str) -> RunManifest:
    """The latest finished indexing run's manifest (relabel entries in runs/ are not runs)."""
    from xclip_search.index import IndexError_, latest_finished, read_manifests

    try:
        runs = [m for m in read_manifests(index) if m.get("kind", "run") == "run"]
        return RunManifest.from_json(json.dumps(latest_finished(runs, index)))
    except IndexError_ as e:
        raise ModerateError(f"--index {index}: {e}; index videos first (xclip-index run --output {index})") \
            from None


def moderate(index: str, policy: str, *, review_out: str | None = None, run_id: str | None = None,
             blocklist: str | None = None, device: str = "cpu") -> ModerateResult:
    """Recompute decisions for every video of ``index`` under ``policy`` (see module doc)."""
    import lancedb
    import torch

    from jobs.runner import make_run_id
    from xclip_core.loading import resolve_checkpoint
    from xclip_core.model import XCLIP
    from xclip_core.scoring import ClipScorer, class_text_features
    from xclip_core.tokenizer import CLIPTokenizer

    pol = load_policy(policy)
    started = dt.datetime.now(dt.timezone.utc)
    manifest = latest_manifest(index)
    run_id = run_id or ("moderate-" + make_run_id())
    db = lancedb.connect(storage.join(index, "lancedb"), storage_options=storage.lancedb_storage_options(index))
    names = set(db.list_tables().tables)
    if not {VIDEOS_TABLE, SEGMENTS_TABLE} <= names:
        raise ModerateError(f"--index {index}: no videos/segments tables; is it an xclip-index output?")
    videos_tbl, segments_tbl = db.open_table(VIDEOS_TABLE), db.open_table(SEGMENTS_TABLE)
    features_tbl = db.open_table(PROMPT_FEATURES_TABLE) if PROMPT_FEATURES_TABLE in names else None
    items = _blocklist(blocklist, manifest) if blocklist else None
    hashes_tbl = db.open_table(FRAME_HASHES_TABLE) if items is not None and FRAME_HASHES_TABLE in names else None
    unhashed = 0
    other = segments_tbl.search().where(f"model_id != '{manifest.model_id}'").select(["model_id"]).limit(1) \
        .to_arrow()
    if other.num_rows:
        raise ModerateError(f"--index {index}: segments were written by {other.column(0)[0].as_py()}, not by "
                            f"the latest run's model {manifest.model_id}; reindex with one model first")

    try:
        local = resolve_checkpoint(manifest.model_source)
        model = XCLIP.from_pretrained(local, device=torch.device(device))
        tokenizer = CLIPTokenizer.from_pretrained(local)
    except (OSError, ValueError, KeyError) as e:
        raise ModerateError(f"--index {index}: cannot load the model of run {manifest.run_id} "
                            f"({manifest.model_source}: {type(e).__name__}: {e}); it must still be readable "
                            "from where the run read it") from None
    text = class_text_features(model, tokenizer, pol.class_prompts)
    scorer = ClipScorer(model, text)
    dim = int(model.config.projection_dim)

    videos = videos_tbl.search().select(["video_id", "uri", "status", "error", "duration_s"]).limit(None) \
        .to_arrow().to_pylist()
    rows, modes = [], set()
    for i in range(0, len(videos), VIDEOS_PER_QUERY):
        chunk = videos[i:i + VIDEOS_PER_QUERY]
        where = f"video_id IN ({sql_list(v['video_id'] for v in chunk)})"
        segs = segments_tbl.search().where(where).select(["segment_id", "video_id", "start_s", "end_s",
                                                          "embedding"]).limit(None).to_arrow().to_pylist()
        tokens = {}
        if features_tbl is not None and segs:
            for r in features_tbl.search().where(where).select(["segment_id", "visual_tokens", "num_tokens"]) \
                    .limit(None).to_arrow().to_pylist():
                tokens[r["segment_id"]] = np.asarray(r["visual_tokens"], np.float32).reshape(r["num_tokens"], dim)
        probs = {}
        with torch.inference_mode():
            exact = [s for s in segs if s["segment_id"] in tokens]
            approx = [s for s in segs if s["segment_id"] not in tokens]
            if exact:
                emb = torch.tensor(np.asarray([s["embedding"] for s in exact], np.float32))
                tok = torch.from_numpy(np.stack([tokens[s["segment_id"]] for s in exact]))
                probs.update(zip((s["segment_id"] for s in exact), scorer.probs(emb, tok).numpy()))
            if approx:
                emb = torch.tensor(np.asarray([s["embedding"] for s in approx], np.float32))
                probs.update(zip((s["segment_id"] for s in approx), scorer.probs(emb, None).numpy()))
        stored = {}
        if hashes_tbl is not None:
            stored = {r["video_id"]: r for r in hashes_tbl.search().where(where).select(["video_id", "times", "hashes"])
                      .limit(None).to_arrow().to_pylist()}
        by_video: dict[str, list] = {}
        for s in segs:
            by_video.setdefault(s["video_id"], []).append(s)
        for v in chunk:
            vs = sorted(by_video.get(v["video_id"], []), key=lambda s: s["start_s"])
            d = video_decision(pol, [Clip(s["start_s"], s["end_s"], probs[s["segment_id"]]) for s in vs], v)
            if items is not None and d.decision != "error":
                h = stored.get(v["video_id"])
                if h is None or not h["hashes"]:
                    unhashed += 1
                else:
                    hs = np.frombuffer(b"".join(h["hashes"]), np.uint8).reshape(len(h["hashes"]), -1)
                    d = with_matches(d, match(np.asarray(h["times"]), hs, items))
            kinds = {EXACT if s["segment_id"] in tokens else APPROXIMATE for s in vs}
            mode = None if d.decision == "error" else (kinds.pop() if len(kinds) == 1 else "mixed")
            modes.add(mode)
            rows.append(decision_row(d, video_id=v["video_id"], uri=v["uri"], policy=pol,
                                     model_id=manifest.model_id, run_id=run_id, score_mode=mode))
    modes.discard(None)
    mode = modes.pop() if len(modes) == 1 else ("mixed" if modes else "none")
    table = write_decisions(index, run_id, rows_table(rows))
    done = write_outputs(index, run_id, rows, pol, review_out=review_out)  # cumulative report and queue
    counts: dict = {}
    for r in rows:
        counts[r["decision"]] = counts.get(r["decision"], 0) + 1
    result = ModerateResult(run_id=run_id, mode=mode, counts=counts, table=table, rows=rows,
                            review_items=done.get("review_items"), unhashed=unhashed)
    write_text(storage.join(index, f"runs/{run_id}.json"), moderate_manifest(result, pol, started, done))
    return result


def _blocklist(uri: str, manifest: RunManifest):
    """Blocklist items; videos in it are decoded with the index's own decode settings."""
    from moderation.blocklist import BlocklistError, load_blocklist
    from xclip_core.video import DecodeConfig

    try:
        return load_blocklist(uri, DecodeConfig(**manifest.decode_config))
    except BlocklistError as e:
        raise ModerateError(str(e)) from None


def result_json(result: ModerateResult) -> str:
    return json.dumps({"run_id": result.run_id, "mode": result.mode, "counts": result.counts,
                       "review_items": result.review_items, "table": result.table})
