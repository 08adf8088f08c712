"""Stage 4: zero-shot labels from class probabilities.

``Labeler(labels, k)(probs[N, K]) -> (labels: list[list[str]], scores: list[list[float]])``,
top-k best first. Used for clips (their softmax over ``logits_per_video``) and
for videos (the mean of their clips' probabilities), so both use one rule.
"""
from __future__ import annotations

import numpy as np


class Labeler:
    def __init__(self, labels: tuple[str, ...] | list[str], k: int):
        if not labels:
            raise ValueError("the label set is empty")
        if k < 1:
            raise ValueError(f"top-k must be >= 1, got {k}")
        self.labels = tuple(labels)
        self.k = min(int(k), len(self.labels))

    def top_k(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(label indices [N, k], scores [N, k]), best first: the rule of ``__call__`` in numpy."""
        probs = np.asarray(probs, dtype=np.float32)
        if probs.ndim != 2 or probs.shape[1] != len(self.labels):
            raise ValueError(f"probs must be [N, {len(self.labels)}], got {probs.shape}")
        k = self.k
        if probs.shape[0] == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(probs, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)

    def __call__(self, probs: np.ndarray) -> tuple[list[list[str]], list[list[float]]]:
        idx, scores = self.top_k(probs)
        return ([[self.labels[j] for j in row] for row in idx.tolist()],
                [[float(s) for s in row] for row in scores.tolist()])
