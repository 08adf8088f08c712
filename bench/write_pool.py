"""Write throughput of ``xclip_store.write_pool`` with 1 and N writer processes (issue 16, items 2 and 5).

    nice -n 19 python bench/write_pool.py --segments 200000 --writers 1,4 [--today] [--ray-data] \
        [--out bench/write_pool.json]

Rows: the real ``segments`` schema (512-d, 64 segments per video; ``bench/scale.py``'s
``segments_rows``), in 4,096-row chunks (64 new videos each). A few chunks are generated up front
and re-tagged with new video ids per chunk, so generating rows costs almost nothing in the loop.

Each writer count writes every chunk into a fresh output (a ``videos`` and a ``segments`` table,
BTree index on ``video_id``) through the job's write path, as ``jobs/runner.py`` drives it:
``xclip_store.writer.Writer`` (``chunk_rows`` 4,096, no optimize, unleased, no
``before_videos_commit``), ``indexed()`` and ``keep_visible`` first, then per chunk
``add("segments", ...)`` and ``add("videos", final rows)`` (a videos chunk every 4,096 videos,
the rest at ``flush``). ``writers = 1``: the writer stages each chunk (Parquet file, Lance data
files) and commits it in this process, as the job does; N: ``xclip_store.pooled.use_pool`` with
``jobs.write_tasks.RayTasks`` (N Ray tasks, Ray local with max(N, cores) logical CPUs) and the
writer commits in submission order through ``Writer.commit_staged`` (placeholder videos rows, then
the segments; videos chunks behind a barrier). ``N``: the pool's ``max_batch`` as the job leaves it
(up to ``max_in_flight`` chunks a commit); ``NbM``: up to M (``4b1``: a commit per chunk). Every
``commit_staged`` is timed. Segments/s = rows ÷ wall time from the first ``add`` to the end of
``flush``. (Repaired to this path on 2026-12-04; it used to commit through the removed
``flat_commit.FlatCommitter``.)

``--today``: the same chunks through today's writer path in this process (Parquet file, then
``merge_insert`` placeholder videos rows and ``merge_insert(segment_id)`` +
``when_not_matched_by_source_delete``, as ``jobs/writer.py``). ``--ray-data``: Ray Data's
``Dataset.write_lance`` (append) of the same chunks, no Parquet, one commit at the end: does it
work with this pylance (with Ray 2.60 and pylance 13.0.0: no, ``TypeError`` on
``storage_options_provider``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local benchmark cluster, as in the tests
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from scale import CHUNK_VIDEOS, DIM, PER_VIDEO, segments_rows  # noqa: E402

from schemas import STATUS_INDEXING, STATUS_OK, videos_schema  # noqa: E402
from schemas.output import from_columns  # noqa: E402
from schemas.sql import sql_list  # noqa: E402

TEMPLATES = 4
RUN = "bench"


def retag(template: pa.Table, first_video: int) -> pa.Table:
    """``template``'s rows as videos ``first_video``... (new ids; same embeddings)."""
    vids = np.repeat(np.array([f"{v:040x}" for v in range(first_video, first_video + CHUNK_VIDEOS)], object),
                     PER_VIDEO)
    idx = template.column("segment_index").to_numpy()
    seg_ids = [f"{v}:{i:06d}" for v, i in zip(vids, idx)]
    t = template.set_column(0, template.schema.field(0), pa.array(seg_ids))
    t = t.set_column(1, t.schema.field(1), pa.array(vids, pa.string()))
    return t.set_column(2, t.schema.field(2), pc.binary_join_element_wise("s3://bench/", t.column(1), ".mp4", ""))


def video_rows(chunk: pa.Table, status: str) -> pa.Table:
    first = chunk.group_by("video_id", use_threads=False).aggregate([("uri", "first")])
    n = first.num_rows
    return from_columns({
        "video_id": first.column("video_id"), "uri": first.column("uri_first"), "status": [status] * n,
        "num_segments": [0 if status == STATUS_INDEXING else PER_VIDEO] * n,
        "model_id": [chunk.column("model_id")[0].as_py()] * n, "label_set": [chunk.column("label_set")[0].as_py()] * n,
        "run_id": [RUN] * n, "indexed_at": pa.array([chunk.column("indexed_at")[0].value] * n,
                                                    pa.timestamp("us", tz="UTC")),
    }, videos_schema(DIM), n)


