"""One frozen config per stage, validated when built, plus the TOML loader.

A ``job.toml`` has one table per stage; every key is optional::

    [reader]
    include = ["*.mp4"]          # fnmatch globs on the URI; empty = everything
    exclude = ["*/tmp/*"]
    extensions = ["mp4", "mkv"]  # default: VIDEO_EXTENSIONS

    [decoder]
    sampler = "fixed"            # "fixed" | "tsn"
    segments = "fixed"           # "fixed" | "shots": windows inside detected shots (xclip_core.video.shots)
    window_s = 2.0
    stride_s = 2.0               # default: window_s
    max_clips_per_video = 64     # optional cap (evenly spaced subset); default: none, whole video
    max_duration_s = 3600
    timeout_s = 300
    max_pixels = 8294400         # skip inputs above 4K (width x height)
    backend = "pyav"             # "pyav" | "decord"
    approximate = false          # pyav only: decode reference frames only (faster, nearest frames)
    num_cpus = 1                 # CPUs per decode task
    memory_mb = 1024             # memory reserved per decode task
    thumbnails = true            # a ~160 px JPEG per clip in the thumbnails table
    cpu_clips_per_s = 18.0       # planner: clips/s per decode core (docs/planner.md)
    nvdec_share = 0.3            # share of videos the GPU actors decode with NVDEC; default: from
                                 # measured capacities (jobs.gpu_decode); 0 = CPU only; no GPU: 0

    [encoder]
    labels = "kinetics400"       # label set name or file (default: the output's current set; kinetics400 for a new one)
    batch_size = 16              # clips per model call (default: 128 on CUDA, 16 on CPU)
    precision = "auto"           # "auto" (bf16 on CUDA, fp32 on CPU) | "fp32" | "fp16" | "bf16"
    top_k = 5
    num_actors = 0               # 0 = sized from the cluster's resources
    store_prompt_features = false  # visual tokens per clip in prompt_features (exact relabel)
    num_cpus = 0                 # CPUs per actor; 0 = automatic
    max_gpu_actors = 0           # GPU actors the autoscaling pool may grow to (GPUs the autoscaler starts)
    gpu_clips_per_s = 5000.0     # planner: clips/s per GPU (docs/planner.md)

    [writer]
    chunk_rows = 4096            # segment rows per Parquet file / LanceDB commit
    optimize = true              # LanceDB optimize() at the end
    vector_index_min_rows = 5000 # build the ANN index (xclip_store.indexes) from this many rows
    full = false                 # true: process every input (default: only new or changed ones)
    on_deleted = "delete"        # videos gone from the source: "delete" | "mark" (status 'deleted')
    max_delete_share = 0.1       # refuse a run that would delete more than this share of a prefix (jobs.deletions)
    lease_heartbeat_s = 30       # output lease (one run at a time per output)
    lease_stale_after_s = 300
    keep_versions_days = 7       # LanceDB versions kept for time travel
    writers = 1                  # Ray tasks writing Parquet + Lance data files (xclip_store.pooled);
                                 # 1 = in the driver; one committer either way
    max_in_flight = 0            # chunks written but not yet committed at most; 0 = 2 x writers

Command line flags override the file.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import re
from typing import Any

import tomllib

from xclip_core.video.config import DecodeConfig

VIDEO_EXTENSIONS = ("mp4", "m4v", "mkv", "webm", "avi", "mov", "qt", "mpg", "mpeg", "m2v", "ts",
                    "mts", "m2ts", "flv", "wmv", "asf", "3gp", "3g2", "ogv", "vob", "mxf", "gif")
JOB_BACKENDS = ("pyav", "decord")  # CPU decoders; NVDEC is a share of the videos (decoder.nvdec_share)
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")


DEFAULT_LABELS = "kinetics400"  # the label set of a new output when none is given


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _tuple(value, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    _check(all(isinstance(v, str) for v in value), f"{name}: expected a list of strings, got {value!r}")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    """Where the videos come from (``jobs.reader``)."""
    inputs: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    extensions: tuple[str, ...] = VIDEO_EXTENSIONS

    def __post_init__(self):
        object.__setattr__(self, "inputs", _tuple(self.inputs, "reader.inputs"))
        object.__setattr__(self, "include", _tuple(self.include, "reader.include"))
        object.__setattr__(self, "exclude", _tuple(self.exclude, "reader.exclude"))
        exts = tuple(e.lower().lstrip(".") for e in _tuple(self.extensions, "reader.extensions"))
        _check(len(exts) > 0 and all(exts), "reader.extensions: must list at least one extension")
        object.__setattr__(self, "extensions", exts)


# The [decoder] keys that are ``xclip_core.video.DecodeConfig`` knobs: defined and validated there
# (``decoder.<key>: ...`` errors), held in ``DecoderConfig.decode``; the other [decoder] keys are the job's.
DECODE_KEYS = ("sampler", "window_s", "stride_s", "max_clips_per_video", "max_duration_s", "timeout_s",
               "max_pixels", "backend", "approximate", "num_threads", "nvdec_share",
               "segments", "shot_threshold", "shot_min_score", "shot_min_s")
NO_TIMEOUT_S = 1e9  # timeout_s = None: no decoder timeout


def _job_decode() -> DecodeConfig:
    return DecodeConfig(nvdec_share=None)  # the job's default: the NVDEC share from measured capacities


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """How clips are cut from each video (``jobs.decoder``). ``decode``: the sampling and decoding
    knobs (``DECODE_KEYS``); crop size, shortest edge and frames per clip in it are placeholders,
    ``jobs.decoder.decode_config`` sets them from the model's own configs. Build it from [decoder]
    settings with ``DecoderConfig.from_settings``."""
    decode: DecodeConfig = dataclasses.field(default_factory=_job_decode)
    num_cpus: float = 1.0
    memory_mb: int = 1024
    # the breaker (jobs.breaker): stop the run when the first N finished videos all fail with the
    # same reason, or over this share does once N are done; breaker_first_n = 0 turns it off
    breaker_first_n: int = 20
    breaker_max_share: float = 0.5
    thumbnails: bool = True      # a small JPEG per clip (jobs.thumbnails) in the thumbnails table
    cpu_clips_per_s: float = 18.0  # planner: clips/s one core decodes (measured 293/16, 360p H.264; docs/planner.md)

    @classmethod
    def from_settings(cls, **settings) -> "DecoderConfig":
        """From [decoder] keys (TOML file and flags): ``DECODE_KEYS`` make ``decode`` (job defaults:
        nvdec_share None = automatic; timeout_s None = no timeout), the rest are fields here."""
        knobs = {k: settings.pop(k) for k in DECODE_KEYS if k in settings}
        if "timeout_s" in knobs and knobs["timeout_s"] is None:
            knobs["timeout_s"] = NO_TIMEOUT_S
        try:
            # segments = "shots" decodes on the CPU: no automatic NVDEC share
            decode = DecodeConfig(**{"nvdec_share": None if knobs.get("segments", "fixed") == "fixed" else 0.0,
                                     **knobs})
        except ValueError as e:
            raise ConfigError(f"decoder.{e}") from None
        return cls(decode=decode, **settings)

    def settings(self) -> dict[str, Any]:
        """The [decoder] keys and their values (what ``from_settings`` takes)."""
        job = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "decode"}
        return {**{k: getattr(self.decode, k) for k in DECODE_KEYS}, **job}

    def __post_init__(self):
        backend = self.decode.backend
        _check(backend in JOB_BACKENDS,
               f"decoder.backend: expected one of {JOB_BACKENDS} (NVDEC: decoder.nvdec_share), got {backend!r}")
        _check(backend != "decord" or importlib.util.find_spec("decord") is not None,
               "decoder.backend = 'decord' needs decord: pip install 'xclip-index[decord]' (or use 'pyav')")
        _check(self.breaker_first_n >= 0, f"decoder.breaker_first_n: must be >= 0 (0: off), got {self.breaker_first_n}")
        _check(0 < self.breaker_max_share <= 1,
               f"decoder.breaker_max_share: must be in (0, 1], got {self.breaker_max_share}")
        _check(self.memory_mb >= 1, f"decoder.memory_mb: must be >= 1, got {self.memory_mb}")
        _check(self.num_cpus > 0, f"decoder.num_cpus: must be > 0, got {self.num_cpus}")
        _check(self.cpu_clips_per_s > 0, f"decoder.cpu_clips_per_s: must be > 0, got {self.cpu_clips_per_s}")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """The model stage (``jobs.encoder``)."""
    model: str = ""
    labels: str | None = None        # None: the output's current label set, else DEFAULT_LABELS (jobs.labelset)
    batch_size: int | None = None    # None = by device (jobs.gpu_defaults): 128 on CUDA, 16 on CPU
    precision: str = "auto"          # "auto" = bf16 on CUDA, fp32 on CPU (jobs.gpu_defaults)
    device: str = "auto"
    top_k: int = 5
    prompt_template: str = "{}"
    num_actors: int = 0
    num_cpus: float = 0.0
    compile: bool | None = None  # torch.compile the encoder step; None = on for CUDA, off for CPU
    store_prompt_features: bool = False  # also output each clip's visual tokens (prompt_features table)
    policy: str | None = None    # moderation policy YAML (moderation.policy); scores every window
    blocklist: str | None = None  # known-bad videos, .vpdq, .pdq (file, folder or s3:// prefix); needs policy
    max_gpu_actors: int = 0      # GPU actors the pool may grow to, GPUs an autoscaler must start included
    gpu_clips_per_s: float = 5000.0  # planner: clips/s one GPU encodes (measured H200, bf16; docs/planner.md)

    def __post_init__(self):
        _check(bool(self.model), "encoder.model: a model source is required (--model)")
        _check(self.labels is None or bool(self.labels), "encoder.labels: a label set name or file is required")
        _check(self.batch_size is None or self.batch_size >= 1, f"encoder.batch_size: must be >= 1, got {self.batch_size}")
        _check(self.precision in PRECISIONS,
               f"encoder.precision: expected one of {PRECISIONS}, got {self.precision!r}")
        _check(self.device in DEVICES, f"encoder.device: expected one of {DEVICES}, got {self.device!r}")
        _check(self.top_k >= 1, f"encoder.top_k: must be >= 1, got {self.top_k}")
        _check("{}" in self.prompt_template, "encoder.prompt_template: must contain '{}'")
        _check(self.num_actors >= 0, f"encoder.num_actors: must be >= 0, got {self.num_actors}")
        _check(self.num_cpus >= 0, f"encoder.num_cpus: must be >= 0, got {self.num_cpus}")
        _check(self.max_gpu_actors >= 0, f"encoder.max_gpu_actors: must be >= 0, got {self.max_gpu_actors}")
        _check(self.gpu_clips_per_s > 0, f"encoder.gpu_clips_per_s: must be > 0, got {self.gpu_clips_per_s}")


@dataclasses.dataclass(frozen=True)
class WriterConfig:
    """Where and how results are written (``xclip_store.writer``)."""
    output: str = ""
    chunk_rows: int = 4096
    optimize: bool = True
    vector_index_min_rows: int = 5000
    skip_unchanged: bool = False  # deprecated no-op: incremental is the default (see ``full``)
    full: bool = False            # process every input, not only new/changed ones (jobs.incremental)
    on_deleted: str = "delete"    # videos gone from the source: "delete" their rows | "mark" them deleted
    max_delete_share: float = 0.1  # refuse to delete more than this share of a prefix's videos (jobs.deletions)
    lease_heartbeat_s: float = 30.0      # output lease refresh period (xclip_store.lease)
    lease_stale_after_s: float = 300.0   # a lease not refreshed for this long is taken over
    keep_versions_days: float = 7.0      # LanceDB versions older than this are cleaned up at the end
    review_out: str | None = None  # with encoder.policy: JSON lines of review/block decisions
    writers: int = 1              # write tasks at once (xclip_store.write_pool); 1 = in the driver
    max_in_flight: int = 0        # chunks submitted but not committed at most; 0 = 2 x writers

    def __post_init__(self):
        _check(bool(self.output), "writer.output: an output location is required (--output)")
        _check(self.on_deleted in ("delete", "mark"),
               f"writer.on_deleted: must be 'delete' or 'mark', got {self.on_deleted!r}")
        _check(isinstance(self.max_delete_share, (int, float)) and not isinstance(self.max_delete_share, bool)
               and 0 <= self.max_delete_share <= 1,
               f"writer.max_delete_share (--max-delete-share): must be a share from 0 to 1, "
               f"got {self.max_delete_share!r}")
        _check(self.lease_heartbeat_s > 0 and self.lease_stale_after_s > 2 * self.lease_heartbeat_s,
               f"writer.lease_stale_after_s: must be > 2 * lease_heartbeat_s > 0, got {self.lease_stale_after_s} "
               f"and {self.lease_heartbeat_s}")
        _check(self.keep_versions_days >= 0,
               f"writer.keep_versions_days: must be >= 0, got {self.keep_versions_days}")
        _check(self.chunk_rows >= 1, f"writer.chunk_rows: must be >= 1, got {self.chunk_rows}")
        _check(isinstance(self.writers, int) and not isinstance(self.writers, bool) and self.writers >= 1,
               f"writer.writers: must be an integer >= 1 (1: write in the driver), got {self.writers!r}")
        _check(isinstance(self.max_in_flight, int) and not isinstance(self.max_in_flight, bool)
               and (self.max_in_flight == 0 or self.max_in_flight >= self.writers),
               f"writer.max_in_flight: must be 0 (2 x writers) or an integer >= writer.writers "
               f"({self.writers}), got {self.max_in_flight!r}")
        _check(self.vector_index_min_rows >= 256,
               f"writer.vector_index_min_rows: must be >= 256 (IVF-PQ training), got {self.vector_index_min_rows}")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    reader: ReaderConfig
    decoder: DecoderConfig
    encoder: EncoderConfig
    writer: WriterConfig
    ray_address: str | None = None
    run_id: str | None = None

    def __post_init__(self):
        _check(len(self.reader.inputs) > 0, "reader.inputs: at least one --input is required")
        _check(self.run_id is None or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", self.run_id) is not None,
               f"run_id: letters, digits, '.', '_' and '-' only (it names files), got {self.run_id!r}")

    def to_dict(self) -> dict:
        """The settings as nested dicts, [decoder] as its flat keys (what a job TOML holds)."""
        return {**dataclasses.asdict(self), "decoder": self.decoder.settings()}


_STAGES = {"reader": ReaderConfig, "decoder": DecoderConfig, "encoder": EncoderConfig, "writer": WriterConfig}


def _build(cls, section: str, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(cls)}
    if cls is DecoderConfig:
        known = known - {"decode"} | set(DECODE_KEYS)
    unknown = set(values) - known
    _check(not unknown, f"[{section}]: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    try:
        return cls.from_settings(**values) if cls is DecoderConfig else cls(**values)
    except TypeError as e:  # a wrong type that comparison could not handle
        raise ConfigError(f"[{section}]: {e}") from None


def build_config(file_values: dict[str, Any] | None = None, overrides: dict[str, dict[str, Any]] | None = None,
                 *, ray_address: str | None = None, run_id: str | None = None) -> JobConfig:
    """Merge a parsed TOML document with per-stage overrides (overrides win; a
    None override means "not given") and validate everything."""
    file_values = dict(file_values or {})
    top_unknown = set(file_values) - set(_STAGES) - {"ray_address", "run_id"}
    _check(not top_unknown, f"job config: unknown table(s)/key(s) {sorted(top_unknown)}; "
                            f"expected {sorted(_STAGES)}")
    stages, given = {}, {}
    for name, cls in _STAGES.items():
        values = dict(file_values.get(name) or {})
        _check(isinstance(values, dict), f"job config: [{name}] must be a table")
        values.update({k: v for k, v in ((overrides or {}).get(name) or {}).items() if v is not None})
        stages[name] = _build(cls, name, values)
        given[name] = values
    _full_coverage(stages, given)
    return JobConfig(**stages, ray_address=ray_address or file_values.get("ray_address"),
                     run_id=run_id or file_values.get("run_id"))


def _full_coverage(stages: dict, given: dict) -> None:
    """Under a moderation policy every window of every video is scored: no clip cap."""
    _check(not stages["encoder"].blocklist or bool(stages["encoder"].policy),
           "encoder.blocklist: needs a moderation policy (--policy; 'example' for the packaged one)")
    if not stages["encoder"].policy:
        return
    cap = given["decoder"].get("max_clips_per_video")
    _check(cap is None, f"decoder.max_clips_per_video = {cap}: a moderation policy (--policy) scores every "
                        "window of every video; remove the cap (or --max-clips-per-video)")
    decoder = stages["decoder"]
    stages["decoder"] = dataclasses.replace(decoder, decode=decoder.decode.with_(max_clips_per_video=None))


def load_toml(path: str) -> dict[str, Any]:
    """Parse a job TOML file (local path or s3:// URI)."""
    from xclip_core import storage

    try:
        text = storage.read_bytes(path).decode("utf-8")
    except (OSError, FileNotFoundError) as e:
        raise ConfigError(f"--config {path}: cannot read ({type(e).__name__}: {e})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config {path}: invalid TOML: {e}") from None
