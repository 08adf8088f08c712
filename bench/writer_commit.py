"""The writer's per-chunk commit cost over one long run (issue 16, the write path's hot path).

    nice -n 19 python bench/writer_commit.py --chunks 240 [--base-videos 2000] [--rewrite 8] \
        [--dim 32] [--no-indexed] [--out bench/writer_commit.json]

An output holding ``--base-videos`` ok videos (64 segments each, one Lance append per table, then
indexed as ``build-index`` leaves it: BTree on ``video_id``...) gets one run through the real
``xclip_store.writer.Writer`` in this process (``writers = 1``, ``chunk_rows`` 4,096, no
optimize), as ``jobs.runner`` drives it: ``Writer.indexed()`` first (unless ``--no-indexed``),
``keep_visible`` of the ok videos, then ``--chunks`` segments chunks of 64 videos x 64 segments
and their final videos rows (a videos chunk every 4,096 videos). ``--rewrite N``: N of each
chunk's 64 videos are videos the output already holds (a reprocess), the rest are new.

Each ``Writer.commit_staged`` call is timed (segments chunk: placeholder videos rows, side tables
the run does not write, segments; videos chunk: the final rows); the figures are the medians of
the first and last 10 segments chunks, and every videos chunk. ``flat_commit`` index lookups are
counted by wrapping ``flat_commit.lookup_fragments`` (``flat_commit._deletions`` / ``existing``
on older code).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from scale import CHUNK_VIDEOS, PER_VIDEO, segments_rows  # noqa: E402

from schemas import STATUS_OK, videos_schema  # noqa: E402
from schemas.output import from_columns  # noqa: E402

RUN = "bench"


def vid(i: int) -> str:
    return f"{i:040x}"  # as scale.segments_rows numbers them


def video_rows(ids: list[str], dim: int, run_id: str) -> pa.Table:
    n = len(ids)
    return from_columns({
        "video_id": ids, "uri": [f"s3://bench/{v}.mp4" for v in ids], "status": [STATUS_OK] * n,
        "num_segments": [PER_VIDEO] * n, "model_id": ["bench@000000000000"] * n,
        "label_set": ["bench@000000000000"] * n, "run_id": [run_id] * n,
        "indexed_at": pa.array([int(time.time() * 1e6)] * n, pa.timestamp("us", tz="UTC")),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.full(n * dim, 0.1, np.float32)), dim),
    }, videos_schema(dim), n)


def base_output(out: str, n_videos: int, dim: int) -> None:
    """``n_videos`` ok videos by one Lance append per table, then the indexes ``build-index`` makes."""
    import lance
    from lance.fragment import write_fragments

    from jobs.config import WriterConfig
    from tests.jobs_helpers import open_lance_table
    from xclip_store.indexes import ensure_indexes
    from xclip_store.writer import Writer

    Writer(WriterConfig(output=out, optimize=False), run_id="r0", dim=dim).close()  # the empty tables
    seg = pa.concat_tables([segments_rows(i, min(CHUNK_VIDEOS, n_videos - i), run_id="r0", dim=dim)
                            for i in range(0, n_videos, CHUNK_VIDEOS)])
    for name, rows in (("segments", seg), ("videos", video_rows([vid(i) for i in range(n_videos)], dim, "r0"))):
        ds = lance.dataset(os.path.join(out, "lancedb", f"{name}.lance"))
        lance.LanceDataset.commit(ds, lance.LanceOperation.Append(write_fragments(rows, ds)), read_version=ds.version)
        ensure_indexes(open_lance_table(out, name), name, min_vector_rows=10 ** 9)


def count_lookups():
    """Wrap flat_commit's index lookup(s) with a counter (whichever this checkout has)."""
    from xclip_store import flat_commit as fc

    counts = {"lookups": 0}
    for fn in ("lookup_fragments", "_deletions", "existing"):
        real = getattr(fc, fn, None)
        if real is None or (fn != "lookup_fragments" and hasattr(fc, "lookup_fragments")):
            continue

        def wrapped(*a, _real=real, **k):
            counts["lookups"] += 1
            return _real(*a, **k)
        setattr(fc, fn, wrapped)
    return counts


