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

import numpy as np
import pyarrow as pa

from jobs.assembler import _matrix
from moderation.decide import Clip, Decision, decide, with_matches
from moderation.policy import Policy
from schemas.moderation import frame_hashes_schema, moderation_schema
from schemas.output import STATUS_OK, from_columns
from schemas.stream import FRAME_HASHES, KIND_CLIP, POLICY_PROBS


def decision_row(d: Decision, *, video_id: str, uri: str, policy: Policy, model_id: str, run_id: str,
                 score_mode: str | None) -> dict:
    """One ``moderation`` row (``schemas.moderation``)."""
    return {"video_id": video_id, "uri": uri, "decision": d.decision, "action": d.action,
            "flags": [f.to_dict() for f in d.flags], "policy_hash": policy.policy_hash, "model_id": model_id,
            "run_id": run_id, "coverage": float(d.coverage), "error": d.error,
            "decided_at": dt.datetime.now(dt.timezone.utc), "score_mode": score_mode,
            "peaks": dict(d.peaks)}  # not a column: for the report


def rows_table(rows: list[dict]) -> pa.Table:
    schema = moderation_schema()
    return from_columns({n: [r.get(n) for r in rows] for n in schema.names}, schema, len(rows))


def video_decision(policy: Policy, clips: list[Clip], video: dict) -> Decision:
    """Decision for a ``videos`` row (dict) and its scored clips."""
    if video["status"] != STATUS_OK:
        return decide(policy, [], duration_s=video.get("duration_s"),
                      error=f"{video['status']}: {video.get('error') or 'no reason given'}")
    return decide(policy, clips, duration_s=video.get("duration_s"))


class DecisionCollector:
    def __init__(self, policy: Policy, *, model_id: str, run_id: str, score_mode: str = "exact",
                 blocklist=None):
        """``blocklist``: ``moderation.blocklist.Item`` list; the batches then carry frame hashes."""
        self.policy = policy
        self.blocklist = blocklist
        self._hashes: dict[str, list] = {}  # video_id -> [(timestamps, hashes)] per clip
        self.hash_rows: list[dict] = []
        self.model_id = model_id
        self.run_id = run_id
        self.score_mode = score_mode
        self._clips: dict[str, dict[int, Clip]] = {}
        self._decided: set[str] = set()
        self.rows: list[dict] = []
        self._pending: dict[str, dict] = {}         # video_id -> decision row not committed yet
        self._pending_hashes: dict[str, dict] = {}  # video_id -> frame_hashes row not committed yet

    def add_clips(self, batch: pa.Table) -> None:
        kinds = batch.column("kind").to_pylist()
        idx = [i for i, k in enumerate(kinds) if k == KIND_CLIP]
        if not idx:
            return
        clips = batch.take(pa.array(idx))
        col = clips.column(POLICY_PROBS).combine_chunks()
        probs = _matrix(col, self.policy.num_classes)
        valid = col.is_valid().to_pylist()
        hashes = clips.column(FRAME_HASHES).to_pylist() if self.blocklist is not None else None
        stamps = clips.column("frame_timestamps").to_pylist() if hashes is not None else None
        for j, (vid, seg, s, e) in enumerate(zip(*(clips.column(n).to_pylist()
                                                   for n in ("video_id", "segment_index", "start_s", "end_s")))):
            if vid in self._decided or not valid[j]:  # null probs: the encoder failed; the video row says so
                continue
            self._clips.setdefault(vid, {})[seg] = Clip(s, e, probs[j].copy())
            if hashes is not None and hashes[j]:
                self._hashes.setdefault(vid, []).append((stamps[j], hashes[j]))

    def add_videos(self, videos: pa.Table) -> None:
        for v in videos.select(["video_id", "uri", "status", "error", "duration_s"]).to_pylist():
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
        """Known-bad matching of an ok video's per-second hashes (also kept for ``frame_hashes``)."""
        parts = self._hashes.pop(v["video_id"], [])
        if self.blocklist is None or d.decision == "error" or not parts:
            return d
        from moderation.blocklist import match
        from moderation.hashing import per_second

        ts = np.concatenate([np.asarray(t, np.float64) for t, _ in parts])
        hs = np.frombuffer(b"".join(h for _, hl in parts for h in hl), np.uint8).reshape(len(ts), -1)
        times, picked = per_second(ts, hs, v.get("duration_s"))
        self.hash_rows.append({"video_id": v["video_id"], "uri": v["uri"], "times": times.tolist(),
                               "hashes": [bytes(h) for h in picked], "run_id": self.run_id,
                               "indexed_at": dt.datetime.now(dt.timezone.utc)})
        self._pending_hashes[v["video_id"]] = self.hash_rows[-1]
        return with_matches(d, match(times, picked, self.blocklist))

    def table(self) -> pa.Table:
        return rows_table(self.rows)

    def pending(self, video_ids: list[str] | None = None) -> tuple[list[str], pa.Table, pa.Table]:
        """(ids, moderation table, frame_hashes table) of the decisions of ``video_ids`` (None: all)
        not committed yet; ``committed(ids)`` once written. A video of ``video_ids`` with no decision
        at all is a bug (its videos row would commit undecided)."""
        ids = list(self._pending) if video_ids is None else list(dict.fromkeys(video_ids))
        missing = [v for v in ids if v not in self._decided]
        assert not missing, (f"moderation: no decision for {len(missing)} videos about to be committed "
                             f"(e.g. {missing[0]}): a bug in xclip-index")
        ids = [v for v in ids if v in self._pending]
        hashes = [self._pending_hashes[v] for v in ids if v in self._pending_hashes]
        return ids, rows_table([self._pending[v] for v in ids]), self.hash_table(hashes)

    def committed(self, video_ids: list[str]) -> None:
        for v in video_ids:
            self._pending.pop(v, None)
            self._pending_hashes.pop(v, None)

    def hashes_table(self) -> pa.Table:
        return self.hash_table(self.hash_rows)

    @staticmethod
    def hash_table(rows: list[dict]) -> pa.Table:
        schema = frame_hashes_schema()
        return from_columns({n: [r[n] for r in rows] for n in schema.names}, schema, len(rows))
