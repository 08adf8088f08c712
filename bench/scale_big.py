"""The issue-16 curve to 10M segments: flat commit vs today's writer, and a night's upkeep (issue 16).

    nice -n 19 python bench/scale_big.py --fragments 1,3,10 --night-at 1,10 \\
        --workdir /tmp/xclip-big --out bench/scale_big_issue16.json

``bench/scale.py`` grows its tables with ``add`` (100k-row fragments) and stops near 1M rows. Here
the table is grown through Lance's fragment API in whole 1,048,576-row fragments (the size
LanceDB's compaction aims at), streamed in 65,536-row batches: the process never holds more than
one batch (~140 MB), so 10M x 512-d (~22 GB on disk) fits a 24 GB box. Rows: ``bench/scale.py``'s
``segments_rows`` (the real ``segments`` schema, 64 segments per video, random 512-d vectors).
At each size (after rebuilding the BTree indexes on ``segment_id`` and ``video_id``):

  flat     ``xclip_store.flat_commit`` write + one commit of a 4,096-row chunk, ``--reps`` times,
           ``new`` (64 new videos) and ``replace`` (64 videos in the big indexed fragments)
  today    ``jobs/writer.py``'s ``merge_insert(segment_id)`` + ``when_not_matched_by_source_delete``
           of one chunk, in a child process watched for RSS (stopped past ``--rss-cap-gb``, the
           whole process tree) and time (``--today-timeout``): a measured failure is recorded as
           such, with the RSS it reached
  tput     4 chunks written by 1 process / by ``--writers`` processes, one commit (scale.throughput)

``--night-at``: at those sizes, a night on the table with its BTree indexes and a vector index:
``--night-index pq`` (default) an IVF_PQ index with bench parameters, not ``vector_index_config``'s
(64 partitions, 32 sub-vectors, 64 training rows per partition, 10 k-means iterations: training a
production-size index does not fit this box's time; the upkeep below does not retrain it);
``--night-index hnsw`` what ``build-index`` builds (IVF_HNSW_SQ, ``vector_index_config``). Then
1% new rows committed by the flat path, then ``flat_commit.optimize_delta`` (compaction that
never rewrites a large fragment + ``update_indexes``) vs today's ``table.optimize()`` from the
same version (Lance ``restore``), the latter in a watched child process (``--optimize-timeout``).
``--fragment-rows 1000000`` grows fragments just under LanceDB's 1,048,576-row compaction target,
as the job's own optimize leaves them (the issue's 1M-row output). Afterwards the table is
restored to its state before the
night. Every step's result is appended to ``--out`` as soon as it is measured.
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

import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import CHUNK_VIDEOS, DIM, PER_VIDEO, index_scalars, segments_rows, throughput

from schemas import segments_schema

FRAGMENT_ROWS = 1_048_576
BATCH_VIDEOS = 1024  # 65,536 rows per generated batch
GB = 1024 ** 3

TODAY_CODE = r"""
import json, sys, time
sys.path[:0] = sys.argv[1:3]
import lancedb
from scale import CHUNK_VIDEOS, c_today, segments_rows
tbl = lancedb.connect(sys.argv[3]).open_table("segments")
for spec in json.loads(sys.argv[4]):
    chunk = segments_rows(spec["first"], CHUNK_VIDEOS, run_id="today", seed=spec["seed"])
    t0 = time.perf_counter()
    c_today(tbl, None, chunk)
    print(json.dumps({"scenario": spec["scenario"], "s": round(time.perf_counter() - t0, 3)}), flush=True)
