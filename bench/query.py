"""Text-search latency and recall through the query API, on synthetic 1M-segment indexes.

For each vector set (``clustered``: a mixture of rows/250 Gaussian centres, closer to real
embeddings; ``random``: uniform on the sphere) an index is written as ``xclip-index run`` lays it
out: a run manifest naming a random ``base-patch32``-shaped checkpoint (X-CLIP B/32 text tower:
12 layers, 512 wide), and LanceDB ``segments`` (``schemas.segments_schema(512)``, 100 segments per
video, 3 labels each from kinetics400) and ``videos`` tables. Then, all through
``xclip_search.open_index`` (model loaded once, CPU, torch's default threads):

  * brute force (no index): latency of ``idx.search(text).limit(10).to_list()``;
  * ``build_indexes`` (what ``xclip-index build-index`` runs: IVF_HNSW_SQ, BTree, Bitmap,
    LabelList, FTS): build time and size on disk;
  * recall@10 against exact numpy brute force, for the search defaults and a few
    (nprobes, refine_factor) settings: queries are vectors (``idx.search(vector)``), perturbed data
    points, because a random model's text features are random directions and say nothing of recall;
  * **end-to-end text queries** (``idx.search(text).limit(10).to_list()``: tokenising, encoding,
    ANN search, fetching the hit columns) with the search defaults, queries encoded in fp32 and
    in bf16 (``precision=``; ``auto`` picks bf16 on a CPU with native bf16), and how many of the
    bf16 top-10 are in the fp32 top-10;
  * the first pass of vector queries after opening (index partitions load as they are touched),
    then every setting again (steady state);
  * filtered text queries: ``labels_any``, ``labels_match`` (full text), ``per_video``.

A ``--workdir`` keeps the indexes: a later run with the same workdir reuses them (build once,
measure again on a quiet machine).

Usage: python bench/query.py [--rows 1000000] [--queries 50] [--sets clustered random]
                             [--workdir DIR]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 512
PER_VIDEO = 100
SETTINGS = [(None, None), (20, 1), (30, 4), (50, 10)]  # (nprobes, refine_factor); None: the API's default
WORDS = ["a dog", "jumping", "into a lake", "a person", "riding a bike", "cooking", "at night", "on a beach"]


def make_vectors(kind: str, rows: int, rng) -> np.ndarray:
    if kind == "random":
        x = rng.standard_normal((rows, DIM), dtype=np.float32)
    else:
        centres = rng.standard_normal((max(1, rows // 250), DIM), dtype=np.float32)
        x = centres[rng.integers(0, len(centres), rows)]
        x += 0.6 * rng.standard_normal((rows, DIM), dtype=np.float32)  # noise norm ~0.6x the centre's
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def seg_ids(start: int, n: int) -> list[str]:
    from schemas import segment_id

    return [segment_id(f"{i // PER_VIDEO:040x}", i % PER_VIDEO) for i in range(start, start + n)]


def write_index(uri: Path, x: np.ndarray, ckpt: Path, rng) -> None:
    """An index laid out as ``xclip-index run`` writes it (manifest + LanceDB tables)."""
    import lancedb

    from schemas import segments_schema, videos_schema
    from schemas.output import from_columns, vectors
    from xclip_core.labels import load_labels
    from xclip_core.loading import weights_sha256

    labels = np.asarray(load_labels("kinetics400").labels, dtype=object)
    now = dt.datetime.now(dt.timezone.utc)
    db = lancedb.connect(str(uri / "lancedb"))
    base = {"model_id": "bench", "label_set": "kinetics400", "run_id": "bench", "indexed_at": now}

    def segment_batches(step=50_000):
        for i in range(0, len(x), step):
            n = min(step, len(x) - i)
            idx = np.arange(i, i + n)
            yield from_columns({
                "segment_id": seg_ids(i, n), "video_id": [f"{j // PER_VIDEO:040x}" for j in idx],
                "uri": [f"s3://bench/{j // PER_VIDEO}.mp4" for j in idx], "segment_index": idx % PER_VIDEO,
                "start_s": (idx % PER_VIDEO) * 2.0, "end_s": (idx % PER_VIDEO) * 2.0 + 2.0,
                "embedding": vectors(x[i:i + n], DIM),
                "labels": [list(r) for r in labels[rng.integers(0, len(labels), (n, 3))]],
                "label_scores": [[0.5, 0.3, 0.2]] * n, **{k: [v] * n for k, v in base.items()},
            }, segments_schema(DIM), n).to_batches()[0]

    db.create_table("segments", segment_batches(), schema=segments_schema(DIM), mode="overwrite")
    nv = len(x) // PER_VIDEO
    mean = x[:nv * PER_VIDEO].reshape(nv, PER_VIDEO, DIM).mean(axis=1)
    db.create_table("videos", from_columns({
        "video_id": [f"{j:040x}" for j in range(nv)], "uri": [f"s3://bench/{j}.mp4" for j in range(nv)],
        "status": ["ok"] * nv, "num_segments": [PER_VIDEO] * nv,
        "embedding": vectors(mean / np.linalg.norm(mean, axis=1, keepdims=True), DIM),
        "labels": [list(r) for r in labels[rng.integers(0, len(labels), (nv, 3))]],
        "label_scores": [[0.5, 0.3, 0.2]] * nv, **{k: [v] * nv for k, v in base.items()},
    }, videos_schema(DIM), nv), mode="overwrite")
    (uri / "runs").mkdir(parents=True, exist_ok=True)
    (uri / "runs" / "bench.json").write_text(json.dumps({
        "run_id": "bench", "status": "finished", "finished_at": now.isoformat(), "model_source": str(ckpt),
        "model_id": "bench", "weights_sha256": weights_sha256(ckpt), "config": {}}))


def pct(lat: list[float]) -> str:
    return f"{np.percentile(lat, 50):.1f} | {np.percentile(lat, 95):.1f}"


def timed(fn, args) -> list[float]:
    out = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--flat-queries", type=int, default=5, help="brute-force queries (seconds each at 1M)")
    ap.add_argument("--sets", nargs="+", default=["clustered", "random"])
    ap.add_argument("--workdir", default=None, help="keep (and reuse) the indexes here")
    args = ap.parse_args()

    import torch

    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_search import open_index
    from xclip_store.indexes import build_indexes

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-query-"))
    ckpt = work / "base-patch32"
    if not (ckpt / "config.json").exists():
        write_random_checkpoint(ckpt, preset="base-patch32")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 4)) for _ in range(args.queries)]
    print(f"rows={args.rows} dim={DIM} queries={args.queries} torch threads={torch.get_num_threads()}")
    for set_name in args.sets:
        x = make_vectors(set_name, args.rows, np.random.default_rng(1))
        qrng = np.random.default_rng(2)
        qi = qrng.choice(args.rows, args.queries, replace=False)
        queries = x[qi] + 0.3 / np.sqrt(DIM) * qrng.standard_normal((args.queries, DIM), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        ids = seg_ids(0, args.rows)
        truth = [{ids[j] for j in np.argpartition(-(x @ q), 10)[:10]} for q in queries]
        del ids
        uri = work / f"{set_name}-{args.rows}"
        fresh = not (uri / "runs" / "bench.json").exists()
        if fresh:
            t0 = time.perf_counter()
            write_index(uri, x, ckpt, np.random.default_rng(3))
            print(f"\n### {set_name}: wrote {args.rows} segments in {time.perf_counter() - t0:.0f} s", flush=True)
        del x
        idx, fast = open_index(str(uri), precision="fp32"), open_index(str(uri), precision="bf16")
        print(f"\n### {set_name}\n\n| what | setting | p50 ms | p95 ms | recall@10 |\n|---|---|---|---|---|")
        for name, ix in (("fp32", idx), ("bf16", fast)):
            enc = timed(lambda t: ix.encode_text([t], query=True), texts)
            print(f"| query encoding only ({name}) | - | {pct(enc)} | - |")
        if fresh:
            lat = timed(lambda t: idx.search(t).limit(10).to_list(), texts[:args.flat_queries])
            print(f"| text query, brute force (no index) | - | {pct(lat)} | 1.000 (exact) |", flush=True)
            t0 = time.perf_counter()
            before = dir_mib(uri / "lancedb")
            report = build_indexes(str(uri))
            print(f"| build_indexes | {json.dumps(report['segments']['built'])} | total "
                  f"{time.perf_counter() - t0:.0f} s | +{dir_mib(uri / 'lancedb') - before:.0f} MiB | - |", flush=True)
            idx, fast = open_index(str(uri), precision="fp32"), open_index(str(uri), precision="bf16")  # indexed
        lat = timed(lambda q: idx.search(q).limit(10).to_list(), queries)  # index partitions load as touched
        print(f"| vector query, first pass after open (cold) | defaults | {pct(lat)} | - |", flush=True)
        for nprobes, refine in SETTINGS:
            hits = []

            def run(q):
                s = idx.search(q)
                if nprobes:
                    s = s.nprobes(nprobes).refine_factor(refine)
                hits.append({h["segment_id"] for h in s.limit(10).to_list()})

            lat = timed(run, queries)
            rec = np.mean([len(h & t) / 10 for h, t in zip(hits, truth)])
            name = "defaults" if nprobes is None else f"nprobes {nprobes}, refine {refine}"
            print(f"| vector query (search only) | {name} | {pct(lat)} | {rec:.3f} |", flush=True)
        top = {}
        for name, ix in (("fp32", idx), ("bf16", fast)):
            top[name] = []
            lat = timed(lambda t: top[name].append({h["segment_id"] for h in ix.search(t).limit(10).to_list()}),
                        texts)
            print(f"| **text query, end to end** | defaults, {name} | {pct(lat)} | as above |", flush=True)
        agree = np.mean([len(a & b) / 10 for a, b in zip(top["fp32"], top["bf16"])])
        print(f"| top-10 of bf16 queries in the fp32 top-10 | - | - | - | {agree:.3f} |")
        label = idx.search(texts[0]).limit(1).to_list()[0]["labels"][0]
        word = label.split()[-1]
        for name, fn in [(f"labels_any([{label!r}])", lambda t: idx.search(t).labels_any([label]).limit(10).to_list()),
                         (f"labels_match({word!r})", lambda t: idx.search(t).labels_match(word).limit(10).to_list()),
                         ("per_video()", lambda t: idx.search(t).per_video().limit(10).to_list())]:
            print(f"| text query + {name} | defaults, fp32 | {pct(timed(fn, texts[:20]))} | - |", flush=True)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
