"""DecodeConfig: every knob of the video stage in one frozen dataclass."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class DecodeConfig:
    """How to sample and decode clips from one video.

    Sampling
      sampler: "fixed" (default): windows of ``window_s`` seconds every ``stride_s``
        seconds (default: the window, no overlap); ``frames_per_clip`` frames per
        window, at the middle of ``frames_per_clip`` equal sub-segments (at 30 fps and
        2 s this is X-CLIP's ``int(i*N/T + N/(2T))`` inside each 60-frame window).
        Last partial window: if the part after the last full window is at least
        ``min_tail_fraction * window_s`` long, one more window aligned to the end of
        the video ``[D - window_s, D]`` is added (it overlaps the previous one), else
        the tail is dropped. Videos shorter than one window give one clip over the
        whole video ``[0, D]`` (frames repeat when it has fewer than T frames).
        "tsn": one clip per video, frame ``int(i*N/T + N/(2T))`` for i < T.
    Output
      frames uint8 [T, crop_size, crop_size, 3] RGB: shortest edge resized to
      ``shortest_edge`` (long edge ``int(shortest_edge*long/short)``), then a centre
      crop (HF CLIP/VideoMAE geometry); ``interpolation`` is the swscale filter.
    Limits (an input over a limit is *skipped* with a reason, nothing is decoded)
      max_duration_s, max_pixels (width*height), max_width/max_height,
      min_duration_s ("too short"). max_clips_per_video caps the number of windows
      (an evenly spaced subset is kept; this is not a skip).
    Runtime
      timeout_s: the longest the caller may wait on the decoder for one video (time
        spent consuming clips does not count); then the video is ``failed``.
      num_threads: decoder threads (1 = one core per worker, for process pools).
      backend: "pyav" (default, fastest measured) or "decord" on the CPU; "nvdec":
        ``xclip_core.video.nvdec.decode_nvdec`` (GPU; its CPU fallback is pyav).
      nvdec_share: for the job (``jobs.gpu_decode``): the share of videos the decode
        stage leaves undecoded for the GPU encoder actors to decode with NVDEC;
        0 = none (default here), None = from measured capacities.
      approximate: opt-in, pyav only: the decoder drops *every* non-reference frame
        and each sampled index takes the nearest decoded (reference) frame in
        display order (ties: the earlier one); the real indices and timestamps are
        reported. Exact sampling already drops the non-reference frames that are
        not sampled, so the gain is small (bench/approx.py, bench/RESULTS.md).
      s3_read: "auto" | "memory" | "stream"; auto reads objects up to
        ``s3_memory_max_bytes`` into memory (measured faster), streams larger ones
        through s3fs with ``s3_block_size`` read-ahead blocks.
    """

    sampler: str = "fixed"
    frames_per_clip: int = 8
    window_s: float = 2.0
    stride_s: float | None = None
    min_tail_fraction: float = 0.5
    crop_size: int = 224
    shortest_edge: int = 224
    interpolation: str = "BILINEAR"
    max_clips_per_video: int | None = None
    max_duration_s: float | None = None
    min_duration_s: float = 0.0
    max_pixels: int | None = None
    max_width: int | None = None
    max_height: int | None = None
    timeout_s: float = 300.0
    num_threads: int = 1
    backend: str = "pyav"
    approximate: bool = False
    s3_read: str = "auto"
    s3_memory_max_bytes: int = 512 << 20
    s3_block_size: int = 32 << 20
    queue_size: int = 2
    nvdec_share: float | None = 0.0

    def __post_init__(self):
        if self.sampler not in ("fixed", "tsn"):
            raise ValueError(f"sampler must be 'fixed' or 'tsn', got {self.sampler!r}")
        if self.backend not in ("pyav", "decord", "nvdec"):
            raise ValueError(f"backend must be 'pyav', 'decord' or 'nvdec', got {self.backend!r}")
        if self.nvdec_share is not None and not 0.0 <= self.nvdec_share <= 1.0:
            raise ValueError(f"nvdec_share must be in [0, 1] or None (auto), got {self.nvdec_share}")
        if self.s3_read not in ("auto", "memory", "stream"):
            raise ValueError(f"s3_read must be auto|memory|stream, got {self.s3_read!r}")
        if self.frames_per_clip < 1:
            raise ValueError("frames_per_clip must be >= 1")
        if self.window_s <= 0 or (self.stride_s is not None and self.stride_s <= 0):
            raise ValueError("window_s and stride_s must be > 0")
        if self.crop_size < 1 or self.shortest_edge < self.crop_size:
            raise ValueError("need 1 <= crop_size <= shortest_edge")
        if self.num_threads < 0:
            raise ValueError("num_threads must be >= 0 (0 = decoder default)")
        if self.approximate and self.backend != "pyav":
            raise ValueError("approximate=True needs backend='pyav'")

    @property
    def stride(self) -> float:
        return self.window_s if self.stride_s is None else self.stride_s

    def with_(self, **kw) -> "DecodeConfig":
        return replace(self, **kw)
