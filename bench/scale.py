"""Commit cost of one segments chunk as the table grows, today's writer vs the candidates (issue 16).

    nice -n 19 python bench/scale.py --sizes 100000,300000,1000000 [--reps 3] [--workdir DIR]

Synthetic rows of the real ``segments`` schema (``schemas.segments_schema(512)``: 64 segments per
video, random L2-normalised 512-d embeddings), grown by ``add`` in 100k-row batches (so 100k-row
fragments), scalar BTree indexes on ``segment_id`` and ``video_id`` rebuilt after each growth step.
At each size, one 4,096-row chunk (64 videos × 64 segments) is committed ``--reps`` times by:

  today       merge_insert(segment_id) upsert + when_not_matched_by_source_delete(video_id IN chunk)
              (``jobs/writer.py``)
  del+add     table.delete(video_id IN chunk) through the scalar index, then table.add (2 commits)
  upsert      merge_insert(segment_id) upsert, no delete clause
  flat        ``xclip_store.flat_commit``: write_fragments + ONE Lance commit (Append, or Update with
              deletion vectors of the fragments the index finds)

for two chunks: ``new`` (64 videos not in the table: a night's new videos) and ``replace``
(64 videos already in the table, rewritten: a rerun). Then write throughput with the fragment
path: 4 chunks written by 1 process vs by 4 processes in parallel, one commit. At the largest size,
one night's upkeep for a 1% delta (with scalar indexes and an IVF_PQ vector index): today's
``table.optimize()`` (in a subprocess, stopped after ``--optimize-cap`` s) vs
``flat_commit.optimize_delta``. Prints a JSON summary and writes it to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas import segments_schema
from schemas.sql import sql_list

DIM = 512
PER_VIDEO = 64
CHUNK_VIDEOS = 64  # 64 × 64 = 4,096 rows
LABELS = ["walking", "running", "cooking", "dancing", "swimming"]


def segments_rows(first_video: int, n_videos: int, *, run_id: str = "grow", seed: int = 0,
                  dim: int = DIM) -> pa.Table:
    """``n_videos`` × 64 rows of the real segments schema (videos numbered from ``first_video``)."""
    schema = segments_schema(dim)
    n = n_videos * PER_VIDEO
    rng = np.random.default_rng(seed + first_video)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    vids = [f"{v:040x}" for v in range(first_video, first_video + n_videos)]
    vid_col = np.repeat(np.array(vids, dtype=object), PER_VIDEO)
    idx = np.tile(np.arange(PER_VIDEO, dtype=np.int32), n_videos)
    seg_ids = [f"{v}:{i:06d}" for v, i in zip(vid_col, idx)]
    ts = (idx[:, None] * 2.0 + np.linspace(0, 1.75, 8)[None, :]).reshape(-1)
    labels = pa.ListArray.from_arrays(pa.array(np.arange(0, 5 * n + 1, 5, dtype=np.int32)),
                                      pa.array(LABELS * n))
    scores = pa.ListArray.from_arrays(pa.array(np.arange(0, 5 * n + 1, 5, dtype=np.int32)),
                                      pa.array(rng.random(5 * n, dtype=np.float32)))
    now = pa.scalar(int(time.time() * 1e6), pa.timestamp("us", tz="UTC"))
    cols = {
        "segment_id": pa.array(seg_ids), "video_id": pa.array(vid_col, pa.string()),
        "uri": pa.array([f"s3://bench/{v}.mp4" for v in vid_col]),
        "segment_index": pa.array(idx), "start_s": pa.array(idx * 2.0), "end_s": pa.array(idx * 2.0 + 2.0),
        "frame_timestamps": pa.ListArray.from_arrays(pa.array(np.arange(0, 8 * n + 1, 8, dtype=np.int32)),
                                                     pa.array(ts)),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        "labels": labels, "label_scores": scores,
        "model_id": pa.array(["bench@000000000000"] * n), "label_set": pa.array(["bench@000000000000"] * n),
        "run_id": pa.array([run_id] * n), "indexed_at": pa.array([now.value] * n, pa.timestamp("us", tz="UTC")),
        "label_text": pa.array(["; ".join(LABELS)] * n),
    }
    # columns the bench does not set (e.g. shot_index) are null
    return pa.Table.from_arrays([cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type)
                                 for f in schema], schema=schema)


def vids_of(chunk: pa.Table) -> list[str]:
    return chunk.column("video_id").unique().to_pylist()


# ------------------------------------------------------------------ the candidates
def c_today(tbl, uri, chunk):
    (tbl.merge_insert("segment_id").when_matched_update_all().when_not_matched_insert_all()
     .when_not_matched_by_source_delete(f"video_id IN ({sql_list(vids_of(chunk))})")
     .execute(chunk, on_bad_vectors="null"))


def c_del_add(tbl, uri, chunk):
    tbl.delete(f"video_id IN ({sql_list(vids_of(chunk))})")
    tbl.add(chunk)


def c_upsert(tbl, uri, chunk):
    tbl.merge_insert("segment_id").when_matched_update_all().when_not_matched_insert_all().execute(chunk)


def c_flat(tbl, uri, chunk):
    from xclip_store import flat_commit as fc

    fc.commit_replace(uri, fc.write(uri, chunk))


CANDIDATES = {"today": c_today, "del+add": c_del_add, "upsert": c_upsert, "flat": c_flat}


def _stage(args):
    """Pool worker: write one chunk's data files (no commit)."""
    uri, first, run = args
    from xclip_store import flat_commit as fc

    chunk = segments_rows(first, CHUNK_VIDEOS, run_id=run)
    t0 = time.perf_counter()
    staged = fc.write(uri, chunk)
    return staged, time.perf_counter() - t0