def run(out: str, chunks: int, dim: int, rewrite: int, base: int, indexed: bool) -> dict:
    from jobs.config import WriterConfig
    from xclip_store.writer import Writer

    counts = count_lookups()
    w = Writer(WriterConfig(output=out, chunk_rows=CHUNK_VIDEOS * PER_VIDEO, optimize=False), run_id=RUN, dim=dim)
    if indexed:
        had = w.indexed()
        w.keep_visible(set(had.column("video_id").to_pylist()))
    times = {"segments": [], "videos": []}
    lookups = {"segments": [], "videos": []}
    real = w.commit_staged

    def timed(name, *a, **k):
        n0, t0 = counts["lookups"], time.perf_counter()
        real(name, *a, **k)
        times.setdefault(name, []).append(time.perf_counter() - t0)
        lookups.setdefault(name, []).append(counts["lookups"] - n0)

    w.commit_staged = timed
    templates = [segments_rows(10 ** 9 + t * CHUNK_VIDEOS, CHUNK_VIDEOS, run_id=RUN, dim=dim, seed=t) for t in range(4)]
    t_run = time.perf_counter()
    for c in range(chunks):
        ids = [vid((c * rewrite + j) % base) for j in range(rewrite)] + \
            [vid(10 ** 9 + c * CHUNK_VIDEOS + j) for j in range(CHUNK_VIDEOS - rewrite)]
        chunk = templates[c % len(templates)]
        vcol = pa.array(np.repeat(np.array(ids, object), PER_VIDEO), pa.string())
        seg_ids = pa.array([f"{v}:{i:06d}" for v, i in zip(vcol.to_pylist(), chunk.column("segment_index").to_pylist())])
        chunk = chunk.set_column(0, chunk.schema.field(0), seg_ids).set_column(1, chunk.schema.field(1), vcol)
        w.add("segments", chunk)  # a full chunk: committed now
        w.add("videos", video_rows(ids, dim, RUN))  # a videos chunk every 4,096 videos
    w.flush()
    wall = time.perf_counter() - t_run
    seg, vids = times["segments"], times["videos"]
    med = lambda xs: round(float(np.median(xs)) * 1e3, 1)  # noqa: E731
    return {"chunks": chunks, "base_videos": base, "rewrite_per_chunk": rewrite, "dim": dim, "indexed": indexed,
            "wall_s": round(wall, 1), "segments_commit_ms_first_10": med(seg[:10]),
            "segments_commit_ms_last_10": med(seg[-10:]), "videos_commits_ms": [round(x * 1e3, 1) for x in vids],
            "lookups_per_segments_commit_first_last": [lookups["segments"][0], lookups["segments"][-1]],
            "lookups_per_videos_commit": lookups["videos"], "lancedb_s": round(w.seconds["lancedb"], 2),
            "stage_s": round(w.seconds["stage"] + w.seconds["parquet"], 2)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--chunks", type=int, default=240)
    p.add_argument("--base-videos", type=int, default=2000)
    p.add_argument("--rewrite", type=int, default=0, help="videos of each 64-video chunk the output already holds")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--no-indexed", action="store_true", help="do not call Writer.indexed() first")
    p.add_argument("--workdir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    out = os.path.join(args.workdir or tempfile.mkdtemp(prefix="xclip-writer-commit-"), "out")
    base_output(out, args.base_videos, args.dim)
    load = os.getloadavg()[0]
    res = run(out, args.chunks, args.dim, args.rewrite, args.base_videos, not args.no_indexed)
    res["load_before"], res["load_after"] = round(load, 1), round(os.getloadavg()[0], 1)
    print(json.dumps(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
