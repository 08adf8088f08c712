"""The tasks of ``xclip-index moderate`` (``moderation.recompute``), streamed over the tables'
fragments on Ray (``jobs.fragment_map``); each returns a small result, never a table.

1. ``score_segments`` (one per ``segments`` fragment): its clips in batches, scored exact where the
   ``prompt_features`` table holds the clip's visual tokens, else approximate (as before, per
   segment); ``(video_id, start_s, end_s, probs, exact)`` rows hash-partitioned by ``video_id``
   under ``<stage>/clips/p<k>/``.
2. ``video_rows`` (one per ``videos`` fragment): the rows a decision needs (``uri``, ``status``,
   ``error``, ``duration_s``, ``shots``), partitioned the same way under ``<stage>/videos/p<k>/``.
3. ``decide_part`` (one per partition): groups the partition's clips by video and decides each of
   its videos (``moderation.collector.video_decision``), with known-bad matching of the stored
   per-second PDQ (``--blocklist``) or the video's earlier matches, looked up for the partition's
   videos only (the blocklist's index stays in the driver: ``finish_part`` matches each partition's
   ok videos there). Returns the partition's decisions (one small record per video).

With ``--blocklist``, first ``hashed_ids`` (per ``frame_pdq`` fragment) and ``unhashed`` (per
partition) count the ok videos without stored hashes (``moderation.recompute`` refuses them).

Memory per task: one batch of embeddings/tokens; one partition's clips (about ``VIDEOS_PER_PART``
videos). The driver holds one partition's decision rows at a time (``moderation.recompute``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from moderation.collector import decision_row, video_decision
from moderation.decide import Clip, with_matches
from schemas.features import PROMPT_FEATURES_TABLE
from schemas.moderation import FRAME_PDQ_TABLE, MODERATION_TABLE
from schemas.output import SEGMENTS_TABLE, STATUS_DELETED, STATUS_OK, VIDEOS_TABLE
from schemas.sql import sql_list
from xclip_core import storage
from xclip_core.scoring import APPROXIMATE, EXACT
from xclip_search.relabel_tasks import list_parquet, matrix, part_of, read_parquet, tokens_found, write_parquet
from xclip_store.label_commit import dataset

VIDEOS_PER_PART = 20_000
VIDEOS_PER_QUERY = 256
VIDEO_COLUMNS = ("video_id", "uri", "status", "error", "duration_s")


@dataclasses.dataclass(frozen=True)
class ModerateJob:
    db_uri: str
    storage_options: dict
    stage: str
    versions: dict          # table name -> version read (tables present only)
    parts: int
    policy: object          # moderation.policy.Policy
    scorer: object          # xclip_core.scoring.ClipScorer (the full model when features exist)
    model_id: str
    run_id: str
    keep_earlier: bool = False
    batch_rows: int = 2048

    def ds(self, name: str):
        return dataset(self.db_uri, name, version=self.versions[name], storage_options=self.storage_options)


def _spill(job: ModerateJob, kind: str, fid: int, table: pa.Table) -> None:
    parts = part_of(table.column("video_id").to_pylist(), job.parts)
    for p in np.unique(parts):
        write_parquet(storage.join(job.stage, f"{kind}/p{int(p):05d}/f{fid:08d}.parquet"),
                      table.filter(pa.array(parts == p)))


def score_segments(job: ModerateJob, fid: int) -> dict:
    import torch

    pf = job.ds(PROMPT_FEATURES_TABLE) if PROMPT_FEATURES_TABLE in job.versions else None
    out = []
    for batch in job.ds(SEGMENTS_TABLE).get_fragment(fid).to_batches(
            columns=["segment_id", "video_id", "start_s", "end_s", "embedding"], batch_size=job.batch_rows,
            batch_readahead=2):
        emb = torch.from_numpy(matrix(batch.column("embedding")))
        probs = np.zeros((batch.num_rows, job.policy.num_classes), np.float32)
        found = np.zeros(batch.num_rows, bool)
        with torch.inference_mode():
            if pf is not None:
                found, tok = tokens_found(pf, batch.column("segment_id").to_pylist())
                if found.any():
                    probs[found] = job.scorer.probs(emb[torch.from_numpy(found)], torch.from_numpy(tok)).numpy()
            if not found.all():
                rest = torch.from_numpy(~found)
                probs[~found] = job.scorer.probs(emb[rest], None).numpy()
        out.append(pa.table({"video_id": batch.column("video_id"), "start_s": batch.column("start_s"),
                             "end_s": batch.column("end_s"), "exact": pa.array(found),
                             "probs": pa.FixedSizeListArray.from_arrays(pa.array(probs.reshape(-1)),
                                                                        job.policy.num_classes)}))
    if out:
        _spill(job, "clips", fid, pa.concat_tables(out))
    return {"fragment": fid}


def video_rows(job: ModerateJob, fid: int) -> dict:
    frag = job.ds(VIDEOS_TABLE).get_fragment(fid)
    cols = [*VIDEO_COLUMNS, *(["shots"] if "shots" in frag.schema.names else [])]  # schema "4" (moderation.snap)
    t = frag.to_table(columns=cols)
    if t.num_rows:
        _spill(job, "videos", fid, t)
    return {"fragment": fid, "videos": t.num_rows}


def hashed_ids(job: ModerateJob, fid: int) -> dict:
    """``--blocklist`` check, step 1 (one per ``frame_pdq`` fragment): its video ids, partitioned
    like the videos (``<stage>/hashed/p<k>/``)."""
    t = job.ds(FRAME_PDQ_TABLE).get_fragment(fid).to_table(columns=["video_id"])
    if t.num_rows:
        _spill(job, "hashed", fid, t)
    return {"fragment": fid}


def unhashed(job: ModerateJob, part: int) -> dict:
    """``--blocklist`` check, step 2 (one per partition, after ``video_rows`` and ``hashed_ids``): how
    many of its ok videos have no stored frame hashes (``{"ok", "missing"}``)."""
    def ids(kind: str, columns: list[str]) -> pa.Table | None:
        files = list_parquet(storage.join(job.stage, f"{kind}/p{part:05d}"))
        return pa.concat_tables([read_parquet(f).select(columns) for f in files]) if files else None

    videos = ids("videos", ["video_id", "status"])
    if videos is None:
        return {"part": part, "ok": 0, "missing": 0}
    ok = {v for v, s in zip(videos.column("video_id").to_pylist(), videos.column("status").to_pylist())
          if s == STATUS_OK}
    hashed = ids("hashed", ["video_id"])
    missing = ok - set(hashed.column("video_id").to_pylist() if hashed is not None else [])
    return {"part": part, "ok": len(ok), "missing": len(missing)}


def _lookup(job: ModerateJob, name: str, ids: list[str], columns: list[str]) -> dict:
    """video_id -> row of table ``name`` for ``ids`` (``VIDEOS_PER_QUERY`` ids a query)."""
    out = {}
    ds = job.ds(name)
    for i in range(0, len(ids), VIDEOS_PER_QUERY):
        where = f"video_id IN ({sql_list(ids[i:i + VIDEOS_PER_QUERY])})"
        out.update((r["video_id"], r) for r in ds.to_table(columns=["video_id", *columns], filter=where).to_pylist())
    return out


def decide_part(job: ModerateJob, part: int) -> dict:
    """Task 3 (module doc) without the blocklist (its index stays in the driver: ``finish_part``)."""
    files = list_parquet(storage.join(job.stage, f"videos/p{part:05d}"))
    if not files:
        return {"part": part, "decided": [], "kept": 0}
    videos = pa.concat_tables([read_parquet(f) for f in files]).to_pylist()
    clip_files = list_parquet(storage.join(job.stage, f"clips/p{part:05d}"))
    by_video: dict[str, list] = {}
    if clip_files:
        clips = pa.concat_tables([read_parquet(f) for f in clip_files])
        probs = matrix(clips.column("probs"))
        for j, (v, s, e, x) in enumerate(zip(*(clips.column(c).to_pylist()
                                                for c in ("video_id", "start_s", "end_s", "exact")))):
            by_video.setdefault(v, []).append((s, e, x, j))
    ids = [v["video_id"] for v in videos]
    earlier = {k: found for k, r in _lookup(job, MODERATION_TABLE, ids, ["flags", "evidence"]).items()
               if (found := earlier_matches(r))} if job.keep_earlier and MODERATION_TABLE in job.versions else {}
    decided, kept = [], 0
    for v in videos:
        vs = sorted(by_video.get(v["video_id"], []))
        d = video_decision(job.policy, [Clip(s, e, probs[j]) for s, e, _, j in vs], v)
        if v["video_id"] in earlier and d.decision != "error":
            d = with_matches(d, earlier[v["video_id"]])
            kept += 1
        kinds = tuple(sorted({EXACT if x else APPROXIMATE for _, _, x, _ in vs}))
        decided.append((v["video_id"], v["uri"], d, kinds, v["status"]))
    return {"part": part, "decided": decided, "kept": kept}


def finish_part(job: ModerateJob, res: dict, items=None) -> tuple[list[dict], int]:
    """Driver side of a partition: known-bad matching of its ok videos' stored PDQ against ``items``
    (``--blocklist``), then its decision rows; returns (rows, videos matched). Each row's ``live``
    (not a column): its video is still in the index (not ``deleted``: ``moderation.reviews``)."""
    from moderation.blocklist import frame_hashes_from_lists

    stored = _lookup(job, FRAME_PDQ_TABLE, [v for v, *_ in res["decided"]], ["times", "hashes", "mirror", "quality"]) \
        if items is not None else {}
    rows, matched = [], 0
    for vid, uri, d, kinds, status in res["decided"]:
        h = stored.get(vid)
        if h is not None and h["hashes"] and d.decision != "error":
            found = items.match(frame_hashes_from_lists(h["times"], h["hashes"], h["mirror"], h["quality"]))
            matched += bool(found)
            d = with_matches(d, found)
        mode = None if d.decision == "error" else (kinds[0] if len(kinds) == 1 else "mixed")
        rows.append(decision_row(d, video_id=vid, uri=uri, policy=job.policy, model_id=job.model_id,
                                 run_id=job.run_id, score_mode=mode) | {"live": status != STATUS_DELETED})
    return rows, matched


def earlier_matches(r: dict) -> list:
    """The known-bad matches (``moderation.blocklist.Match``) of a ``moderation`` row, from its
    ``evidence`` (or, for rows from before evidence was stored, its ``blocklist:*`` flags)."""
    from moderation.blocklist import Match

    prefix = "blocklist:"
    keys = [f.name for f in dataclasses.fields(Match)]
    found = [Match(**{k: e[k] for k in keys}) for e in r.get("evidence") or [] if e["item_id"] is not None]
    if not found:  # before evidence: the flag's range and confidence (1 - median distance / 256)
        found = [Match(f["category"][len(prefix):], f["start_s"], f["end_s"], 0.0, 0.0,
                       round((1 - f["confidence"]) * 256), (1 - f["confidence"]) * 256, f["end_s"] - f["start_s"],
                       0.0, "kept") for f in r["flags"] or [] if f["category"].startswith(prefix)]
    return found
