"""One night run by the job itself: into an empty output, and into an output of ~1M segments whose
indexes ``build-index`` has just built (issue 16's "Done when": a night's commit at 1M segments costs
about what it costs in an empty index).

    python bench/night.py [--rows 1000000] [--old-tree /path/to/checkout-before-issue-16]

Per tree ("now" = this checkout; "before" = ``--old-tree``, e.g. ``git worktree add /tmp/old b30a7b5``):

1. ``xclip-index run`` of 32 videos (60 s each: 30 two-second segments, 960 in all) into an empty
   output ``small``; its manifest's ``stage_seconds`` (``write_parquet``, ``write_lancedb``,
   ``optimize``) are the empty-index night ... of the first 32 videos;
2. ``small`` copied to ``big``, then ``--rows`` synthetic segments (real ``segments`` schema, 512-d
   random unit vectors, 64 a video, with the model and label set of step 1's rows) appended to
   ``big``'s tables with Lance's fragment API in 1,048,576-row fragments (and their videos rows);
3. ``xclip-index build-index --index big`` (that tree's own index builder, timed);
4. 32 NEW videos land in the input folder; the same night ``xclip-index run`` into ``small`` (32
   unchanged + 32 new) and into ``big`` (the 1M output): its ``stage_seconds`` side by side.

``--again FIRST`` (after a run, this tree only): one more night of 32 new videos, in a folder of
their own, into ``small`` and ``big`` as that run left them (every index now in place).

Every command runs in its own process from the tree under test (``python -m xclip_cli``, PYTHONPATH
= the tree), with the process tree's peak RSS (psutil) and an optional time cap. The checkpoint is a
random tiny X-CLIP with 512-d embeddings (``write_random_checkpoint(projection_dim=512)``): the
writer's cost follows the rows, not the model. Results: ``bench/night.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from relabel_scale import run_measured, segment_rows, video_rows  # noqa: E402

DIM = 512
PER_VIDEO = 64
FRAGMENT_ROWS = 1_048_576


def make_videos(folder: Path, first: int, n: int, *, seconds: int = 60, fps: int = 4) -> None:
    """``n`` synthetic 64x48 videos of ``seconds`` s (different content per index)."""
    from xclip_core.video.synth import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(first, first + n):
        # the frame count makes each video's bytes (so its identity) differ
        write_video(folder / f"v{i:04d}.mp4", num_frames=seconds * fps + i % 3, width=64, height=48, fps=fps)


def cli(argv: list[str], *, tree: Path, log: Path, timeout: float | None = None) -> dict:
    """``xclip-index ARGV`` from ``tree`` in a fresh process (``run_measured``; output to ``log``)."""
    r = run_measured(argv, tree=tree, timeout=timeout, log=log, every_s=0.2)
    return {"rc": r["rc"], "wall_s": round(r["wall_s"], 1), "peak_rss_gib": round(r["peak_rss_bytes"] / 2**30, 2),
            "killed": r["killed"], "load_1m": round(os.getloadavg()[0], 1),
            "tail": r["stderr"][-600:] if r["rc"] else ""}


def measured_night(argv: list[str], out: Path, *, tree: Path, log: Path, timeout: float | None = None) -> dict:
    """``cli`` of one ``run`` into ``out``, with its manifest's stage seconds, counts and table stats."""
    r = cli([*argv, "--output", str(out)], tree=tree, log=log, timeout=timeout)
    if r["rc"] == 0:
        m = latest_manifest(out)
        r["stage_seconds"], r["counts"] = m["stage_seconds"], m.get("counts")
        r["tables"] = {k: v for k, v in (m.get("tables") or {}).items() if k in ("segments", "videos")}
    return r


def latest_manifest(out: Path) -> dict:
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    runs = [r for r in runs if r.get("kind", "run") == "run" and r.get("stage_seconds")]
    return max(runs, key=lambda r: r.get("finished_at") or "")


