"""Text-search latency and recall on synthetic segment tables (LanceDB, local disk).

For each vector set (``random``: uniform on the sphere; ``clustered``: a mixture of Gaussian centres,
rows/250 of them) of ``--rows`` 512-d unit vectors:
  * brute force: LanceDB flat search (no vector index)
  * each ANN kind (``xclip_search.indexes.vector_index_config``: IVF_PQ, IVF_HNSW_SQ): build time,
    size on disk, then for each (nprobes, refine_factor) setting the latency p50/p95 and recall@10
    against exact numpy brute force.
Query encoding is timed on its own (p50/p95 of tokenising + ``encode_text`` with the text tower
of a random ``base-patch32``-shaped checkpoint: X-CLIP B/32 sizes, 12 layers, 512 wide; loaded
once, CPU, ``xclip_core.checkpoint.write_random_checkpoint``); a text query costs that plus the
search latency in the table. A random model's text features are random directions, so the
searched vectors are perturbed data points (queries that match some content): recall is then
measured on vectors an ANN index can be judged by.

Usage: python bench/query.py [--rows 1000000] [--queries 100] [--sets random clustered]
                             [--kinds ivf_pq ivf_hnsw_sq] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 512
SETTINGS = [(20, 1), (20, 10), (50, 10), (100, 20)]  # (nprobes, refine_factor)


def make_vectors(kind: str, rows: int, rng) -> np.ndarray:
    if kind == "random":
        x = rng.standard_normal((rows, DIM), dtype=np.float32)
    else:
        centres = rng.standard_normal((max(1, rows // 250), DIM), dtype=np.float32)
        x = centres[rng.integers(0, len(centres), rows)]
        x += 0.6 * rng.standard_normal((rows, DIM), dtype=np.float32)  # noise norm ~0.6x the centre's
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def write_table(db, name: str, x: np.ndarray):
    import pyarrow as pa

    from schemas.output import vectors

    def batches(step=50_000):
        for i in range(0, len(x), step):
            n = min(step, len(x) - i)
            yield pa.record_batch({"segment_id": pa.array([f"s{j:08d}" for j in range(i, i + n)]),
                                   "embedding": vectors(x[i:i + n], DIM)})

    schema = pa.schema({"segment_id": pa.string(), "embedding": pa.list_(pa.float32(), DIM)})
    return db.create_table(name, batches(), schema=schema, mode="overwrite")


def dir_size(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def run_queries(tbl, queries, truth, nprobes=None, refine=None):
    lat, recall = [], []
    for q, want in zip(queries, truth):
        t0 = time.perf_counter()
        s = tbl.search(q, vector_column_name="embedding").distance_type("cosine")
        if nprobes:
            s = s.nprobes(nprobes)
        if refine and refine > 1:
            s = s.refine_factor(refine)
        got = s.limit(10).select(["segment_id"]).to_arrow().column("segment_id").to_pylist()
        lat.append((time.perf_counter() - t0) * 1000)
        recall.append(len(set(got) & want) / 10)
    return np.percentile(lat, 50), np.percentile(lat, 95), float(np.mean(recall))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--sets", nargs="+", default=["clustered", "random"])
    ap.add_argument("--kinds", nargs="+", default=["ivf_pq", "ivf_hnsw_sq"])
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()

    import lancedb
    import torch

    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.model import XCLIP
    from xclip_core.tokenizer import CLIPTokenizer
    from xclip_search.indexes import vector_index_config

    torch.set_num_threads(1)  # one query at a time on a shared machine
    work = args.workdir or tempfile.mkdtemp(prefix="bench-query-")
    ckpt = write_random_checkpoint(Path(work) / "base-patch32", preset="base-patch32")
    model, tok = XCLIP.from_pretrained(ckpt).eval(), CLIPTokenizer.from_pretrained(ckpt)

    def encode(text):
        enc = tok([text])
        with torch.inference_mode():
            return torch.nn.functional.normalize(model.encode_text(enc["input_ids"], enc["attention_mask"]), dim=-1)

    words = ["a dog", "jumping", "into a lake", "a person", "riding a bike", "cooking", "at night", "on a beach"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 4)) for _ in range(args.queries)]
    lat = []
    for t in texts[:30]:
        t0 = time.perf_counter()
        encode(t)
        lat.append((time.perf_counter() - t0) * 1000)
    print(f"query encoding (random base-patch32 text tower, CPU, {torch.get_num_threads()} threads): "
          f"p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms", flush=True)
    db_dir = os.path.join(work, "lancedb")
    db = lancedb.connect(db_dir)
    print(f"rows={args.rows} dim={DIM} queries={args.queries}")
    print("| set | index | build s | index MiB | nprobes | refine | search p50 ms | search p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for set_name in args.sets:
        x = make_vectors(set_name, args.rows, rng)
        qi = rng.choice(args.rows, args.queries, replace=False)
        queries = x[qi] + 0.3 / np.sqrt(DIM) * rng.standard_normal((args.queries, DIM), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth = []
        for q in queries:
            top = np.argpartition(-(x @ q), 10)[:10]
            truth.append({f"s{j:08d}" for j in top})
        tbl = write_table(db, set_name, x)
        p50, p95, rec = run_queries(tbl, queries, truth)
        print(f"| {set_name} | none (flat) | - | - | - | - | {p50:.1f} | {p95:.1f} | {rec:.3f} |", flush=True)
        for kind in args.kinds:
            before = dir_size(os.path.join(db_dir, f"{set_name}.lance"))
            t0 = time.perf_counter()
            tbl.create_index("embedding", config=vector_index_config(args.rows, DIM, kind=kind), replace=True)
            build = time.perf_counter() - t0
            size = (dir_size(os.path.join(db_dir, f"{set_name}.lance")) - before) / 2**20
            for nprobes, refine in SETTINGS:
                p50, p95, rec = run_queries(tbl, queries, truth, nprobes, refine)
                print(f"| {set_name} | {kind} | {build:.1f} | {size:.1f} | {nprobes} | {refine} | {p50:.1f} | "
                      f"{p95:.1f} | {rec:.3f} |", flush=True)
        db.drop_table(set_name)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
