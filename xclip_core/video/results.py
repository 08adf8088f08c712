"""Result types of the video stage."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class VideoMeta:
    """``duration_s`` comes from the frame timestamps (first pts to the end of the
    last frame), so it is right for variable frame rate; ``fps`` = num_frames /
    duration_s (the mean rate); ``num_frames`` counts the video packets with a
    timestamp found by demuxing (not the container's claim)."""

    duration_s: float
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str


@dataclass
class Clip:
    """One sampled clip. ``frame_indices`` are display-order indices into the
    video; ``timestamps`` are the sampled frames' start times in seconds from the
    first frame; ``frames`` is uint8 [T, S, S, 3] RGB at the crop size."""

    segment_index: int
    start_s: float
    end_s: float
    frame_indices: np.ndarray
    timestamps: np.ndarray
    frames: np.ndarray
    shot_index: int | None = None  # segments = "shots": the shot the window lies in


@dataclass
class VideoResult:
    """status "ok" | "failed" | "skipped". ``reason`` is None for a clean ok, a
    human-readable text otherwise (an ok with a reason is a partial read)."""

    uri: str
    status: str
    reason: str | None = None
    meta: VideoMeta | None = None
    clips: list[Clip] = field(default_factory=list)
    num_clips: int = 0
    decode_s: float = 0.0
    shots: list[tuple[float, float]] | None = None  # segments = "shots": (start_s, end_s) per shot
    frame_hashes: object = None  # xclip_core.video.frame_hash.FrameHashes (per-second PDQ), ok videos

    @property
    def ok(self) -> bool:
        return self.status == OK