def grow(out: Path, rows: int) -> float:
    """Append ``rows`` synthetic segments (and their videos rows) to the job-made output ``out``."""
    import lance
    import pyarrow as pa
    import pyarrow.compute as pc
    from lance.fragment import write_fragments

    t0 = time.perf_counter()
    seg_uri, vid_uri = str(out / "lancedb" / "segments.lance"), str(out / "lancedb" / "videos.lance")
    like = lance.dataset(seg_uri).to_table(columns=["model_id", "label_set"], limit=1)
    same = {c: like[c][0].as_py() for c in ("model_id", "label_set")}

    def stamped(t: pa.Table) -> pa.Table:
        for c, v in same.items():
            t = t.set_column(t.schema.get_field_index(c), t.schema.field(c), pa.array([v] * len(t), t.schema.field(c).type))
        return t.set_column(t.schema.get_field_index("run_id"), t.schema.field("run_id"),
                            pa.array(["grow"] * len(t), t.schema.field("run_id").type))

    batch = 65_536
    staged = []
    for first in range(0, rows, batch):
        staged.append(stamped(segment_rows(first, min(batch, rows - first), dim=DIM, per_video=PER_VIDEO)))
        if sum(len(s) for s in staged) >= FRAGMENT_ROWS or first + batch >= rows:
            ds = lance.dataset(seg_uri)
            whole = pa.concat_tables(staged).cast(ds.schema)
            frags = write_fragments(whole, ds, max_rows_per_file=FRAGMENT_ROWS)
            lance.LanceDataset.commit(ds, lance.LanceOperation.Append(frags), read_version=ds.version)
            staged = []
    vids = stamped(video_rows(-(-rows // PER_VIDEO), dim=DIM, per_video=PER_VIDEO))
    rng = np.random.default_rng(1)  # a video row holds its mean embedding: unit vectors, not zeros
    emb = rng.standard_normal((len(vids), DIM), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    i = vids.schema.get_field_index("embedding")
    vids = vids.set_column(i, vids.schema.field(i), pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM))
    ds = lance.dataset(vid_uri)
    vids = vids.cast(ds.schema)
    assert pc.sum(pc.is_in(vids["video_id"], ds.to_table(columns=["video_id"])["video_id"])).as_py() in (0, None)
    frags = write_fragments(vids, ds, max_rows_per_file=FRAGMENT_ROWS)
    lance.LanceDataset.commit(ds, lance.LanceOperation.Append(frags), read_version=ds.version)
    return round(time.perf_counter() - t0, 1)


def night(tree: Path, work: Path, model: Path, videos: Path, rows: int, *, cap_s: float) -> dict:
    small, big = work / "small", work / "big"
    work.mkdir(parents=True, exist_ok=True)
    for p in (small, big):
        shutil.rmtree(p, ignore_errors=True)
    run = ["run", "--model", str(model), "--labels", str(work.parent / "labels.txt"), "--input", str(videos)]
    res: dict = {"tree": str(tree)}
    res["first_night_empty"] = measured_night(run, small, tree=tree, log=work / "first.log", timeout=cap_s)
    if res["first_night_empty"]["rc"]:
        return res
    shutil.copytree(small, big)
    res["grow_s"] = grow(big, rows)
    res["build_index"] = cli(["build-index", "--index", str(big)], tree=tree, log=work / "build.log", timeout=cap_s)
    make_videos(videos, 32, 32)  # the night's new videos
    for name, out in (("night_small", small), ("night_big", big)):
        res[name] = measured_night(run, out, tree=tree, log=work / f"{name}.log", timeout=cap_s)
        print(json.dumps({name: res[name]}), flush=True)
    for f in videos.glob("v*.mp4"):  # back to the first night's 32 for the next tree
        if int(f.stem[1:]) >= 32:
            f.unlink()
    return res


def again(tree: Path, work: Path, model: Path, first: int) -> dict:
    """One more night into the ``small`` and ``big`` outputs ``night`` left (every index in place):
    32 new videos (from index ``first``) in a folder of their own, so nothing else changes."""
    folder = work / f"videos-{first}"
    make_videos(folder, first, 32)
    run = ["run", "--model", str(model), "--labels", str(work.parent / "labels.txt"), "--input", str(folder)]
    return {f"again_{name}": measured_night(run, work / name, tree=tree, log=work / f"again_{name}.log")
            for name in ("small", "big")}


def main(argv=None) -> None:
    from xclip_core.checkpoint import write_random_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", default="/tmp/night_bench")
    ap.add_argument("--old-tree", help="a checkout before issue 16 (e.g. b30a7b5)")
    ap.add_argument("--which", default="now,before")
    ap.add_argument("--cap-s", type=float, default=3600, help="time cap per command")
    ap.add_argument("--out", default=str(ROOT / "bench" / "night.json"))
    ap.add_argument("--again", type=int, metavar="FIRST",
                    help="only: one more night into the outputs a previous run left, with 32 new videos from FIRST")
    args = ap.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model"
    if not (model / "config.json").exists():
        write_random_checkpoint(model, projection_dim=DIM)
    (work / "labels.txt").write_text("\n".join(f"label {i}" for i in range(32)) + "\n")
    doc = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {"runs": []}
    if args.again is not None:
        r = {"which": "now", "again": args.again, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             **again(ROOT, work / "now", model, args.again)}
        doc["runs"].append(r)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(r), flush=True)
        return
    videos = work / "videos"
    shutil.rmtree(videos, ignore_errors=True)
    make_videos(videos, 0, 32)
    for which, tree in (("now", ROOT), ("before", Path(args.old_tree) if args.old_tree else None)):
        if tree is None or which not in args.which.split(","):
            continue
        t0 = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r = {"which": which, "rows": args.rows, "started": t0, **night(tree, work / which, model, videos, args.rows,
                                                                       cap_s=args.cap_s)}
        doc["runs"].append(r)
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
