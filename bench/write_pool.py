"""Write throughput of ``xclip_store.write_pool`` with 1 and N writer processes (issue 16, items 2 and 5).

    nice -n 19 python bench/write_pool.py --segments 200000 --writers 1,4 [--today] [--ray-data] \
        [--out bench/write_pool.json]

Rows: the real ``segments`` schema (512-d, 64 segments per video; ``bench/scale.py``'s
``segments_rows``), in 4,096-row chunks (64 new videos each). A few chunks are generated up front
and re-tagged with new video ids per chunk, so generating rows costs almost nothing in the loop.

Each writer count writes every chunk into a fresh output (a ``videos`` and a ``segments`` table,
BTree index on ``video_id``) through ``WritePool``: per chunk its Parquet file and its Lance data
files (``writers = 1``: in this process; N: N Ray tasks, Ray local with max(N, cores) logical CPUs),
and the one committer (this process) commits each chunk in order as the writer will
(``FlatCommitter.commit_segments``: placeholder videos rows for the chunk's new videos, then the
segments, each one Lance commit; ``4b8``: up to 8 written chunks a commit), then one videos chunk
with the final rows. Segments/s = rows ÷
wall time from the first submit to the last commit.

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


def run_pool(path: str, chunks: int, templates: list[pa.Table], writers: int, max_batch: int = 1) -> dict:
    from xclip_store import flat_commit as fc
    from xclip_store.write_pool import WritePool, WritePoolConfig

    new_output(path)
    com = fc.FlatCommitter(os.path.join(path, "lancedb"), commit_message="bench")
    secs = {"commit": 0.0}
    per_chunk = []

    def commit(batch):
        t0 = time.perf_counter()
        staged = [w.staged for w in batch]
        if batch[0].name == "segments":
            com.commit_segments(staged, pa.concat_tables([w.info for w in batch]))
        else:
            fc.commit_replace(com.videos_uri, staged)
        per_chunk.append(time.perf_counter() - t0)
        secs["commit"] += per_chunk[-1]

    cfg = WritePoolConfig(writers=writers, max_batch=max_batch)
    from jobs.write_tasks import RayTasks

    pool = WritePool(path, run_id=RUN, commit=commit, cfg=cfg, executor=RayTasks() if writers > 1 else None)
    finals = []
    t0 = time.perf_counter()
    with pool:
        for i in range(chunks):
            chunk = retag(templates[i % len(templates)], i * CHUNK_VIDEOS)
            pool.submit("segments", chunk, info=video_rows(chunk, STATUS_INDEXING))
            finals.append(video_rows(chunk, STATUS_OK))
        pool.submit("videos", pa.concat_tables(finals), barrier=True)
    wall = time.perf_counter() - t0
    rows = chunks * CHUNK_VIDEOS * PER_VIDEO
    import lance

    got = lance.dataset(com.segments_uri).count_rows()
    assert got == rows, (got, rows)
    return {"writers": writers, "max_batch": max_batch, "commits": pool.commits, "rows": rows,
            "wall_s": round(wall, 2), "commit_s": round(secs["commit"], 2),
            "segments_per_s": round(rows / wall), "max_in_flight": cfg.in_flight_limit,
            "commit_s_first_10_median": round(float(np.median(per_chunk[:10])), 3),
            "commit_s_last_10_median": round(float(np.median(per_chunk[-11:-1])), 3),
            "parquet_files": len(pool.parquet_files)}


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
    p.add_argument("--writers", default="1,4", help="writer counts; 4b8: 4 writers, up to 8 chunks a commit")
    p.add_argument("--today", action="store_true")
    p.add_argument("--ray-data", action="store_true")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import ray

    work = args.workdir or tempfile.mkdtemp(prefix="xclip-write-pool-")
    chunks = max(1, args.segments // (CHUNK_VIDEOS * PER_VIDEO))
    templates = [segments_rows(10**9 + t * CHUNK_VIDEOS, CHUNK_VIDEOS, run_id=RUN, seed=t) for t in range(TEMPLATES)]
    writers = [tuple(int(x) for x in (w.split("b") + ["1"])[:2]) for w in args.writers.split(",")]
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
