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
With ``blocklist``, known-bad matching uses the stored per-second PDQ (``frame_pdq``, written
by every run), so a new list item finds old uploads without decoding. An index where an ok
video has no stored hashes (built before ``frame_pdq``, or decoded by decord/NVDEC) is refused
with one line saying how many and the fix, never a silent allow.
Without ``blocklist`` the known-bad matches of the decisions in the ``moderation`` table (their
flags and evidence) are kept (fails closed: a policy change does not turn a blocklist ``block``
into ``allow``); ``result.kept`` counts the videos whose matches were kept.
``drop_blocklist=True`` (``--drop-blocklist``) drops them.
It streams (``moderation.stream`` on Ray, ``jobs.fragment_map``): clips are scored per ``segments``
fragment and grouped by video in ``video_id`` partitions, one partition decided per task; no table
is loaded whole here, and the driver holds one partition's decision rows at a time: each partition's
rows are upserted into the ``moderation`` table (one upsert per partition, under a new run id) and
folded into a ``moderation.summary.Summary`` (running counts, bounded top items; the review queue an
external sort of sorted per-partition chunks under the run's stage, merged when written).
``result.rows`` reads this run's rows back from its Parquet log. The ``--blocklist`` check that
every ok video has stored hashes runs per partition too. The run writes
``runs/<run_id>-moderation.html`` (cumulative, after review) and ``runs/<run_id>.json``
(``"kind": "moderate"``: policy, mode, counts, report).
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json


from moderation.collector import rows_table
from moderation.policy import load_policy
from moderation.report import moderate_manifest, write_outputs
from moderation.store import write_decisions
from schemas.features import PROMPT_FEATURES_TABLE
from schemas.manifest import RunManifest
from schemas.moderation import FRAME_PDQ_TABLE
from schemas.output import SEGMENTS_TABLE, VIDEOS_TABLE
from xclip_core import storage
from xclip_store import held, leased

VIDEOS_PER_QUERY = 256


class ModerateError(RuntimeError):
    """The index cannot be moderated (no manifest, no tables, another model); says the fix."""


@dataclasses.dataclass(frozen=True)
class ModerateResult:
    run_id: str
    mode: str               # exact | approximate | mixed
    counts: dict            # decision -> videos
    table: dict             # write_decisions() result (the last partition's)
    num_videos: int
    parquet: tuple = ()     # this run's Parquet log files (one per partition)
    review_items: int | None = None
    matched: int = 0        # videos with a blocklist match
    kept: int = 0           # videos whose earlier blocklist matches were kept (no --blocklist)

    @property
    def rows(self) -> list[dict]:
        """This run's decision rows, read back from its Parquet log when asked (the run holds them
        one partition at a time)."""
        from xclip_search.relabel_tasks import read_parquet

        return [r for p in self.parquet for r in read_parquet(p).to_pylist()]

    def format(self) -> str:
        c = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        return f"moderate {self.run_id}: {self.num_videos} videos ({c}); scores: {self.mode}"


def latest_manifest(index: str) -> RunManifest:
    """The latest finished indexing run's manifest (relabel entries in runs/ are not runs)."""
    from xclip_search.index import IndexError_, latest_finished, read_manifests

    try:
        runs = [m for m in read_manifests(index) if m.get("kind", "run") == "run"]
        return RunManifest.from_json(json.dumps(latest_finished(runs, index)))
    except IndexError_ as e:
        raise ModerateError(f"--index {index}: {e}; index videos first (xclip-index run --output {index})") \
            from None


@leased("moderate", uri_arg="index")  # holds the output lease for the whole call (exit 7 while a run holds it)
def moderate(index: str, policy: str, *, review_out: str | None = None, run_id: str | None = None,
             blocklist: str | None = None, drop_blocklist: bool = False, device: str = "cpu") -> ModerateResult:
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
    segments_tbl = db.open_table(SEGMENTS_TABLE)
    features_tbl = db.open_table(PROMPT_FEATURES_TABLE) if PROMPT_FEATURES_TABLE in names else None
    items = _blocklist(blocklist) if blocklist else None
    if items is not None and FRAME_PDQ_TABLE not in names:
        raise ModerateError(f"--index {index}: no stored frame hashes ({FRAME_PDQ_TABLE} table): it was built "
                            f"before they were stored; rehash it with xclip-index run --full --output {index}")
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

    # streamed over the tables' fragments on Ray (moderation.stream): per-video decisions from clips
    # grouped by video in hash partitions, never a whole table in this process, nor a row per video
    from jobs.fragment_map import FragmentMap
    from moderation.reviews import review_index, with_reviews
    from moderation.store import open_table
    from moderation.stream import VIDEOS_PER_PART, ModerateJob, decide_part, finish_part, score_segments, video_rows
    from moderation.summary import Summary
    from schemas.moderation import MODERATION_TABLE
    from xclip_core.scoring import ScaleOnly
    from xclip_store.label_commit import dataset

    db_uri, opts = storage.join(index, "lancedb"), storage.lancedb_storage_options(index)
    keep_earlier = items is None and not drop_blocklist and MODERATION_TABLE in names
    if keep_earlier:
        open_table(index, create=False)  # a table from before evidence gets the column first
    present = [VIDEOS_TABLE, SEGMENTS_TABLE, *(t for t in (PROMPT_FEATURES_TABLE, FRAME_PDQ_TABLE, MODERATION_TABLE)
                                                if t in names)]
    versions = {n: int(dataset(db_uri, n, storage_options=opts).version) for n in present}
    seg_ds, vid_ds = (dataset(db_uri, n, version=versions[n], storage_options=opts) for n in (SEGMENTS_TABLE,
                                                                                              VIDEOS_TABLE))
    parts = max(1, -(-vid_ds.count_rows() // VIDEOS_PER_PART))
    job = ModerateJob(db_uri, opts, storage.join(index, f"runs/{run_id}-stage"), versions, parts, pol,
                      ClipScorer(model if features_tbl is not None else ScaleOnly(model), text),
                      manifest.model_id, run_id, keep_earlier=keep_earlier)
    # the report and queue are cumulative (every current video after review); every video of the
    # index is decided here (the lease keeps the tables still), so they are this run's live rows
    summary, reviews = Summary(pol, spill=job.stage), review_index(index)
    counts, modes, logs, table, matched, kept = collections.Counter(), set(), [], None, 0, 0
    with FragmentMap.start(rows=seg_ds.count_rows()) as fmap:
        list(fmap.map(video_rows, [f.fragment_id for f in vid_ds.get_fragments()], job))
        if items is not None:
            _check_hashed(index, fmap, job)
        list(fmap.map(score_segments, [f.fragment_id for f in seg_ds.get_fragments()], job))
        for res in fmap.map(decide_part, range(parts), job):
            part_rows, found = finish_part(job, res, items)  # one partition's rows at a time
            if part_rows:
                written = rows_table(part_rows)
                table = write_decisions(index, run_id, written, part=res["part"])
                logs.append(table["parquet"])
                summary.add_run(part_rows)
                summary.add_current(with_reviews([r for r, d in zip(written.to_pylist(), part_rows) if d["live"]],
                                                 *reviews))  # as read back from the table
            counts.update(r["decision"] for r in part_rows)
            modes.update(r["score_mode"] for r in part_rows)
            matched, kept = matched + found, kept + res["kept"]
    modes.discard(None)
    mode = modes.pop() if len(modes) == 1 else ("mixed" if modes else "none")
    table = table or write_decisions(index, run_id, rows_table([]))
    done = write_outputs(index, run_id, summary, review_out=review_out)  # cumulative report and queue
    result = ModerateResult(run_id=run_id, mode=mode, counts=dict(counts), table=table, num_videos=summary.run_videos,
                            parquet=tuple(logs), review_items=done.get("review_items"), matched=matched, kept=kept)
    held(index).write_text(f"runs/{run_id}.json", moderate_manifest(result, pol, started, done))  # atomic, leased
    return result


def _blocklist(uri: str):
    from moderation.blocklist import BlocklistError, load_blocklist

    try:
        return load_blocklist(uri)
    except BlocklistError as e:
        raise ModerateError(str(e)) from None


def _check_hashed(index: str, fmap, job) -> None:
    """Every ok video must have stored hashes: else one line with the count and the fix. Checked per
    partition (``moderation.stream.hashed_ids``, ``unhashed``), never a set of every video id here."""
    from moderation.stream import hashed_ids, unhashed

    list(fmap.map(hashed_ids, [f.fragment_id for f in job.ds(FRAME_PDQ_TABLE).get_fragments()], job))
    ok = missing = 0
    for res in fmap.map(unhashed, range(job.parts), job):
        ok, missing = ok + res["ok"], missing + res["missing"]
    if missing:
        raise ModerateError(f"--index {index}: {missing} of {ok} ok videos have no stored frame hashes "
                            f"(indexed before they were stored, or by the decord/NVDEC decoder), so the blocklist "
                            f"cannot be checked against them; rehash with xclip-index run --full --output {index}")


def result_json(result: ModerateResult) -> str:
    return json.dumps({"run_id": result.run_id, "mode": result.mode, "counts": result.counts,
                       "review_items": result.review_items, "table": result.table})
