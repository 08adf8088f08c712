"""DecodeConfig: every knob of the video stage in one frozen dataclass."""
from __future__ import annotations

from dataclasses import dataclass, replace

SAMPLERS = ("fixed", "tsn")
BACKENDS = ("pyav", "decord", "nvdec")
SEGMENTS = ("fixed", "shots")
# DecodeConfig fields that only matter with segments = "shots": left out of a fixed-mode video's
# processing identity, so the ids of indexes written before they existed do not change
SHOT_FIELDS = ("segments", "shot_threshold", "shot_min_score", "shot_min_s")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(msg)


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
      segments: "fixed" (default): windows over the whole video as above; "shots": a shot
        detector runs in the decode pass (``xclip_core.video.shots``) and the fixed rule is applied
        inside each shot, so no window crosses a cut (a shot shorter than a window gets one window
        over the whole shot); ``VideoResult.shots`` lists the shots, ``Clip.shot_index`` says
        which one a clip lies in. pyav backend, fixed sampler and no clip cap only.
        shot_threshold: a cut needs a content score this many times its neighbours' mean;
        shot_min_score: and at least this score (0..255 scale); shot_min_s: shortest shot.
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
    segments: str = "fixed"
    shot_threshold: float = 2.5
    shot_min_score: float = 4.0
    shot_min_s: float = 0.6

    def __post_init__(self):
        # each error names the field first ("window_s: must be > 0, got 0"); the job prefixes its
        # TOML table ("decoder.window_s: ...", jobs.config)
        _check(self.sampler in SAMPLERS, f"sampler: expected one of {SAMPLERS}, got {self.sampler!r}")
        _check(self.backend in BACKENDS, f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        _check(self.nvdec_share is None or 0.0 <= self.nvdec_share <= 1.0,
               f"nvdec_share: must be between 0 and 1 (None: automatic), got {self.nvdec_share}")
        _check(self.s3_read in ("auto", "memory", "stream"),
               f"s3_read: must be auto|memory|stream, got {self.s3_read!r}")
        _check(self.frames_per_clip >= 1, f"frames_per_clip: must be >= 1, got {self.frames_per_clip}")
        _check(self.window_s > 0, f"window_s: must be > 0, got {self.window_s}")
        _check(self.stride_s is None or self.stride_s > 0, f"stride_s: must be > 0, got {self.stride_s}")
        _check(1 <= self.crop_size <= self.shortest_edge,
               f"crop_size: need 1 <= crop_size <= shortest_edge, got {self.crop_size} and {self.shortest_edge}")
        _check(self.max_clips_per_video is None or self.max_clips_per_video >= 1,
               f"max_clips_per_video: must be >= 1, got {self.max_clips_per_video}")
        _check(self.max_duration_s is None or self.max_duration_s > 0,
               f"max_duration_s: must be > 0, got {self.max_duration_s}")
        _check(self.max_pixels is None or self.max_pixels >= 1, f"max_pixels: must be >= 1, got {self.max_pixels}")
        _check(self.timeout_s > 0, f"timeout_s: must be > 0, got {self.timeout_s}")
        _check(self.num_threads >= 0, f"num_threads: must be >= 0 (0 = decoder default), got {self.num_threads}")
        _check(not self.approximate or self.backend == "pyav", "approximate: needs backend = 'pyav'")
        _check(self.segments in SEGMENTS, f"segments: expected one of {SEGMENTS}, got {self.segments!r}")
        if self.segments == "shots":
            _check(self.backend == "pyav", f"segments: 'shots' needs backend = 'pyav', got {self.backend!r}")
            _check(self.sampler == "fixed", "segments: 'shots' needs sampler = 'fixed' (tsn takes one clip "
                                            "per video)")
            _check(self.max_clips_per_video is None, "segments: 'shots' indexes every shot; remove "
                                                     "max_clips_per_video")
            _check(not self.approximate, "segments: 'shots' already samples the nearest decoded frame "
                                         "where it must; remove approximate")
            _check(self.nvdec_share in (0.0, None), "segments: 'shots' decodes on the CPU; set nvdec_share = 0")
        _check(self.shot_threshold > 1.0, f"shot_threshold: must be > 1, got {self.shot_threshold}")
        _check(self.shot_min_score >= 0, f"shot_min_score: must be >= 0, got {self.shot_min_score}")
        _check(self.shot_min_s >= 0, f"shot_min_s: must be >= 0, got {self.shot_min_s}")

    @property
    def stride(self) -> float:
        return self.window_s if self.stride_s is None else self.stride_s

    def identity(self) -> dict:
        """The knobs that decide a video's clips, for ``jobs.incremental.processing_id``."""
        return decode_identity(self)

    def with_(self, **kw) -> "DecodeConfig":
        return replace(self, **kw)


def decode_identity(cfg) -> dict:
    """``dataclasses.asdict(cfg)`` without the shot knobs when ``segments`` is "fixed" (or absent):
    a fixed-mode identity is the one written before shots existed."""
    import dataclasses

    d = dataclasses.asdict(cfg)
    if d.get("segments", "fixed") == "fixed":
        for k in SHOT_FIELDS:
            d.pop(k, None)
    return d
