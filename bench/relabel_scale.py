"""Relabel at scale (issue 16 item 3/5): throughput and peak RSS of ``xclip-index relabel`` on
synthetic indexes of 100k and 1M segments (512-d), the streaming relabel (this tree) beside the
relabel before it (commit b30a7b5, run from a ``git worktree``), each in its own process whose whole
tree (driver, Ray's daemons and workers) is sampled with psutil.

    python bench/relabel_scale.py --out bench/relabel_scale.json [--sizes 100000,1000000]
        [--old-tree /tmp/old-tree] [--old-cap-s 1800] [--old-cap-gb 16]

The index: ``segments`` grown with Lance's fragment API (``--fragment-rows`` per fragment), 64
segments per video, random unit embeddings; ``videos`` one ok row per video; a finished run manifest
naming a random checkpoint whose projection dim is the embedding dim. Approximate mode (no
``prompt_features``), built-in ``kinetics400`` labels (400 classes). ``build_index`` is also what
tests/test_xclip_search_relabel_scale.py grows its tables with.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _list(values: list, per_row: int, typ) -> pa.ListArray:
    n = len(values) // per_row
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * per_row + 1, per_row, dtype=np.int32)), pa.array(values, typ))


def segment_rows(first: int, n: int, *, dim: int, per_video: int, seed: int = 0) -> pa.Table:
    """Rows ``first .. first+n`` of a synthetic segments table (``per_video`` segments per video)."""
    from schemas import segments_schema

    schema = segments_schema(dim)
    rng = np.random.default_rng(seed + first)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    rows = np.arange(first, first + n)
    vid = [f"{v:016x}" for v in rows // per_video]
    idx = (rows % per_video).astype(np.int32)
    now = int(time.time() * 1e6)
    cols = {
        "segment_id": pa.array([f"{v}:{i:06d}" for v, i in zip(vid, idx)]), "video_id": pa.array(vid),
        "uri": pa.array([f"s3://bench/{v}.mp4" for v in vid]), "segment_index": pa.array(idx),
        "start_s": pa.array(idx * 2.0), "end_s": pa.array(idx * 2.0 + 2.0),
        "frame_timestamps": _list(np.repeat(idx * 2.0, 2).tolist(), 2, pa.float64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        "labels": _list(["old"] * n, 1, pa.string()), "label_scores": _list([0.5] * n, 1, pa.float32()),
        "model_id": pa.array(["bench"] * n), "label_set": pa.array(["old@000000000000"] * n),
        "run_id": pa.array(["grow"] * n), "indexed_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
        "label_text": pa.array(["old"] * n),
    }
    return pa.Table.from_arrays([cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type)
                                 for f in schema], schema=schema)


def video_rows(n_videos: int, *, dim: int, per_video: int) -> pa.Table:
    from schemas import videos_schema
    from schemas.output import from_columns

    vid = [f"{v:016x}" for v in range(n_videos)]
    now = dt.datetime.now(dt.timezone.utc)
    return from_columns({"video_id": vid, "uri": [f"s3://bench/{v}.mp4" for v in vid], "status": ["ok"] * n_videos,
                         "num_segments": [per_video] * n_videos, "model_id": ["bench"] * n_videos,
                         "label_set": ["old@000000000000"] * n_videos, "labels": [["old"]] * n_videos,
                         "label_scores": [[0.5]] * n_videos, "run_id": ["grow"] * n_videos,
                         "indexed_at": [now] * n_videos,
                         "embedding": np.zeros((n_videos, dim), np.float32).tolist()},
                        videos_schema(dim), n_videos)


def build_index(out: str | Path, n_segments: int, *, model: str, dim: int, per_video: int = 64,
                fragment_rows: int = 50_000, batch_rows: int = 50_000) -> str:
    """A synthetic index at ``out`` (see module doc); returns its URI."""
    import lance
    from lance.fragment import write_fragments

    from xclip_core.loading import weights_sha256

    out = Path(out)
    seg_uri = str(out / "lancedb" / "segments.lance")
    for first in range(0, n_segments, batch_rows):
        t = segment_rows(first, min(batch_rows, n_segments - first), dim=dim, per_video=per_video)
        if first == 0:
            lance.write_dataset(t, seg_uri, max_rows_per_file=fragment_rows)
            continue
        ds = lance.dataset(seg_uri)
        frags = write_fragments(t, ds, max_rows_per_file=fragment_rows)
        lance.LanceDataset.commit(ds, lance.LanceOperation.Append(frags), read_version=ds.version)
    n_videos = -(-n_segments // per_video)
    lance.write_dataset(video_rows(n_videos, dim=dim, per_video=per_video), str(out / "lancedb" / "videos.lance"))
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "runs" / "grow.json").write_text(json.dumps({
        "kind": "run", "run_id": "grow", "status": "finished", "model_source": str(model), "model_id": "bench",
        "weights_sha256": weights_sha256(model), "started_at": "2026-01-01T00:00:00+00:00",
        "config": {"encoder": {"top_k": 5}}, "label_set": {"name": "old", "sha256": "0" * 64, "labels": ["old"]},
        # the rest of a RunManifest (schemas.manifest), so `moderate` reads it too
        "finished_at": "2026-01-01T00:00:01+00:00", "package_version": "bench", "inputs": [], "output": str(out),
        "num_inputs": n_videos, "num_unchanged": 0, "counts": {"ok": n_videos}, "num_segments": n_segments,
        "decode_config": {}, "stage_seconds": {}, "clips_per_s": 0.0, "tables": {}, "parquet_files": []}))
    return str(out)


class TreePeak:
    """Peak RSS (bytes) of process ``pid`` and all its descendants, sampled every ``every_s``."""

    def __init__(self, pid: int, every_s: float = 0.05):
        import psutil

        self.proc, self.every_s, self.peak, self._stop = psutil.Process(pid), every_s, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def run_measured(argv: list[str], *, tree: Path = ROOT, timeout: float | None = None,
                 cap_bytes: int | None = None, env: dict | None = None, log: Path | None = None,
                 every_s: float = 0.05) -> dict:
    """``xclip-index ARGV`` from source tree ``tree`` in a fresh process; its wall time, exit code and
    process-tree peak RSS. With ``cap_bytes`` the tree is killed once it passes the cap. Its stdout
    and stderr go to files (``log`` and ``log``.err, or a temporary folder), never to pipes that
    nobody drains while it runs; the result holds their last 2,000 characters."""
    import psutil

    e = {**os.environ, "PYTHONPATH": str(tree), **(env or {})}
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(log) if log else Path(tmp) / "stdout"
        err_path = out_path.with_name(out_path.name + ".err")
        t0 = time.perf_counter()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "xclip_cli", *argv], cwd=str(tree), env=e,
                                    stdout=out, stderr=err, start_new_session=True)
            peak, killed = TreePeak(proc.pid, every_s), None
            try:
                while proc.poll() is None:
                    if cap_bytes and peak.peak > cap_bytes:
                        killed = f"peak RSS passed the {cap_bytes / 2**30:.0f} GiB cap"
                    elif timeout and time.perf_counter() - t0 > timeout:
                        killed = f"ran past the {timeout:.0f} s cap"
                    if killed:
                        for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
                            try:
                                p.kill()
                            except psutil.Error:
                                pass
                        break
                    time.sleep(0.1)
                proc.wait()
            finally:
                top = peak.stop()
        return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - t0, 2), "peak_rss_bytes": top,
                "killed": killed, "stdout": out_path.read_text()[-2000:], "stderr": err_path.read_text()[-2000:]}


def commit_compare(idx: Path, label: str = "cmp") -> dict:
    """Writing new label columns into every row of ``segments`` two ways (same values): the old
    write path (LanceDB ``merge_insert`` on ``segment_id``, label columns only, every row in memory)
    and ``xclip_store.label_commit`` (per fragment ``rewrite_fragment``, then ONE commit). Seconds."""
    import lancedb

    from xclip_store.label_commit import commit_columns, dataset, merge_staged, rewrite_fragment

    db_uri = str(idx / "lancedb")

    def labels(n: int, tag: str) -> dict:
        labs = pa.array([[tag, "b"]] * n, pa.list_(pa.string()))
        return {"labels": labs, "label_scores": pa.array([[0.5, 0.25]] * n, pa.list_(pa.float32())),
                "label_text": pa.array([f"{tag}; b"] * n), "label_set": pa.array([tag] * n)}

    out = {}
    ds = dataset(db_uri, "segments")
    t0, parts = time.perf_counter(), []
    for frag in ds.get_fragments():
        rows = frag.to_table(columns=["segment_id"], with_row_address=True)
        meta, fields = rewrite_fragment(frag, rows.column("_rowaddr"), pa.table(labels(rows.num_rows, label + "1")))
        parts.append((ds.version, meta, fields))
    out["label_commit_rewrite_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    commit_columns(db_uri, "segments", merge_staged(parts), message=f"bench {label}")
    out["label_commit_commit_s"] = round(time.perf_counter() - t0, 3)
    out["fragments"] = len(parts)
    tbl = lancedb.connect(db_uri).open_table("segments")
    t0 = time.perf_counter()
    keys = tbl.search().select(["segment_id"]).limit(None).to_arrow()
    cols = pa.table({"segment_id": keys.column("segment_id"), **labels(keys.num_rows, label + "2")})
    out["merge_insert_read_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    tbl.merge_insert("segment_id").when_matched_update_all().execute(cols)
    out["merge_insert_s"] = round(time.perf_counter() - t0, 2)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "relabel_scale.json"))
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--work", default="/tmp/relabel_scale")
    ap.add_argument("--old-tree", help="a checkout of the relabel before streaming (e.g. b30a7b5)")
    ap.add_argument("--old-cap-s", type=float, default=1800)
    ap.add_argument("--old-cap-gb", type=float, default=16)
    ap.add_argument("--labels", default="kinetics400")
    ap.add_argument("--fragment-rows", type=int, default=50_000, help="rows per fragment (and per write batch)")
    ap.add_argument("--which", default="streaming,before")
    ap.add_argument("--commit-compare", metavar="INDEX", help="only: commit_compare on an index built here")
    args = ap.parse_args(argv)
    if args.commit_compare:
        r = commit_compare(Path(args.commit_compare))
        doc = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
        doc.setdefault("commit_compare", []).append({"index": args.commit_compare, **r})
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(r))
        return
    from xclip_core.checkpoint import write_random_checkpoint

    work = Path(args.work)
    model = work / f"model-{args.dim}"
    if not (model / "config.json").exists():
        write_random_checkpoint(model, preset="base-patch32" if args.dim == 512 else "tiny")
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else \
        {"dim": args.dim, "labels": args.labels, "cpus": os.cpu_count(), "runs": []}
    for n in (int(s) for s in args.sizes.split(",")):
        for which, tree in (("streaming", ROOT), ("before", Path(args.old_tree) if args.old_tree else None)):
            if tree is None or which not in args.which.split(","):
                continue
            idx = work / f"index-{n}"
            if idx.exists():
                subprocess.run(["rm", "-rf", str(idx)], check=True)
            t0 = time.perf_counter()
            build_index(idx, n, model=str(model), dim=args.dim, fragment_rows=args.fragment_rows,
                        batch_rows=args.fragment_rows)
            build_s = time.perf_counter() - t0
            cap = args.old_cap_gb * 2**30 if which == "before" else None
            r = run_measured(["relabel", "--index", str(idx), "--labels", args.labels], tree=tree,
                             timeout=args.old_cap_s if which == "before" else None, cap_bytes=cap)
            relabels = sorted((idx / "runs").glob("*relabel*.json"), key=lambda p: p.stat().st_mtime)
            seconds = json.loads(relabels[-1].read_text()).get("seconds") if relabels and r["rc"] == 0 else None
            row = {"segments": n, "relabel": which, "fragment_rows": args.fragment_rows,
                   "build_s": round(build_s, 1), "rc": r["rc"], "wall_s": r["wall_s"],
                   "segments_per_s": round(n / r["wall_s"]) if r["rc"] == 0 else None, "phase_s": seconds,
                   "load_avg_1m": round(os.getloadavg()[0], 1),
                   "peak_rss_gib": round(r["peak_rss_bytes"] / 2**30, 2), "killed": r["killed"],
                   "stderr_tail": r["stderr"][-300:] if r["rc"] else ""}
            print(json.dumps(row), flush=True)
            results["runs"].append(row)
            Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
