"""Many tiny videos: per-video overhead of the job beyond decode and encode, and a rerun with nothing changed.

    python bench/many.py --videos 100 [--videos 1000 ...] [--num-cpus 2]

For each N: N generated 1 s videos (32x32, 15 fps), the tiny random checkpoint,
one local Ray session (a 4-video warm-up run first, so actor start is not in the
numbers). Prints, per N:
  full      wall seconds of the first run into a fresh output, and per video
  driver    seconds per video in the driver outside decode/encode: listing,
            incremental check, assembly, Parquet + LanceDB commits, optimize
  d+e       decode + encode task-seconds per video (summed over workers)
  rerun     wall seconds of a second run with nothing changed (all unchanged)
Flat per-video numbers from 100 to 1,000 mean the overhead does not grow with N.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DRIVER_STAGES = ("list", "incremental", "delete", "assemble", "write_parquet", "write_lancedb", "optimize")


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--videos", type=int, action="append")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    import ray

    from jobs.runner import index_videos
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    work = Path(args.workdir or tempfile.mkdtemp(prefix="xclip-many-"))
    model = str(write_random_checkpoint(work / "model", preset="tiny", num_frames=4))
    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    opts = {"encoder": {"batch_size": 16}}
    for n in [4] + (args.videos or [100]):
        videos = work / f"videos-{n}"
        for i in range(n):
            path = videos / f"v{i:05d}.mp4"
            if not path.exists():
                write_video(path, num_frames=15, width=32, height=32, fps=15)
        out = str(work / f"out-{n}-{time.time_ns()}")
        t0 = time.perf_counter()
        s = index_videos(str(videos), out, model, **opts)
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = index_videos(str(videos), out, model, **opts)
        rerun = time.perf_counter() - t0
        assert r.counts["unchanged"] == n - s.counts["failed"] - s.counts["skipped"], r.counts
        if n == 4:
            continue  # warm-up
        st = s.stage_seconds
        driver = sum(st.get(k, 0.0) for k in DRIVER_STAGES)
        print(f"N={n}: full {full:.1f}s ({full / n * 1000:.1f} ms/video), driver {driver / n * 1000:.2f} ms/video "
              f"[{', '.join(f'{k} {st.get(k, 0.0):.2f}' for k in DRIVER_STAGES)}], "
              f"d+e {(st['decode'] + st['encode']) / n * 1000:.1f} ms/video, pipeline {st['pipeline']:.1f}s, "
              f"rerun (nothing changed) {rerun:.2f}s [{', '.join(f'{k} {v:.2f}' for k, v in r.stage_seconds.items())}]",
              flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