def new_output(path: str):
    import lancedb
    from lancedb.index import BTree

    from schemas import segments_schema

    db = lancedb.connect(os.path.join(path, "lancedb"))
    tbls = {"videos": db.create_table("videos", schema=videos_schema(DIM)),
            "segments": db.create_table("segments", schema=segments_schema(DIM))}
    for t in tbls.values():
        t.create_index("video_id", config=BTree())
    return tbls


def run_pool(path: str, chunks: int, templates: list[pa.Table], writers: int, max_batch: int = 0) -> dict:
    """One run through the job's write path (``jobs/runner.py``): ``xclip_store.writer.Writer`` (in
    this process, unleased, no optimize), ``indexed()`` and ``keep_visible`` first; ``writers > 1``:
    ``xclip_store.pooled.use_pool`` with ``jobs.write_tasks.RayTasks``; ``max_batch`` > 0 overrides
    the pool's (the job leaves it 0: up to ``max_in_flight``). Every ``Writer.commit_staged`` is timed."""
    import dataclasses

    import lance

    from jobs.config import WriterConfig
    from xclip_store.writer import Writer

    new_output(path)  # the tables and their BTree index on video_id; the Writer opens them
    w = Writer(WriterConfig(output=path, chunk_rows=CHUNK_VIDEOS * PER_VIDEO, optimize=False, writers=writers),
               run_id=RUN, dim=DIM)
    w.keep_visible(set(w.indexed().column("video_id").to_pylist()))  # as the runner (an empty output: none)
    pooled = None
    if writers > 1:
        from jobs.write_tasks import RayTasks
        from xclip_store.pooled import use_pool

        pooled = use_pool(w, RayTasks())
        if max_batch:
            pooled.pool.cfg = dataclasses.replace(pooled.pool.cfg, max_batch=max_batch)
    times: dict[str, list[float]] = {"segments": [], "videos": []}
    real = w.commit_staged

    def timed(name, *a, **k):
        t0 = time.perf_counter()
        real(name, *a, **k)
        times.setdefault(name, []).append(time.perf_counter() - t0)

    w.commit_staged = timed  # the pool's committer and the driver path both call it through the instance
    t0 = time.perf_counter()
    for i in range(chunks):
        chunk = retag(templates[i % len(templates)], i * CHUNK_VIDEOS)
        w.add("segments", chunk)  # a full chunk: staged (or submitted) now
        w.add("videos", video_rows(chunk, STATUS_OK))  # a videos chunk every 4,096 videos, and at flush
    w.flush()  # drains the pool
    wall = time.perf_counter() - t0
    rows = chunks * CHUNK_VIDEOS * PER_VIDEO
    got = lance.dataset(w.uri("segments")).count_rows()
    ok = lance.dataset(w.uri("videos")).count_rows(f"status = '{STATUS_OK}'")
    assert (got, ok) == (rows, chunks * CHUNK_VIDEOS), (got, rows, ok)
    seg = times["segments"]
    cfg = pooled.pool.cfg if pooled else None
    return {"writers": writers, "max_batch": cfg.batch_limit if cfg else 1,
            "commits": sum(len(v) for v in times.values()), "rows": rows,
            "wall_s": round(wall, 2), "commit_s": round(sum(map(sum, times.values())), 2),
            "segments_per_s": round(rows / wall), "max_in_flight": cfg.in_flight_limit if cfg else 1,
            "commit_s_first_10_median": round(float(np.median(seg[:10])), 3),
            "commit_s_last_10_median": round(float(np.median(seg[-10:])), 3),
            "videos_commits_s": [round(x, 3) for x in times["videos"]],
            "parquet_files": len(w.parquet_files), **({"pool": pooled.stats()} if pooled else {})}