def throughput(uri: str, next_video: int, pool, chunks: int = 4) -> tuple[dict, int]:
    """Segments/s of the fragment path: ``chunks`` chunks written by 1 process or by the pool, 1 commit.
    Row generation happens in the writer and is not counted (each writer times its own write)."""
    from xclip_store import flat_commit as fc

    out = {}
    for label, procs in (("1 writer", 1), (f"{pool._processes} writers", pool._processes)):
        jobs = [(uri, next_video + i * CHUNK_VIDEOS, f"tp{procs}") for i in range(chunks)]
        next_video += chunks * CHUNK_VIDEOS
        if procs == 1:
            res = [_stage(j) for j in jobs]
            write_s = sum(s for _, s in res)
        else:
            res = pool.map(_stage, jobs)
            write_s = max(s for _, s in res) * -(-chunks // procs)  # parallel: the slowest wave(s)
        t0 = time.perf_counter()
        fc.commit_replace(uri, [st for st, _ in res])
        commit_s = time.perf_counter() - t0
        out[label] = {"write_s": round(write_s, 3), "commit_s": round(commit_s, 3),
                      "segments_per_s": round(chunks * CHUNK_VIDEOS * PER_VIDEO / (write_s + commit_s))}
    return out, next_video


def grow(tbl, rows_now: int, target: int, batch_rows: int = 100_000) -> int:
    while target - rows_now >= PER_VIDEO:  # whole videos only
        n = min(batch_rows, target - rows_now) // PER_VIDEO
        tbl.add(segments_rows(rows_now // PER_VIDEO, n))
        rows_now += n * PER_VIDEO
    return rows_now


def index_scalars(tbl) -> float:
    from lancedb.index import BTree

    t0 = time.perf_counter()
    tbl.create_index("segment_id", config=BTree(), replace=True)
    tbl.create_index("video_id", config=BTree(), replace=True)
    return time.perf_counter() - t0


def measure_size(tbl, uri, grown_rows: int, next_video: int, reps: int) -> tuple[dict, int]:
    res = {}
    for scenario in ("new", "replace"):
        times = {k: [] for k in CANDIDATES}
        for rep in range(reps):
            for k, fn in CANDIDATES.items():
                if scenario == "new":
                    first, next_video = next_video, next_video + CHUNK_VIDEOS
                else:  # videos from the grown part (in indexed fragments), a different range each time
                    slot = rep * len(CANDIDATES) + list(CANDIDATES).index(k)
                    first = (slot * 7919 * CHUNK_VIDEOS) % (grown_rows // PER_VIDEO - CHUNK_VIDEOS)
                chunk = segments_rows(first, CHUNK_VIDEOS, run_id=f"r{rep}", seed=1000 + rep)
                t0 = time.perf_counter()
                fn(tbl, uri, chunk)
                times[k].append(time.perf_counter() - t0)
        res[scenario] = {k: round(statistics.median(v), 3) for k, v in times.items()}
        res[scenario + "_all"] = {k: [round(x, 3) for x in v] for k, v in times.items()}
    return res, next_video


def optimize_today(db_dir: str, cap: float) -> float | None:
    """Today's ``table.optimize()`` (jobs/writer.py ``close``) in a subprocess; None past ``cap`` s."""
    code = ("import lancedb,sys,time; t=lancedb.connect(sys.argv[1]).open_table('segments'); "
            "t0=time.perf_counter(); t.optimize(); print(time.perf_counter()-t0)")
    try:
        out = subprocess.run([sys.executable, "-c", code, db_dir], capture_output=True, text=True,
                             timeout=cap, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip().splitlines()[-1])


def night(tbl, uri: str, db_dir: str, next_video: int, cap: float) -> dict:
    """1% delta on the largest table with scalar + vector indexes: today's optimize vs optimize_delta."""
    import lance

    from xclip_store import flat_commit as fc

    out = {}
    ds = lance.dataset(uri)
    t0 = time.perf_counter()  # setup: fold the benchmark's small fragments in, index everything
    ds.optimize.compact_files(target_rows_per_fragment=1_048_576,
                              excluded_fragment_ids=[f.fragment_id for f in ds.get_fragments()
                                                     if f.metadata.physical_rows >= 65_536])
    out["setup_compact_s"] = round(time.perf_counter() - t0, 1)
    tbl.checkout_latest()  # LanceDB's handle does not see commits made through lance
    out["setup_scalar_index_s"] = round(index_scalars(tbl), 1)
    t0 = time.perf_counter()
    lance.dataset(uri).create_index("embedding", "IVF_PQ", num_partitions=64, num_sub_vectors=32,
                                    max_iters=10, sample_rate=64, replace=True)
    out["setup_vector_index_s"] = round(time.perf_counter() - t0, 1)
    rows = lance.dataset(uri).count_rows()
    delta_videos = max(1, rows // 100 // PER_VIDEO)
    for first in range(next_video, next_video + delta_videos, CHUNK_VIDEOS):
        chunk = segments_rows(first, min(CHUNK_VIDEOS, next_video + delta_videos - first), run_id="night")
        fc.commit_replace(uri, fc.write(uri, chunk))
    out["rows_before"], out["delta_rows"] = rows, delta_videos * PER_VIDEO
    v0 = lance.dataset(uri).version
    t0 = time.perf_counter()
    flat = fc.optimize_delta(uri, big_fragment_rows=65_536)
    out["flat_total_s"] = round(time.perf_counter() - t0, 2)
    out["flat"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in flat.items()}
    lance.dataset(uri).checkout_version(v0).restore()  # the same state for today's optimize
    tbl.checkout_latest()
    today = optimize_today(db_dir, cap)
    out["today_s"] = None if today is None else round(today, 2)
    out["today_cap_s"] = cap
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100000,300000,1000000")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--optimize-cap", type=float, default=300.0)
    p.add_argument("--night-at", type=int, default=None,
                   help="run the night's optimize after this size (default: the largest); 0: never")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import lancedb

    from xclip_store import flat_commit as fc

    work = args.workdir or tempfile.mkdtemp(prefix="xclip-scale-")
    db_dir = os.path.join(work, "lancedb")
    db = lancedb.connect(db_dir)
    tbl = db.create_table("segments", schema=segments_schema(DIM), mode="overwrite")
    uri = fc.table_uri(db_dir, "segments")
    grown, next_video = 0, 10**9  # new videos are numbered apart from the grown ones
    summary = {"sizes": {}, "cpu_count": os.cpu_count(), "load_at_start": os.getloadavg()[0]}
    pool = mp.get_context("spawn").Pool(args.writers)
    pool.map(abs, range(args.writers))  # start the workers before timing
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        for size in sizes:
            t0 = time.perf_counter()
            grown = grow(tbl, grown, size)
            grow_s = time.perf_counter() - t0
            idx_s = index_scalars(tbl)
            rows0 = tbl.count_rows()
            res, next_video = measure_size(tbl, uri, grown, next_video, args.reps)
            res["rows_before"], res["grow_s"], res["scalar_index_s"] = rows0, round(grow_s, 1), round(idx_s, 1)
            res["unindexed_after"] = fc.unindexed_rows(__import__("lance").dataset(uri))
            res["throughput"], next_video = throughput(uri, next_video, pool)
            res["load"] = os.getloadavg()[0]
            summary["sizes"][size] = res
            print(json.dumps({size: res}), flush=True)
            if size == (sizes[-1] if args.night_at is None else args.night_at):
                summary["night"] = night(tbl, uri, db_dir, next_video, args.optimize_cap)
                next_video += 10**6
                print(json.dumps({"night": summary["night"]}), flush=True)
    finally:
        pool.close()
        pool.join()
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
