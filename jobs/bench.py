"""Measure the whole job on generated videos: ``python -m jobs.bench [--videos N] [--seconds S]``.

Writes N synthetic videos (PyAV, 320x240, 30 fps) and a random checkpoint
(``--preset demo``: 224 px input, small widths; ``base-patch32``: full size),
runs the job into a fresh local output twice (cold: includes actor start and
model load; warm: same Ray session) and prints both summaries.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jobs.bench")
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--preset", default="demo", choices=("tiny", "demo", "base-patch32"))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray CPUs (default: all)")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)

    import ray

    from jobs.runner import index_videos
    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.video.synth import write_video

    work = args.workdir or tempfile.mkdtemp(prefix="xclip-bench-")
    videos = os.path.join(work, "videos")
    model = write_random_checkpoint(os.path.join(work, f"model-{args.preset}"), preset=args.preset)
    for i in range(args.videos):
        path = os.path.join(videos, f"v{i:04d}.mp4")
        if not os.path.exists(path):
            write_video(path, num_frames=int(args.seconds * 30), width=320, height=240, fps=30)
    ray.init(num_cpus=args.num_cpus, include_dashboard=False)
    for label in ("cold", "warm"):
        out = os.path.join(work, f"out-{label}")
        shutil.rmtree(out, ignore_errors=True)
        s = index_videos([videos], out, str(model), encoder={"batch_size": args.batch_size})
        print(f"== {label}: {args.videos} videos x {args.seconds:.0f} s, preset {args.preset}, "
              f"{ray.cluster_resources().get('CPU')} CPUs\n{s.format()}", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
