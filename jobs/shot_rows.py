"""``shots`` table rows of one finished video (``schemas.shots``), from its clips (driver side)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.output import from_columns, vectors
from schemas.shots import SHOTS_TABLE, shot_id, shots_schema


def shot_rows(status: dict, clips: list[dict], emb: np.ndarray, probs: np.ndarray, labeler, dim: int,
              base: dict) -> tuple[str, pa.Table]:
    """One row per shot in ``status["shots"]``: the L2-normalised mean of its clips' embeddings and the
    top-k of their mean probabilities (null embedding and labels for a shot without clips, e.g. the
    unread end of a partial video). ``clips``/``emb``/``probs`` are aligned, sorted by segment index."""
    shots = status["shots"]
    n = len(shots)
    index = np.asarray([-1 if c["shot_index"] is None else c["shot_index"] for c in clips])
    means, valid, counts, mean_probs = np.zeros((n, dim), np.float32), np.zeros(n, bool), [], []
    for k in range(n):
        sel = index == k
        counts.append(int(sel.sum()))
        if counts[-1]:
            m = emb[sel].mean(axis=0)
            norm = float(np.linalg.norm(m))
            means[k] = m / norm if norm > 0 else m
            valid[k] = True
            mean_probs.append(probs[sel].mean(axis=0))
    labels, scores = [None] * n, [None] * n
    if mean_probs:
        got_l, got_s = labeler(np.stack(mean_probs))
        for k, lab, sc in zip(np.flatnonzero(valid), got_l, got_s):
            labels[k], scores[k] = lab, sc
    vid = status["video_id"]
    return SHOTS_TABLE, from_columns({
        "shot_id": [shot_id(vid, k) for k in range(n)], "video_id": [vid] * n, "uri": [status["uri"]] * n,
        "shot_index": list(range(n)), "start_s": [float(x["start_s"]) for x in shots],
        "end_s": [float(x["end_s"]) for x in shots], "num_segments": counts,
        "embedding": vectors(means, dim, valid), "labels": labels, "label_scores": scores,
        **{key: [value] * n for key, value in base.items()}}, shots_schema(dim), n)
