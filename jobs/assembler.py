"""Driver side of the stream: turn encoded rows into ``videos`` and ``segments`` rows.

Rows of one video arrive in any order and interleaved with other videos. The
assembler keeps, per unfinished video, its status row (once seen) and the
small per-clip results (embedding, probabilities, times; no pixels). A video is
final when its status row and all ``num_segments`` clips have arrived:

* ``ok``: one segments row per clip (labels = top-k of the clip's
  probabilities); the videos row gets the L2-normalised mean of the clip
  embeddings and the top-k of the mean clip probabilities, and ``coverage``
  (:func:`coverage`: how much of its duration the clips cover). If the encoder
  failed on any of its clips, the video is ``failed`` with that error and gets
  no segments.
* ``failed`` / ``skipped``: the videos row only (null embedding).

Side tables (``schemas.features``, keyed by ``segment_id``) come out of the same
finalisation: a ``thumbnails`` row per clip that carries a thumbnail, and a
``prompt_features`` row per clip when the stream carries ``visual_tokens``;
``take_side_tables()`` hands them to the writer.

``finish(inputs)`` closes the books: every listed input that never completed
gets a ``failed`` row saying why, so each input has exactly one videos row.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa

from jobs.finite import NONFINITE, nonfinite_rows
from jobs.labeler import Labeler
from schemas import STATUS_FAILED, STATUS_OK, segment_id, segments_schema, videos_schema
from schemas.features import PROMPT_FEATURES_TABLE, THUMBNAILS_TABLE, prompt_features_schema, thumbnails_schema
from schemas.output import from_columns, vectors
from schemas.stream import KIND_CLIP, THUMBNAIL, VISUAL_TOKENS

_VIDEO_FIELDS = ("video_id", "uri", "status", "error", "duration_s", "fps", "num_frames", "width", "height",
                 "codec", "source_size", "source_etag", "source_mtime", "decode_backend", "decode_fallback", "shots")


@dataclasses.dataclass
class _Pending:
    status: dict | None = None
    clips: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """What every output row of one run carries."""
    run_id: str
    model_id: str
    label_set: str


class VideoAssembler:
    def __init__(self, *, dim: int, labeler: Labeler, identity: RunIdentity):
        self.dim = dim
        self.labeler = labeler
        self.identity = identity
        self.videos_schema = videos_schema(dim)
        self.segments_schema = segments_schema(dim)
        self._pending: dict[str, _Pending] = {}
        self.done: set[str] = set()
        self.counts = collections.Counter()
        self.num_partial = 0  # ok videos whose error says "partial: ..."
        self.num_segments = 0
        self.decode_s = 0.0
        self.encode_s = 0.0
        self._side: list[tuple[str, pa.Table]] = []

    def take_side_tables(self) -> list[tuple[str, pa.Table]]:
        """(table name, rows) of the side tables finished since the last call."""
        out, self._side = self._side, []
        return out

    # ------------------------------------------------------------------ input
    def add(self, batch: pa.Table) -> tuple[list[pa.Table], list[pa.Table]]:
        """Consume one encoded batch; return (segments tables, videos tables) finished by it."""
        kinds = batch.column("kind").to_pylist()
        vids = batch.column("video_id").to_pylist()
        clip_idx = [i for i, k in enumerate(kinds) if k == KIND_CLIP]
        emb = probs = None
        if clip_idx:
            clips = batch.take(pa.array(clip_idx))
            emb = _matrix(clips.column("embedding"), self.dim)
            probs = _matrix(clips.column("probs"), len(self.labeler.labels))
            cols = {n: clips.column(n).to_pylist()
                    for n in ("segment_index", "start_s", "end_s", "frame_timestamps", "error", "encode_s", "shot_index")}
            cols[THUMBNAIL] = clips.column(THUMBNAIL).to_pylist() if THUMBNAIL in clips.column_names \
                else [None] * len(clip_idx)
            tokens = None
            if VISUAL_TOKENS in clips.column_names:
                col = clips.column(VISUAL_TOKENS)
                tokens = _matrix(col, col.type.list_size).astype(np.float16)
        touched = []
        for j, i in enumerate(clip_idx):
            if vids[i] in self.done:
                continue
            p = self._pending.setdefault(vids[i], _Pending())
            p.clips.append({"segment_index": cols["segment_index"][j], "start_s": cols["start_s"][j],
                            "end_s": cols["end_s"][j], "frame_timestamps": cols["frame_timestamps"][j],
                            "error": cols["error"][j], "embedding": emb[j], "probs": probs[j],
                            "shot_index": cols["shot_index"][j],
                            THUMBNAIL: cols[THUMBNAIL][j], VISUAL_TOKENS: None if tokens is None else tokens[j]})
            self.encode_s += cols["encode_s"][j] or 0.0
            touched.append(vids[i])
        status_idx = [i for i, k in enumerate(kinds) if k != KIND_CLIP]
        if status_idx:
            drop = [c for c in ("embedding", "probs", THUMBNAIL, VISUAL_TOKENS) if c in batch.column_names]
            rows = batch.take(pa.array(status_idx)).drop_columns(drop).to_pylist()
            for r in rows:
                if r["video_id"] in self.done:
                    continue
                p = self._pending.setdefault(r["video_id"], _Pending())
                p.status = r
                self.decode_s += r.get("decode_s") or 0.0
                touched.append(r["video_id"])
        seg_tables, video_rows = [], []
        for vid in dict.fromkeys(touched):
            p = self._pending.get(vid)
            if p is not None and p.status is not None and len(p.clips) >= (p.status["num_segments"] or 0):
                del self._pending[vid]
                seg, video = self._finalise(p)
                if seg is not None:
                    seg_tables.append(seg)
                video_rows.append(video)
        return seg_tables, ([self._videos_table(video_rows)] if video_rows else [])

    # ------------------------------------------------------------------ output
    def _base(self) -> dict:
        return {"model_id": self.identity.model_id, "label_set": self.identity.label_set,
                "run_id": self.identity.run_id, "indexed_at": dt.datetime.now(dt.timezone.utc)}

    def _finalise(self, p: _Pending) -> tuple[pa.Table | None, dict]:
        s = p.status
        video = {k: s.get(k) for k in _VIDEO_FIELDS}
        video.update(self._base(), num_segments=0, coverage=0.0)
        clip_errors = [c["error"] for c in p.clips if c["error"]]
        if s["status"] == STATUS_OK and clip_errors:
            video.update(status=STATUS_FAILED, error=clip_errors[0])
        if video["status"] != STATUS_OK:
            video["shots"] = None
        if video["status"] != STATUS_OK or not p.clips:
            if video["status"] == STATUS_OK:
                video.update(status=STATUS_FAILED, error="no clips encoded")
            self._count(video)
            return None, video
        clips = sorted(p.clips, key=lambda c: c["segment_index"])
        emb = np.stack([c["embedding"] for c in clips])
        probs = np.stack([c["probs"] for c in clips])
        if nonfinite_rows(emb, probs).any():  # never an ok row with a NaN (jobs.finite)
            video.update(status=STATUS_FAILED, error=f"encode failed: {NONFINITE}")
            self._count(video)
            return None, video
        mean = emb.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        seg_labels, seg_scores = self.labeler(probs)
        vid_labels, vid_scores = self.labeler(probs.mean(axis=0, keepdims=True))
        video.update(embedding=(mean / norm if norm > 0 else mean).tolist(), labels=vid_labels[0],
                     label_scores=vid_scores[0], num_segments=len(clips),
                     coverage=coverage([(c["start_s"], c["end_s"]) for c in clips], s.get("duration_s")))
        n = len(clips)
        base = self._base()
        seg = from_columns({
            "segment_id": [segment_id(s["video_id"], c["segment_index"]) for c in clips],
            "video_id": [s["video_id"]] * n, "uri": [s["uri"]] * n,
            "segment_index": [c["segment_index"] for c in clips], "start_s": [c["start_s"] for c in clips],
            "end_s": [c["end_s"] for c in clips], "frame_timestamps": [c["frame_timestamps"] for c in clips],
            "embedding": vectors(emb, self.dim), "labels": seg_labels, "label_scores": seg_scores,
            "shot_index": [c["shot_index"] for c in clips],
            **{k: [v] * n for k, v in base.items()},
        }, self.segments_schema, n)
        self._side_rows(s["video_id"], clips, base)
        if s.get("shots") is not None:
            from jobs.shot_rows import shot_rows

            self._side.append(shot_rows(s, clips, emb, probs, self.labeler, self.dim, base))
        self.num_segments += n
        self._count(video)
        return seg, video

    def _side_rows(self, vid: str, clips: list[dict], base: dict) -> None:
        import io

        from PIL import Image

        thumbs = [c for c in clips if c[THUMBNAIL] is not None]
        if thumbs:
            sizes = [Image.open(io.BytesIO(c[THUMBNAIL])).size for c in thumbs]
            self._side.append((THUMBNAILS_TABLE, from_columns({
                "segment_id": [segment_id(vid, c["segment_index"]) for c in thumbs], "video_id": [vid] * len(thumbs),
                "jpeg": [c[THUMBNAIL] for c in thumbs], "width": [w for w, _ in sizes],
                "height": [h for _, h in sizes], "run_id": [base["run_id"]] * len(thumbs),
                "indexed_at": [base["indexed_at"]] * len(thumbs)}, thumbnails_schema(), len(thumbs))))
        if clips[0][VISUAL_TOKENS] is not None:
            tok = np.stack([c[VISUAL_TOKENS] for c in clips])  # [n, N*P] float16
            n = len(clips)
            self._side.append((PROMPT_FEATURES_TABLE, from_columns({
                "segment_id": [segment_id(vid, c["segment_index"]) for c in clips], "video_id": [vid] * n,
                "visual_tokens": pa.FixedSizeListArray.from_arrays(pa.array(tok.reshape(-1)), tok.shape[1]),
                "num_tokens": [tok.shape[1] // self.dim] * n, "model_id": [base["model_id"]] * n,
                "run_id": [base["run_id"]] * n, "indexed_at": [base["indexed_at"]] * n},
                prompt_features_schema(tok.shape[1] // self.dim, self.dim), n)))

    def _count(self, video: dict) -> None:
        self.counts[video["status"]] += 1
        if video["status"] == STATUS_OK and str(video.get("error") or "").startswith("partial"):
            self.num_partial += 1
        self.done.add(video["video_id"])

    def _videos_table(self, rows: list[dict]) -> pa.Table:
        cols = {name: [r.get(name) for r in rows] for name in self.videos_schema.names if name != "embedding"}
        valid = [r.get("embedding") is not None for r in rows]
        emb = [r["embedding"] if r.get("embedding") is not None else [0.0] * self.dim for r in rows]
        cols["embedding"] = vectors(emb, self.dim, valid)
        return from_columns(cols, self.videos_schema, len(rows))

    def finish(self, inputs: pa.Table, reason: str | None = None) -> list[pa.Table]:
        """Videos rows (failed) for every input of ``inputs`` not finished yet."""
        rows = []
        by_id = {r["video_id"]: r for r in inputs.to_pylist() if r["video_id"] not in self.done}
        for vid, r in by_id.items():
            p = self._pending.pop(vid, None)
            if p is not None and p.status is not None:
                why = f"incomplete: {len(p.clips)} of {p.status['num_segments']} clips arrived"
                src = p.status
            else:
                why, src = "no result from the pipeline (its task failed; see the Ray logs)", r
            video = {k: src.get(k) for k in _VIDEO_FIELDS if k in src}
            video.update(self._base(), video_id=vid, uri=r["uri"], status=STATUS_FAILED,
                         error=reason or why, num_segments=0, coverage=0.0)
            self._count(video)
            rows.append(video)
        return [self._videos_table(rows)] if rows else []


def coverage(windows: list[tuple[float, float]], duration_s: float | None) -> float | None:
    """Fraction of ``[0, duration_s]`` covered by the union of the ``(start, end)`` windows
    (overlaps counted once, windows clipped to the duration); None when the duration is unknown."""
    if duration_s is None or not duration_s > 0:
        return None
    covered, reach = 0.0, 0.0
    for start, end in sorted((max(0.0, float(a)), min(float(duration_s), float(b))) for a, b in windows):
        if end <= reach:
            continue
        covered += end - max(start, reach)
        reach = end
    return min(1.0, covered / float(duration_s))


def _matrix(col: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """fixed_size_list column -> [N, width] float32 (null rows are zeros)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    n = len(col)
    out = col.values.slice(col.offset * width, n * width).to_numpy(zero_copy_only=False)
    out = out.astype(np.float32, copy=False).reshape(n, width)
    if col.null_count:
        out = out.copy()
        out[~np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)] = 0.0
    return out
