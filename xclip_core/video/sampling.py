"""Samplers: which frames make each clip. Pure functions of the frame table.

A frame is "shown at time t" when it is the last frame whose start time is <= t.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-6


@dataclass(frozen=True)
class ClipPlan:
    segment_index: int
    start_s: float
    end_s: float
    frame_indices: tuple[int, ...]


def frames_at(times: np.ndarray, t: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(times, np.asarray(t) + _EPS, side="right") - 1
    return np.clip(idx, 0, len(times) - 1)


def _window(times, start, length, T) -> tuple[int, ...]:
    t = start + (np.arange(T) + 0.5) * (length / T)
    return tuple(int(i) for i in frames_at(times, t))


def fixed_windows(times: np.ndarray, duration_s: float, T: int, window_s: float = 2.0,
                  stride_s: float | None = None, min_tail_fraction: float = 0.5,
                  max_clips: int | None = None) -> list[ClipPlan]:
    """Windows [k*stride, k*stride + window) with T frames each (see DecodeConfig)."""
    stride = window_s if stride_s is None else stride_s
    if len(times) == 0:
        return []
    if duration_s < window_s - _EPS:
        spans = [(0.0, duration_s)]
    else:
        n_full = int(np.floor((duration_s - window_s) / stride + _EPS)) + 1
        spans = [(k * stride, window_s) for k in range(n_full)]
        covered = (n_full - 1) * stride + window_s
        if duration_s - covered >= min_tail_fraction * window_s - _EPS:
            spans.append((duration_s - window_s, window_s))
    if max_clips is not None and len(spans) > max_clips:
        keep = np.unique(np.linspace(0, len(spans) - 1, max_clips).round().astype(int))
        spans = [spans[i] for i in keep]
    return [ClipPlan(k, round(s, 6), round(s + length, 6), _window(times, s, length, T))
            for k, (s, length) in enumerate(spans)]


def tsn_indices(num_frames: int, T: int) -> tuple[int, ...]:
    """X-CLIP evaluation sampling: the middle frame of each of T equal segments."""
    return tuple(min(int(i * num_frames / T + num_frames / (2 * T)), num_frames - 1)
                 for i in range(T))


def tsn(times: np.ndarray, duration_s: float, T: int) -> list[ClipPlan]:
    if len(times) == 0:
        return []
    return [ClipPlan(0, 0.0, round(duration_s, 6), tsn_indices(len(times), T))]


def plan_clips(times: np.ndarray, duration_s: float, cfg) -> list[ClipPlan]:
    if cfg.sampler == "tsn":
        return tsn(times, duration_s, cfg.frames_per_clip)
    return fixed_windows(times, duration_s, cfg.frames_per_clip, cfg.window_s, cfg.stride_s,
                         cfg.min_tail_fraction, cfg.max_clips_per_video)
