"""Driver side of a ``--policy`` run: per-video clip scores in, one ``moderation`` row out.

The runner feeds ``add_clips`` every encoded batch (clip rows carry ``policy_probs``) and
``add_videos`` every ``videos`` table the assembler finishes. A video's videos row arrives
only after all its clips (the assembler waits for them), so the decision is made then and the
clip scores are dropped: memory holds only unfinished videos. A video that is not ``ok``
(failed, skipped, never finished) gets decision ``error`` with the reason. Decisions wait in
``pending()`` until the writer commits their videos rows: they are committed first, in the same
chunk (``moderation.job``).
"""
from __future__ import annotations

import datetime as dt

import pyarrow as pa

from jobs.assembler import _matrix
from moderation.decide import Clip, Decision, decide, with_matches
from moderation.policy import Policy
from schemas.moderation import EVIDENCE_TYPE, moderation_schema
from schemas.output import STATUS_OK, from_columns
from schemas.stream import KIND_CLIP, KIND_VIDEO, POLICY_PROBS

EVIDENCE_KEYS = [f.name for f in EVIDENCE_TYPE]


def decision_row(d: Decision, *, video_id: str, uri: str, policy: Policy, model_id: str, run_id: str,
                 score_mode: str | None) -> dict:
    """One ``moderation`` row (``schemas.moderation``)."""
    return {"video_id": video_id, "uri": uri, "decision": d.decision, "action": d.action,
            "flags": [f.to_dict() for f in d.flags], "policy_hash": policy.policy_hash, "model_id": model_id,
            "run_id": run_id, "coverage": float(d.coverage), "error": d.error,
            "decided_at": dt.datetime.now(dt.timezone.utc), "score_mode": score_mode,
            "evidence": [{k: e[k] for k in EVIDENCE_KEYS} for e in d.evidence] or None,
            "peaks": dict(d.peaks)}  # not a column: for the report


def rows_table(rows: list[dict]) -> pa.Table:
    schema = moderation_schema()
    return from_columns({n: [r.get(n) for r in rows] for n in schema.names}, schema, len(rows))


def video_decision(policy: Policy, clips: list[Clip], video: dict) -> Decision:
    """Decision for a ``videos`` row (dict) and its scored clips."""
    if video["status"] != STATUS_OK:
        return decide(policy, [], duration_s=video.get("duration_s"),
                      error=f"{video['status']}: {video.get('error') or 'no reason given'}")
    return decide(policy, clips, duration_s=video.get("duration_s"), shots=video.get("shots"))


class DecisionCollector:
    def __init__(self, policy: Policy, *, model_id: str, run_id: str, score_mode: str = "exact",
                 blocklist=None):
        """``blocklist``: a ``moderation.blocklist.Blocklist``, matched against the per-second PDQ
        the decoder put on each video's status row."""
        self.policy = policy
        self.blocklist = blocklist
        self._hashes: dict[str, object] = {}  # video_id -> PDQ lists (until its videos row arrives)
        self.model_id = model_id
        self.run_id = run_id
        self.score_mode = score_mode
        self._clips: dict[str, dict[int, Clip]] = {}
        self._decided: set[str] = set()
        self.rows: list[dict] = []
        self._pending: dict[str, dict] = {}  # video_id -> decision row not committed yet

    def add_clips(self, batch: pa.Table) -> None:
        kinds = batch.column("kind").to_pylist()
        if self.blocklist is not None:
            self._keep_hashes(batch, kinds)
        idx = [i for i, k in enumerate(kinds) if k == KIND_CLIP]
        if not idx:
            return
        clips = batch.take(pa.array(idx))
        col = clips.column(POLICY_PROBS).combine_chunks()
        probs = _matrix(col, self.policy.num_classes)
        valid = col.is_valid().to_pylist()
        for j, (vid, seg, s, e) in enumerate(zip(*(clips.column(n).to_pylist()
                                                   for n in ("video_id", "segment_index", "start_s", "end_s")))):
            if vid in self._decided or not valid[j]:  # null probs: the encoder failed; the video row says so
                continue
            self._clips.setdefault(vid, {})[seg] = Clip(s, e, probs[j].copy())

    def _keep_hashes(self, batch: pa.Table, kinds: list) -> None:
        from moderation.blocklist import frame_hashes_from_lists

        idx = [i for i, k in enumerate(kinds) if k == KIND_VIDEO]
        if not idx or "pdq_hashes" not in batch.column_names:
            return
        rows = batch.take(pa.array(idx)).select(["video_id", "pdq_times", "pdq_hashes", "pdq_mirror",
                                                 "pdq_quality"]).to_pylist()
        for r in rows:
            if r["pdq_hashes"]:
                self._hashes[r["video_id"]] = frame_hashes_from_lists(r["pdq_times"], r["pdq_hashes"],
                                                                      r["pdq_mirror"], r["pdq_quality"])

    def add_videos(self, videos: pa.Table) -> None:
        cols = ["video_id", "uri", "status", "error", "duration_s"]
        cols += ["shots"] if "shots" in videos.column_names else []  # segments = "shots": snap_to_shots
        for v in videos.select(cols).to_pylist():
            if v["video_id"] in self._decided:
                continue
            clips = self._clips.pop(v["video_id"], {})
            d = video_decision(self.policy, [clips[i] for i in sorted(clips)], v)
            d = self._match(v, d)
            self._decided.add(v["video_id"])
            self.rows.append(decision_row(d, video_id=v["video_id"], uri=v["uri"], policy=self.policy,
                                          model_id=self.model_id, run_id=self.run_id,
                                          score_mode=self.score_mode if d.decision != "error" else None))
            self._pending[v["video_id"]] = self.rows[-1]

    def _match(self, v: dict, d: Decision) -> Decision:
        """Known-bad matching of an ok video's per-second PDQ (``moderation.blocklist``)."""
        fh = self._hashes.pop(v["video_id"], None)
        if self.blocklist is None or d.decision == "error" or fh is None:
            return d
        return with_matches(d, self.blocklist.match(fh))

    def table(self) -> pa.Table:
        return rows_table(self.rows)

    def pending(self, video_ids: list[str] | None = None) -> tuple[list[str], pa.Table]:
        """(ids, moderation table) of the decisions of ``video_ids`` (None: all) not committed yet;
        ``committed(ids)`` once written. A video of ``video_ids`` with no decision at all is a bug
        (its videos row would commit undecided)."""
        ids = list(self._pending) if video_ids is None else list(dict.fromkeys(video_ids))
        missing = [v for v in ids if v not in self._decided]
        assert not missing, (f"moderation: no decision for {len(missing)} videos about to be committed "
                             f"(e.g. {missing[0]}): a bug in xclip-index")
        ids = [v for v in ids if v in self._pending]
        return ids, rows_table([self._pending[v] for v in ids])

    def committed(self, video_ids: list[str]) -> None:
        for v in video_ids:
            self._pending.pop(v, None)
