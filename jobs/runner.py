"""The indexing job: reader -> decoder -> encoder -> (labeler, assembler) -> writer, timed per stage.

From Python::

    from jobs.runner import index_videos
    summary = index_videos(["s3://bucket/videos/"], "s3://bucket/index", "path/or/s3/model",
                           labels="kinetics400", encoder={"batch_size": 8})
    print(summary.format())

``run(JobConfig)`` is the same with a fully built config. Both return a
``RunSummary`` and raise ``JobError`` (a ``ConfigError``, ``ModelError`` or
``OutputError`` before anything ran, or a pipeline failure) when the job could
not run; failed videos are not errors, they are rows.

Stage seconds in the summary and manifest:
    model_check  driver: load model/tokenizer/labels once to validate them
    list         driver: listing inputs
    ray_init     connecting to / starting Ray
    decode       summed over decode tasks (task-seconds, runs in parallel)
    encode       summed over encoder actors (model seconds, runs in parallel)
    assemble     driver: collecting clips into videos, top-k labels
    write_parquet, write_lancedb, optimize   driver: the writer
    pipeline     wall time from the first Ray stage to the last row
    total        wall time of the whole run
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import sys
import time
import uuid

import pyarrow as pa

from jobs import cluster, gpu_decode
from jobs.assembler import RunIdentity, VideoAssembler
from jobs.config import ConfigError, JobConfig, build_config
from jobs.decoder import decode_batch, decode_config
from jobs.encoder import Encoder, ModelError, inspect_model
from jobs.incremental import changed_mask
from jobs.labeler import Labeler
from jobs.reader import list_inputs
from jobs.writer import OutputError, Writer
from schemas import SEGMENTS_TABLE, STATUSES, VIDEOS_TABLE, RunManifest

log = logging.getLogger(__name__)

JobError = (ConfigError, ModelError, OutputError)


class PipelineError(RuntimeError):
    """The Ray pipeline broke down (results so far are written, rest marked failed)."""


@dataclasses.dataclass(frozen=True)
class RunSummary:
    run_id: str
    counts: dict
    num_inputs: int
    num_unchanged: int
    num_segments: int
    clips_per_s: float
    stage_seconds: dict
    manifest_uri: str
    tables: dict

    def format(self) -> str:
        c = self.counts
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        return (f"run {self.run_id}: {self.num_inputs} videos: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, "
                f"{c.get('skipped', 0)} skipped"
                + (f", {self.num_unchanged} unchanged (kept)" if self.num_unchanged else "")
                + f"; {self.num_segments} clips, {self.clips_per_s:.2f} clips/s\n"
                f"seconds per stage: {stages}\nmanifest: {self.manifest_uri}")


def make_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xclip-index")
    except PackageNotFoundError:
        return "0+unknown"


def _blocks(inputs: pa.Table, total_cpus: float) -> list[pa.Table]:
    """Split the input list into blocks: one decode task each, at most 64 videos per block."""
    n = inputs.num_rows
    count = min(n, max(math.ceil(n / 64), int(total_cpus) * 4))
    size = math.ceil(n / count)
    return [inputs.slice(i, size) for i in range(0, n, size)]


def _build_dataset(cfg: JobConfig, inputs: pa.Table, info, dcfg, plan):
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = sys.stderr.isatty()
    blocks = _blocks(inputs, plan.total_cpus)
    # A block whose task dies for good (e.g. a decoder crash killing its worker after retries) is
    # dropped instead of failing the run; its videos are then reported failed by the assembler.
    ctx.max_errored_blocks = max(1, len(blocks) // 10)
    ds = ray.data.from_arrow(blocks)
    # The memory request also keeps Ray from fusing decode into the encoder actors (it fuses
    # task -> actor stages with equal resource requests), which would serialise decoding there.
    ds = ds.map_batches(decode_batch, fn_kwargs={"cfg": dcfg}, batch_size=1, batch_format="pyarrow",
                        num_cpus=plan.decode_cpus, memory=cfg.decoder.memory_mb * 2**20, zero_copy_batch=True)
    ds = ds.map_batches(Encoder, fn_constructor_kwargs={"cfg": cfg.encoder, "labels": info.labels,
                                                              "num_threads": plan.torch_threads},
                        batch_size=cfg.encoder.batch_size, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=plan.num_actors),
                        num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus)
    return ds


def _manifest(cfg, info, dcfg, run_id, started, status, counts, n_inputs, n_unchanged, n_segments, seconds,
              clips_per_s, tables, files) -> RunManifest:
    return RunManifest(
        run_id=run_id, package_version=_package_version(), started_at=started,
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat() if status != "running" else "",
        inputs=list(cfg.reader.inputs), output=cfg.writer.output, num_inputs=n_inputs, num_unchanged=n_unchanged,
        counts={s: int(counts.get(s, 0)) for s in STATUSES}, num_segments=n_segments,
        model_source=cfg.encoder.model, model_id=info.model_id, weights_sha256=info.weights_sha256,
        label_set={"name": info.label_set_name, "sha256": info.label_set_sha256, "num_labels": len(info.labels)},
        decode_config=dataclasses.asdict(dcfg), config=cfg.to_dict(),
        stage_seconds=seconds, clips_per_s=clips_per_s, tables=tables, parquet_files=files, status=status)


def run(cfg: JobConfig, *, progress_every_s: float = 10.0) -> RunSummary:
    """Run the job described by ``cfg`` (see module doc)."""
    import ray

    t_start = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    run_id = cfg.run_id or make_run_id()
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    info = inspect_model(cfg.encoder)
    seconds["model_check"] = time.perf_counter() - t0
    try:
        dcfg = decode_config(cfg.decoder, frames_per_clip=info.num_frames, crop_size=info.crop_size,
                             shortest_edge=info.shortest_edge)
    except ValueError as e:
        raise ConfigError(f"decoder settings do not fit this model: {e}") from None
    t0 = time.perf_counter()
    inputs = list_inputs(cfg.reader)
    seconds["list"] = time.perf_counter() - t0
    log.info("run %s: %d inputs listed in %.1fs", run_id, inputs.num_rows, seconds["list"])

    writer = Writer(cfg.writer, run_id=run_id, dim=info.dim)
    num_listed, num_unchanged = inputs.num_rows, 0
    if cfg.writer.skip_unchanged:
        t0 = time.perf_counter()
        keep = changed_mask(inputs, writer.indexed_ok(), model_id=info.model_id, label_set=info.label_set_id)
        inputs = inputs.filter(pa.array(keep, pa.bool_()))
        num_unchanged = num_listed - inputs.num_rows
        seconds["skip_unchanged"] = time.perf_counter() - t0
        log.info("run %s: %d of %d inputs unchanged since they were indexed: kept as they are",
                 run_id, num_unchanged, num_listed)
    manifest_path = f"runs/{run_id}.json"
    writer.write_text(manifest_path, _manifest(cfg, info, dcfg, run_id, started, "running", {}, num_listed,
                                               num_unchanged, 0, seconds, 0.0, {}, []).to_json())
    assembler = VideoAssembler(dim=info.dim, labeler=Labeler(info.labels, cfg.encoder.top_k),
                               identity=RunIdentity(run_id, info.model_id, info.label_set_id))
    t_assemble = 0.0
    failure = None
    t_pipe = time.perf_counter()
    if inputs.num_rows:
        t0 = time.perf_counter()
        cluster.connect(cfg.ray_address)
        cfg, dcfg = gpu_decode.resolve_for_cluster(cfg, dcfg, ray.cluster_resources())  # GPU defaults, NVDEC share
        plan = cluster.plan_resources(cfg.encoder, cfg.decoder, ray.cluster_resources())
        seconds["ray_init"] = time.perf_counter() - t0
        log.info("resources: %s", plan)
        t_pipe = time.perf_counter()
        last_report = t_pipe
        try:
            ds = _build_dataset(cfg, inputs, info, dcfg, plan)
            for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                t0 = time.perf_counter()
                seg_tables, video_tables = assembler.add(batch)
                t_assemble += time.perf_counter() - t0
                for t in seg_tables:
                    writer.add(SEGMENTS_TABLE, t)
                for t in video_tables:
                    writer.add(VIDEOS_TABLE, t)
                if time.perf_counter() - last_report >= progress_every_s:
                    last_report = time.perf_counter()
                    _progress(assembler, inputs.num_rows, last_report - t_pipe)
        except Exception as e:  # Ray (or a commit) gave up: record what is missing, then fail
            failure = f"pipeline error: {type(e).__name__}: {e}"
            log.error("%s", failure)
    seconds["pipeline"] = time.perf_counter() - t_pipe
    for t in assembler.finish(inputs, reason=failure[:500] if failure else None):
        writer.add(VIDEOS_TABLE, t)
    tables = writer.close()
    seconds.update(decode=assembler.decode_s, encode=assembler.encode_s, assemble=t_assemble,
                   write_parquet=writer.seconds["parquet"], write_lancedb=writer.seconds["lancedb"],
                   optimize=writer.seconds["optimize"], total=time.perf_counter() - t_start)
    clips_per_s = assembler.num_segments / seconds["pipeline"] if seconds["pipeline"] > 0 else 0.0
    status = "failed" if failure else "finished"
    manifest = _manifest(cfg, info, dcfg, run_id, started, status, assembler.counts, num_listed, num_unchanged,
                         assembler.num_segments, seconds, clips_per_s, tables, writer.parquet_files)
    manifest_uri = writer.write_text(manifest_path, manifest.to_json())
    summary = RunSummary(run_id=run_id, counts=dict(manifest.counts), num_inputs=num_listed,
                         num_unchanged=num_unchanged,
                         num_segments=assembler.num_segments, clips_per_s=clips_per_s,
                         stage_seconds={k: round(v, 3) for k, v in seconds.items()},
                         manifest_uri=manifest_uri, tables=tables)
    if failure:
        raise PipelineError(f"{failure}\n{summary.format()}")
    return summary


def _progress(assembler: VideoAssembler, total: int, elapsed: float) -> None:
    c = assembler.counts
    done = sum(c.values())
    print(f"[xclip-index] {done}/{total} videos ({c.get('ok', 0)} ok, {c.get('failed', 0)} failed, "
          f"{c.get('skipped', 0)} skipped), {assembler.num_segments} clips, "
          f"{assembler.num_segments / max(elapsed, 1e-9):.1f} clips/s", file=sys.stderr, flush=True)


def index_videos(inputs: list[str] | str, output: str, model: str, *, labels: str | None = None,
                 ray_address: str | None = None, run_id: str | None = None, config_file: str | None = None,
                 reader: dict | None = None, decoder: dict | None = None, encoder: dict | None = None,
                 writer: dict | None = None) -> RunSummary:
    """Convenience entry point for scripts and the demo (keyword-only stage overrides)."""
    from jobs.config import load_toml

    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    overrides = {"reader": {**(reader or {}), "inputs": inputs},
                 "decoder": dict(decoder or {}),
                 "encoder": {**(encoder or {}), "model": model, "labels": labels},
                 "writer": {**(writer or {}), "output": output}}
    cfg = build_config(load_toml(config_file) if config_file else None, overrides,
                       ray_address=ray_address, run_id=run_id)
    return run(cfg)