def run_today(path: str, chunks: int, templates: list[pa.Table]) -> dict:
    import pyarrow.parquet as pq

    tbls = new_output(path)
    os.makedirs(os.path.join(path, "parquet", "segments"), exist_ok=True)
    finals = []
    t0 = time.perf_counter()
    for i in range(chunks):
        chunk = retag(templates[i % len(templates)], i * CHUNK_VIDEOS)
        pq.write_table(chunk, os.path.join(path, "parquet", "segments", f"{RUN}-{i:05d}.parquet"), compression="zstd")
        (tbls["videos"].merge_insert("video_id").when_matched_update_all().when_not_matched_insert_all()
         .execute(video_rows(chunk, STATUS_INDEXING), on_bad_vectors="null"))
        vids = chunk.column("video_id").unique().to_pylist()
        (tbls["segments"].merge_insert("segment_id").when_matched_update_all().when_not_matched_insert_all()
         .when_not_matched_by_source_delete(f"video_id IN ({sql_list(vids)})").execute(chunk, on_bad_vectors="null"))
        finals.append(video_rows(chunk, STATUS_OK))
    (tbls["videos"].merge_insert("video_id").when_matched_update_all().when_not_matched_insert_all()
     .execute(pa.concat_tables(finals), on_bad_vectors="null"))
    wall = time.perf_counter() - t0
    rows = chunks * CHUNK_VIDEOS * PER_VIDEO
    assert tbls["segments"].count_rows() == rows
    return {"writers": "today (jobs/writer.py path, in the driver)", "rows": rows, "wall_s": round(wall, 2),
            "segments_per_s": round(rows / wall)}


def run_ray_data(path: str, chunks: int, templates: list[pa.Table]) -> dict:
    import lance
    import ray

    tbls = new_output(path)
    uri = os.path.join(path, "lancedb", "segments.lance")
    refs = [ray.put(retag(templates[i % len(templates)], i * CHUNK_VIDEOS)) for i in range(chunks)]
    ds = ray.data.from_arrow_refs(refs)
    v0 = lance.dataset(uri).version
    t0 = time.perf_counter()
    try:
        ds.write_lance(uri, mode="append")
    except Exception as e:  # noqa: BLE001 (the question is whether it works here)
        return {"writers": "ray data write_lance", "error": f"{type(e).__name__}: {str(e)[:300]}"}
    wall = time.perf_counter() - t0
    rows = chunks * CHUNK_VIDEOS * PER_VIDEO
    ds_l = lance.dataset(uri)
    tbls["segments"].checkout_latest()
    return {"writers": "ray data write_lance (append, no Parquet)", "rows": rows, "wall_s": round(wall, 2),
            "segments_per_s": round(rows / wall), "rows_after": ds_l.count_rows(),
            "lance_commits": ds_l.version - v0, "lancedb_rows": tbls["segments"].count_rows()}


def _warm() -> int:
    import lance  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import xclip_store.write_pool  # noqa: F401
    return 0


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--segments", type=int, default=200_000)
    p.add_argument("--writers", default="1,4", help="writer counts; 4b8: 4 writers, up to 8 chunks a commit (4: as the job)")
    p.add_argument("--today", action="store_true")
    p.add_argument("--ray-data", action="store_true")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import ray

    work = args.workdir or tempfile.mkdtemp(prefix="xclip-write-pool-")
    chunks = max(1, args.segments // (CHUNK_VIDEOS * PER_VIDEO))
    templates = [segments_rows(10**9 + t * CHUNK_VIDEOS, CHUNK_VIDEOS, run_id=RUN, seed=t) for t in range(TEMPLATES)]
    writers = [tuple(int(x) for x in (w.split("b") + ["0"])[:2]) for w in args.writers.split(",")]
    cpus = max([*(w for w, _ in writers), os.cpu_count() or 1])
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    # start the workers and do their first imports before timing
    ray.get([ray.remote(_warm).options(num_cpus=1).remote() for _ in range(cpus)])
    summary = {"cpu_count": os.cpu_count(), "ray_logical_cpus": cpus, "chunks": chunks,
               "chunk_rows": CHUNK_VIDEOS * PER_VIDEO, "dim": DIM, "runs": []}
    try:
        plan = [("pool", w) for w in writers] + ([("today", 0)] if args.today else []) + \
            ([("ray_data", 0)] if args.ray_data else [])
        for i, (kind, w) in enumerate(plan):
            load = os.getloadavg()[0]
            path = os.path.join(work, f"out{i}")
            res = (run_pool(path, chunks, templates, *w) if kind == "pool" else
                   run_today(path, chunks, templates) if kind == "today" else run_ray_data(path, chunks, templates))
            res["load_before"], res["load_after"] = round(load, 1), round(os.getloadavg()[0], 1)
            summary["runs"].append(res)
            print(json.dumps(res), flush=True)
    finally:
        ray.shutdown()
    base = next((r for r in summary["runs"] if r.get("writers") == 1 and r.get("max_batch") == 1), None)
    for r in summary["runs"]:
        if base and "segments_per_s" in r:
            r["vs_1_writer"] = round(r["segments_per_s"] / base["segments_per_s"], 2)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