"""

OPTIMIZE_CODE = r"""
import sys, time, lancedb
t = lancedb.connect(sys.argv[1]).open_table("segments")
t0 = time.perf_counter(); t.optimize(); print(round(time.perf_counter() - t0, 2), flush=True)
"""


def watched(argv: list[str], *, rss_cap: float, timeout: float) -> dict:
    """Run ``argv``, polling the process tree's RSS every 0.2 s; kill it past ``rss_cap`` bytes or
    ``timeout`` s. Returns its stdout lines, peak RSS (GB), seconds and how it ended."""
    t0 = time.perf_counter()
    # output to files, not pipes: Lance can log megabytes of warnings, and a full pipe would block it
    out_f, err_f = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(argv, stdout=out_f, stderr=err_f, text=True)
    ps, peak, ended = psutil.Process(proc.pid), 0, None
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
        except psutil.Error:
            rss = 0
        peak = max(peak, rss)
        if rss > rss_cap:
            ended = f"killed: RSS {rss / GB:.1f} GB over the {rss_cap / GB:.0f} GB cap"
        elif time.perf_counter() - t0 > timeout:
            ended = f"killed: still running after {timeout:.0f} s"
        if ended:
            proc.kill()
            break
        time.sleep(0.2)
    proc.wait()
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read(), err_f.read()
    return {"ended": ended or f"exit {proc.returncode}", "peak_rss_gb": round(peak / GB, 2),
            "wall_s": round(time.perf_counter() - t0, 1), "stdout": out.strip().splitlines(),
            "stderr_tail": err.strip().splitlines()[-3:]}


def grow_fragment(uri: str, first_video: int, rows: int = FRAGMENT_ROWS) -> float:
    """One 1,048,576-row fragment, streamed in 65,536-row batches, committed by one Append."""
    import lance
    from lance.fragment import write_fragments

    schema = segments_schema(DIM)
    videos = rows // PER_VIDEO

    def batches():
        for v in range(first_video, first_video + videos, BATCH_VIDEOS):
            yield from segments_rows(v, min(BATCH_VIDEOS, first_video + videos - v)).to_batches()

    t0 = time.perf_counter()
    ds = lance.dataset(uri)
    frags = write_fragments(pa.RecordBatchReader.from_batches(schema, batches()), ds, schema=schema,
                            max_rows_per_file=rows)
    lance.LanceDataset.commit(ds, lance.LanceOperation.Append(frags), read_version=ds.version)
    return time.perf_counter() - t0


def flat_chunks(tbl, uri: str, grown_videos: int, next_video: int, reps: int) -> tuple[dict, int]:
    """Write + commit of one chunk (``_write_commit``: the two apart), ``reps`` times per scenario."""
    from xclip_store import flat_commit as fc

    res = {}
    for scenario in ("new", "replace"):
        times = []
        for rep in range(reps):
            if scenario == "new":
                first, next_video = next_video, next_video + CHUNK_VIDEOS
            else:
                first = ((rep + 1) * 7919 * CHUNK_VIDEOS) % (grown_videos - CHUNK_VIDEOS)
            chunk = segments_rows(first, CHUNK_VIDEOS, run_id=f"f{rep}", seed=2000 + rep)
            t0 = time.perf_counter()
            staged = fc.write(uri, chunk)
            t1 = time.perf_counter()
            fc.commit_replace(uri, staged)
            times.append((round(time.perf_counter() - t0, 3), round(t1 - t0, 3), round(time.perf_counter() - t1, 3)))
        res[scenario] = statistics.median(t[0] for t in times)
        res[scenario + "_all"] = [t[0] for t in times]
        res[scenario + "_write_commit"] = [list(t[1:]) for t in times]
    return res, next_video


def today_chunks(db_dir: str, grown_videos: int, next_video: int, reps: int, args) -> tuple[dict, int]:
    specs = []
    for rep in range(reps):
        specs.append({"scenario": "new", "first": next_video, "seed": 3000 + rep})
        next_video += CHUNK_VIDEOS
        specs.append({"scenario": "replace", "seed": 3000 + rep,
                      "first": ((rep + 5) * 7907 * CHUNK_VIDEOS) % (grown_videos - CHUNK_VIDEOS)})
    here = Path(__file__).resolve()
    run = watched([sys.executable, "-c", TODAY_CODE, str(here.parents[1]), str(here.parent), db_dir,
                   json.dumps(specs)], rss_cap=args.rss_cap_gb * GB, timeout=args.today_timeout)
    done = [json.loads(line) for line in run.pop("stdout") if line.startswith("{")]
    for scenario in ("new", "replace"):
        ts = [d["s"] for d in done if d["scenario"] == scenario]
        run[scenario] = statistics.median(ts) if ts else None
        run[scenario + "_all"] = ts
    return run, next_video


def night(tbl, uri: str, db_dir: str, next_video: int, args) -> dict:
    import lance

    from xclip_store import flat_commit as fc
    from xclip_store.indexes import index_state

    out = {}
    v_start = lance.dataset(uri).version
    ds = lance.dataset(uri)  # setup: the table as after earlier nights: the benchmark's chunks folded in, indexed
    t0 = time.perf_counter()
    ds.optimize.compact_files(excluded_fragment_ids=[f.fragment_id for f in ds.get_fragments()
                                                     if f.metadata.physical_rows >= 65_536])
    out["setup_compact_s"] = round(time.perf_counter() - t0, 1)
    tbl.checkout_latest()
    out["setup_scalar_index_s"] = round(index_scalars(tbl), 1)
    t0 = time.perf_counter()
    if args.night_index == "pq":
        lance.dataset(uri).create_index("embedding", "IVF_PQ", num_partitions=64, num_sub_vectors=32,
                                        max_iters=10, sample_rate=64, replace=True)
    else:  # what build-index builds: IVF_HNSW_SQ, partitions from the row count
        from xclip_store.indexes import vector_index_config

        tbl.checkout_latest()
        cfg = vector_index_config(tbl.count_rows(), DIM)
        tbl.create_index("embedding", config=cfg, replace=True)
        out["vector_index"] = f"IVF_HNSW_SQ, {cfg.num_partitions} partitions"
    out["setup_vector_index_s"] = round(time.perf_counter() - t0, 1)
    rows = lance.dataset(uri).count_rows()
    delta_videos = max(1, rows // 100 // PER_VIDEO)
    t0 = time.perf_counter()
    for first in range(next_video, next_video + delta_videos, CHUNK_VIDEOS):
        chunk = segments_rows(first, min(CHUNK_VIDEOS, next_video + delta_videos - first), run_id="night")
        fc.commit_replace(uri, fc.write(uri, chunk))
    out["delta_commit_s"] = round(time.perf_counter() - t0, 1)
    out["rows_before"], out["delta_rows"] = rows, delta_videos * PER_VIDEO
    v0 = lance.dataset(uri).version
    before = index_state(uri)
    t0 = time.perf_counter()
    flat = fc.optimize_delta(uri, big_fragment_rows=65_536)
    out["flat_total_s"] = round(time.perf_counter() - t0, 2)
    out["flat"] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in flat.items()}
    after = index_state(uri)
    out["base_index_kept"] = {k: before[k]["uuids"][0] in after[k]["uuids"] for k in before}
    out["num_indices"] = {k: [before[k]["num_indices"], after[k]["num_indices"]] for k in before}
    print(json.dumps({"night_flat": out}), flush=True)
    lance.dataset(uri).checkout_version(v0).restore()  # the same state for today's optimize
    run = watched([sys.executable, "-c", OPTIMIZE_CODE, db_dir], rss_cap=args.rss_cap_gb * GB,
                  timeout=args.optimize_timeout)
    lines = run.pop("stdout")
    run["s"] = float(lines[-1]) if lines and run["ended"] == "exit 0" else None
    out["today"] = run
    lance.dataset(uri).checkout_version(v_start).restore()  # back to the grown table, no vector index
    tbl.checkout_latest()
    return out


def record(path: str | None, summary: dict, key: str, value) -> None:
    summary[key] = value
    print(json.dumps({key: value}), flush=True)
    if path:
        Path(path).write_text(json.dumps(summary, indent=1))


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fragments", default="1,3,10", help="sizes, in 1,048,576-row fragments")
    p.add_argument("--night-at", default="1,10")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--today-reps", type=int, default=2)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--night-index", choices=("pq", "hnsw"), default="pq",
                   help="pq: the bench's cheap IVF_PQ; hnsw: build-index's IVF_HNSW_SQ (vector_index_config)")
    p.add_argument("--rss-cap-gb", type=float, default=8.0)
    p.add_argument("--today-timeout", type=float, default=900.0)
    p.add_argument("--optimize-timeout", type=float, default=1200.0)
    p.add_argument("--fragment-rows", type=int, default=FRAGMENT_ROWS, help="smaller for a smoke test")
    p.add_argument("--chunks-only", action="store_true", help="only the flat chunks, on --workdir's table")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import lancedb

    from xclip_store import flat_commit as fc

    work = args.workdir or tempfile.mkdtemp(prefix="xclip-big-")
    db_dir = os.path.join(work, "lancedb")
    if args.chunks_only:  # the flat chunks again on a table an earlier run grew (write and commit apart)
        tbl = lancedb.connect(db_dir).open_table("segments")
        rows = tbl.count_rows()
        res, _ = flat_chunks(tbl, fc.table_uri(db_dir, "segments"), rows // PER_VIDEO // 2, 2 * 10**9, args.reps)
        res["load"] = os.getloadavg()[0]
        print(json.dumps({f"chunks_only_{rows}": res}), flush=True)
        return
    tbl = lancedb.connect(db_dir).create_table("segments", schema=segments_schema(DIM), mode="overwrite")
    uri = fc.table_uri(db_dir, "segments")
    summary = {"cpu_count": os.cpu_count(), "load_at_start": os.getloadavg()[0], "args": vars(args)}
    nights = {int(x) for x in args.night_at.split(",") if x}
    pool = mp.get_context("spawn").Pool(args.writers)
    pool.map(abs, range(args.writers))
    grown, next_video = 0, 10**9
    try:
        for n in (int(x) for x in args.fragments.split(",")):
            grow_s = []
            while grown < n:
                grow_s.append(round(grow_fragment(uri, grown * args.fragment_rows // PER_VIDEO, args.fragment_rows), 1))
                grown += 1
                print(json.dumps({"grown_fragments": grown, "s": grow_s[-1]}), flush=True)
            tbl.checkout_latest()
            res = {"rows_before": tbl.count_rows(), "grow_s": grow_s, "scalar_index_s": round(index_scalars(tbl), 1),
                   "bytes_on_disk": sum(f.stat().st_size for f in Path(uri).rglob("*") if f.is_file())}
            gv = grown * args.fragment_rows // PER_VIDEO
            res["flat"], next_video = flat_chunks(tbl, uri, gv, next_video, args.reps)
            record(args.out, summary, f"{n}M", res)
            res["today"], next_video = today_chunks(db_dir, gv, next_video, args.today_reps, args)
            tbl.checkout_latest()
            res["throughput"], next_video = throughput(uri, next_video, pool)
            res["load"] = os.getloadavg()[0]
            record(args.out, summary, f"{n}M", res)
            if n in nights:
                record(args.out, summary, f"night_{n}M", night(tbl, uri, db_dir, next_video, args))
                next_video += 10**6
    finally:
        pool.close()
        pool.join()


if __name__ == "__main__":
    main()
