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
    write_parquet, write_stage (Lance data files), write_lancedb (commits), optimize   driver: the writer
    write_wait   writer.writers > 1: driver waiting on the write tasks (they write Parquet + Lance files)
    pipeline     wall time from the first Ray stage to the last row
    total        wall time of the whole run
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import sys
import time
import uuid

import pyarrow as pa

from jobs import cluster, dataset, gpu_decode
from jobs.assembler import RunIdentity, VideoAssembler
from jobs.breaker import Breaker, BreakerTripped
from jobs.config import ConfigError, JobConfig, build_config
from jobs.decoder import decode_config
from jobs.deletions import guard_deletions
from jobs.encoder import ModelError, inspect_model
from jobs.failures import bug_reason
from jobs.errors import InternalError, PipelineError, ray_start_errors
from jobs.identity import identity_encoder
from jobs.incremental import changed_mask, gone_videos, processing_id
from jobs.labeler import Labeler
from jobs.labelset import check_label_set, resolve_labels
from xclip_store import LeaseConfig, LeaseError, open_output
from jobs.reader import InputError, list_inputs
from jobs.report import RunReport
from jobs.resume import mark_interrupted
from jobs.visibility import KeepGood
from xclip_store.retry import PROGRAMMING_ERRORS, short_error
from xclip_store.writer import OutputError, Writer
from moderation.job import ModerationRun
from moderation.store import FramePdqSink
from schemas import SEGMENTS_TABLE, STATUSES, VIDEOS_TABLE, RunManifest

log = logging.getLogger(__name__)

JobError = (ConfigError, ModelError, OutputError, LeaseError, InputError)


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
    num_partial: int = 0

    def format(self) -> str:
        c = self.counts
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in self.stage_seconds.items())
        return (f"run {self.run_id}: {self.num_inputs} videos: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, "
                f"{c.get('skipped', 0)} skipped"
                + (f" ({self.num_partial} of the ok partial)" if self.num_partial else "")
                + (f", {self.num_unchanged} unchanged (kept)" if self.num_unchanged else "")
                + (f", {c.get('deleted', 0)} deleted (gone from the source)" if c.get("deleted") else "")
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


def _manifest(cfg, info, dcfg, run_id, started, status, counts, n_inputs, n_unchanged, n_segments, seconds,
              clips_per_s, tables, files, n_deleted=0, error="", listing_errors=()) -> RunManifest:
    return RunManifest(
        run_id=run_id, package_version=_package_version(), started_at=started,
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat() if status != "running" else "",
        inputs=list(cfg.reader.inputs), output=cfg.writer.output, num_inputs=n_inputs, num_unchanged=n_unchanged,
        counts={**{s: int(counts.get(s, 0)) for s in STATUSES}, "unchanged": int(n_unchanged),
                "deleted": int(n_deleted)}, num_segments=n_segments,
        model_source=cfg.encoder.model, model_id=info.model_id, weights_sha256=info.weights_sha256,
        label_set={"name": info.label_set_name, "sha256": info.label_set_sha256, "num_labels": len(info.labels),
                   "labels": list(info.labels)},
        decode_config=dataclasses.asdict(dcfg), config=cfg.to_dict(),
        stage_seconds=seconds, clips_per_s=clips_per_s, tables=tables, parquet_files=files, status=status,
        error=error, listing_errors=list(listing_errors)[:100])


def side_tables(cfg: JobConfig, info) -> dict:
    """The per-segment side tables this run writes (``schemas.features``)."""
    from schemas.features import PROMPT_FEATURES_TABLE, THUMBNAILS_TABLE, prompt_features_schema, thumbnails_schema

    out = {THUMBNAILS_TABLE: thumbnails_schema()} if cfg.decoder.thumbnails else {}
    if cfg.encoder.store_prompt_features:
        out[PROMPT_FEATURES_TABLE] = prompt_features_schema(info.num_tokens, info.dim)
    if cfg.decoder.decode.segments == "shots":  # one row per shot (schemas.shots), keyed by shot_id
        from schemas.shots import SHOTS_TABLE, shots_schema

        out[SHOTS_TABLE] = shots_schema(info.dim)
    return out


def run(cfg: JobConfig, *, progress_every_s: float = 10.0) -> RunSummary:
    """Run the job described by ``cfg`` (see module doc)."""
    t_start = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    run_id = cfg.run_id or make_run_id()
    seconds: dict[str, float] = {}
    cfg = resolve_labels(cfg)  # --labels not given: the output's current label set (jobs.labelset)

    t0 = time.perf_counter()
    info = inspect_model(cfg.encoder)
    seconds["model_check"] = time.perf_counter() - t0
    try:
        dcfg = decode_config(cfg.decoder, frames_per_clip=info.num_frames, crop_size=info.crop_size,
                             shortest_edge=info.shortest_edge)
    except ValueError as e:
        raise ConfigError(f"decoder settings do not fit this model: {e}") from None
    moderation = ModerationRun.start(cfg, model_id=info.model_id, run_id=run_id, dcfg=dcfg)  # --policy
    t0 = time.perf_counter()
    listing_errors: list[str] = []
    inputs = list_inputs(cfg.reader, errors=listing_errors)
    seconds["list"] = time.perf_counter() - t0
    log.info("run %s: %d inputs listed in %.1fs", run_id, inputs.num_rows, seconds["list"])
    lease = open_output(cfg.writer.output, mode="w", command="run", run_id=run_id,  # takes the lease
                        lease=LeaseConfig(heartbeat_s=cfg.writer.lease_heartbeat_s,
                                          stale_after_s=cfg.writer.lease_stale_after_s))
    try:
        return _run_leased(cfg, info, dcfg, inputs, lease, run_id=run_id, started=started, seconds=seconds,
                           t_start=t_start, progress_every_s=progress_every_s, moderation=moderation,
                           listing_errors=listing_errors)
    finally:
        lease.release()


def _run_leased(cfg, info, dcfg, inputs, lease, *, run_id, started, seconds, t_start, progress_every_s,
                moderation=None, listing_errors=()):
    """The run once it holds the output lease: incremental selection, deletions, pipeline, manifest."""
    import ray

    check_label_set(cfg, info)  # one label set per index (finishes a killed relabel first)
    outputs = {"thumbnails": cfg.decoder.thumbnails, "prompt_features": cfg.encoder.store_prompt_features,
               "policy": moderation.policy.policy_hash if moderation else None,
               "blocklist": cfg.encoder.blocklist if moderation else None}
    writer = Writer(cfg.writer, run_id=run_id, dim=info.dim,
                    processing_id=processing_id(info, dcfg, identity_encoder(cfg), outputs=outputs),
                    side_tables=side_tables(cfg, info), output=lease)
    mark_interrupted(writer, run_id)
    pdq = FramePdqSink(cfg.writer.output, run_id)  # per-second PDQ of every ok video (frame_pdq)
    writer.before_videos_commit = lambda videos: _before_videos(videos, pdq, moderation)  # fails closed
    writer.repair_duplicates()
    listed, num_listed, num_unchanged = inputs, inputs.num_rows, 0
    t0 = time.perf_counter()
    indexed = writer.indexed()
    keep_good = KeepGood(indexed)  # failed rows never hide earlier ok rows (jobs.visibility)
    writer.keep_visible(keep_good.ok_ids())
    if not cfg.writer.full:
        keep = changed_mask(inputs, indexed, processing_id=writer.processing_id)
        inputs = inputs.filter(pa.array(keep, pa.bool_()))
        num_unchanged = num_listed - inputs.num_rows
        log.info("run %s: %d of %d inputs unchanged since they were indexed: kept as they are",
                 run_id, num_unchanged, num_listed)
    gone = guard_deletions(gone_videos(indexed, listed, cfg.reader), indexed, listed, cfg.reader,
                           listing_errors=list(listing_errors), max_share=cfg.writer.max_delete_share)
    seconds["incremental"] = time.perf_counter() - t0
    manifest_path = f"runs/{run_id}.json"
    assembler = VideoAssembler(dim=info.dim, labeler=Labeler(info.labels, cfg.encoder.top_k),
                               identity=RunIdentity(run_id, info.model_id, info.label_set_id))
    n_deleted = 0
    report = RunReport()

    def manifest(status, tables=None, clips_per_s=0.0, error=""):
        return _manifest(cfg, info, dcfg, run_id, started, status, assembler.counts, num_listed, num_unchanged,
                         assembler.num_segments, seconds, clips_per_s, tables or {}, writer.parquet_files,
                         n_deleted=n_deleted, error=error, listing_errors=list(listing_errors))

    writer.write_text(manifest_path, manifest("running").to_json())
    pooled = None  # writer.writers > 1: the write pool (xclip_store.pooled)
    try:
        t0 = time.perf_counter()
        n_deleted = writer.delete_videos(gone, mark=cfg.writer.on_deleted == "mark")
        if gone:  # their URIs, for the runs page of `xclip-index serve` (xclip_serve.runs)
            ids = set(gone)
            writer.write_text(f"runs/{run_id}-deleted.txt", "".join(
                u + "\n" for v, u in zip(indexed.column("video_id").to_pylist(), indexed.column("uri").to_pylist())
                if v in ids))
        seconds["delete"] = time.perf_counter() - t0
        if n_deleted:
            log.info("run %s: %d videos gone from the source: %s", run_id, n_deleted,
                     "marked deleted" if cfg.writer.on_deleted == "mark" else "deleted")
        t_assemble = 0.0
        failure, internal = None, False
        breaker = Breaker(first_n=cfg.decoder.breaker_first_n, max_share=cfg.decoder.breaker_max_share)
        t_pipe = time.perf_counter()
        if inputs.num_rows:
            t0 = time.perf_counter()
            with ray_start_errors(*JobError):
                cluster.connect(cfg.ray_address)
                # GPU defaults (precision, batch, compile) and the NVDEC share, from what the cluster has
                cfg, dcfg = gpu_decode.resolve_for_cluster(cfg, dcfg, ray.cluster_resources())
                plan = cluster.plan_resources(cfg.encoder, cfg.decoder, ray.cluster_resources(), writers=cfg.writer.writers,
                                              clip_bytes=info.num_frames * info.crop_size ** 2 * 3)
            seconds["ray_init"] = time.perf_counter() - t0
            if cfg.writer.writers > 1:  # chunks written by Ray tasks, committed here
                from jobs.write_tasks import RayTasks
                from xclip_store.pooled import use_pool
                pooled = use_pool(writer, RayTasks(num_cpus=plan.write_task_cpus))
            log.info("resources: %s", plan)
            t_pipe = time.perf_counter()
            last_report = t_pipe
            try:
                ds = dataset.build(cfg, inputs, info, dcfg, plan,
                                   encoder_extra=moderation.encoder_kwargs if moderation else None)
                for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                    lease.check()
                    t0 = time.perf_counter()
                    seg_tables, video_tables = assembler.add(batch)
                    t_assemble += time.perf_counter() - t0
                    kept = [keep_good.filter(t) for t in video_tables]  # jobs.visibility
                    pdq.add(batch)  # buffered before the writer may commit these videos rows
                    if moderation:  # decided before the writer may commit these videos rows
                        moderation.add(batch, kept)
                    for name, t in assembler.take_side_tables():
                        writer.add(name, t)
                    for t in seg_tables:
                        writer.add(SEGMENTS_TABLE, t)
                    for t, k in zip(video_tables, kept):
                        _add_rows(writer, k)
                        report.add_videos(t)
                        breaker.observe(t)
                    report.tick(time.perf_counter() - t_pipe, sum(assembler.counts.values()), assembler.num_segments)
                    if time.perf_counter() - last_report >= progress_every_s:
                        last_report = time.perf_counter()
                        _progress(assembler, inputs.num_rows, last_report - t_pipe)
            except BreakerTripped as e:
                failure, internal = str(e), True
                log.error("%s", failure)
            except JobError:
                raise
            except Exception as e:  # Ray gave up, or a task (or the driver) raised a bug: record, then fail
                # a bug in a Ray task arrives as RayTaskError(TypeError), itself a TypeError: ask bug_reason first
                bug = bug_reason(e)
                if bug is None and isinstance(e, PROGRAMMING_ERRORS):
                    log.exception("a bug on the driver")
                    bug = short_error(e)
                if bug:
                    failure, internal = (f"internal error (a bug in xclip-index or a dependency, not a bad "
                                         f"video): {bug}; unfinished videos were left unwritten, rerun after "
                                         f"the fix"), True
                else:
                    failure = f"pipeline error: {type(e).__name__}: {e}"
                log.error("%s", failure)
        seconds["pipeline"] = time.perf_counter() - t_pipe
        if not internal:  # after a bug or a trip, unfinished inputs are not known to be bad: no rows
            for t in assembler.finish(inputs, reason=failure[:500] if failure else None):
                kept = keep_good.filter(t, breakdown=failure is not None)
                if moderation:
                    moderation.add_videos(kept)
                _add_rows(writer, kept)
                report.add_videos(t)
        lease.check()
        tables = writer.close()
        if pooled is not None:
            tables["write_pool"] = pooled.stats()
            seconds["write_wait"] = pooled.wait_s
        tables["frame_pdq"] = pdq.close()
        if moderation:
            tables["moderation"] = moderation.close(writer)
        seconds.update(decode=assembler.decode_s, encode=assembler.encode_s, assemble=t_assemble,
                       write_parquet=writer.seconds["parquet"], write_stage=writer.seconds["stage"],
                       write_lancedb=writer.seconds["lancedb"],
                       optimize=writer.seconds["optimize"], total=time.perf_counter() - t_start)
        clips_per_s = assembler.num_segments / seconds["pipeline"] if seconds["pipeline"] > 0 else 0.0
        final = dataclasses.replace(manifest("failed" if failure else "finished", tables, clips_per_s,
                                             error=failure or ""), num_partial=assembler.num_partial)
        writer.write_text(f"runs/{run_id}.html", report.html(final))
        manifest_uri = writer.write_text(manifest_path, final.to_json())
    except BaseException as e:  # the manifest never stays "running" once this process is done with it
        if pooled is not None and pooled.pool.in_flight:  # no commit after this; their Parquet files go
            with contextlib.suppress(Exception):  # best effort: the manifest below matters more
                pooled.pool.abort()
        try:
            error = f"{type(e).__name__}: {e}"[:2000]
            writer.write_text(manifest_path, manifest("failed", error=error).to_json())
        except Exception as e2:
            log.error("could not record the failure in %s: %s", manifest_path, short_error(e2))
        raise
    summary = RunSummary(run_id=run_id, counts=dict(final.counts), num_inputs=num_listed,
                         num_unchanged=num_unchanged,
                         num_segments=assembler.num_segments, clips_per_s=clips_per_s,
                         stage_seconds={k: round(v, 3) for k, v in seconds.items()},
                         manifest_uri=manifest_uri, tables=tables, num_partial=assembler.num_partial)
    if failure:
        raise (InternalError if internal else PipelineError)(f"{failure}\n{summary.format()}")
    return summary


def _before_videos(videos: pa.Table, pdq, moderation) -> None:
    """Committed just before each chunk of videos rows, so that no committed videos row lacks them
    after a crash (the next run keeps such a video as unchanged): the per-second PDQ buffered so far
    and, with --policy, the moderation decisions of the chunk's videos."""
    pdq.flush()
    if moderation:
        moderation.commit_chunk(videos)


def _add_rows(writer, videos: pa.Table) -> None:
    if videos.num_rows:
        writer.add(VIDEOS_TABLE, videos)


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
