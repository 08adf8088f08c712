"""Cost of always storing per-second PDQ: the decode hook, side by side with the same decode
without it, and the ``frame_pdq`` write.

    python bench/moderation_hash.py [--clips DIR] [--reps 5] [--videos 200]

Decode: ``decode_video`` with the job's geometry (crop 224, 8 frames per 2 s window, every
window) on the sample clips of ``bench/blocklist.py`` (``--clips``) and on generated 640x480 and
1280x720 H.264; each video is decoded ``--reps`` times with the hook and ``--reps`` times with
it replaced by a no-op, interleaved; best of each, process CPU time. Write: ``FramePdqSink`` on
``--videos`` synthetic 60 s videos into a fresh local index (seconds per 1000 video-minutes,
bytes on disk per video-second).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


class _NoHash:
    def __init__(self, *a, **k):
        pass

    def offer(self, *a, **k):
        pass

    def result(self):
        return None


def _cpu(fn):
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def decode_cost(paths, reps):
    import xclip_core.video.decode as dec
    from xclip_core.video import DecodeConfig, decode_video

    cfg = DecodeConfig(crop_size=224, shortest_edge=224, frames_per_clip=8, max_clips_per_video=None)
    real = dec.SecondHasher
    for p in paths:
        on, off = [], []
        for _ in range(reps):
            dec.SecondHasher = real
            on.append(_cpu(lambda: decode_video(str(p), cfg)))
            dec.SecondHasher = _NoHash
            off.append(_cpu(lambda: decode_video(str(p), cfg)))
        dec.SecondHasher = real
        r = decode_video(str(p), cfg)
        print(f"| {Path(p).name} | {r.meta.width}x{r.meta.height} | {r.meta.duration_s:.1f} | {min(off):.3f} | "
              f"{min(on):.3f} | {min(on) / min(off):.3f} | {len(r.frame_hashes)} |", flush=True)


def _dark_video(path: Path, seconds: int = 10, fps: int = 30) -> Path:
    """Textured frames at 8% brightness (PDQ quality < 50 on every frame: each second retried)."""
    import av

    from tests.moderation_helpers import rich_frames

    frames = (rich_frames(41, seconds * fps) * 0.08).astype(np.uint8)
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width, s.pix_fmt = frames.shape[1], frames.shape[2], "yuv420p"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def write_cost(n_videos):
    from moderation.store import FramePdqSink
    import pyarrow as pa

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as out:
        sink = FramePdqSink(out, "bench", flush_every=1000)
        rows = []
        for i in range(n_videos):
            h = rng.integers(0, 256, (60, 32), dtype=np.uint8)
            rows.append({"kind": "video", "video_id": f"v{i}", "uri": f"s3://b/v{i}.mp4", "status": "ok",
                         "pdq_times": [float(t) for t in range(60)], "pdq_frame_numbers": list(range(0, 1800, 30)),
                         "pdq_hashes": [bytes(x) for x in h], "pdq_mirror": [bytes(x) for x in h[::-1]],
                         "pdq_quality": [90] * 60})
        from schemas.stream import decoded_schema

        batch = pa.Table.from_pylist(rows, schema=decoded_schema())
        t0 = time.perf_counter()
        sink.add(batch)
        sink.close()
        took = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())
    print(f"frame_pdq write: {n_videos} videos x 60 s in {took:.2f} s ({1000 * took / n_videos:.1f} s per 1000 "
          f"video-minutes); {size / (n_videos * 60):.0f} bytes on disk per video-second")


def main() -> None:
    from xclip_core.video.synth import write_video

    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default=os.path.expanduser("~/.cache/xclip-index-bench/clips"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--videos", type=int, default=200)
    a = ap.parse_args()
    paths = sorted(Path(a.clips).rglob("*.mp4"))
    paths = [p for p in paths if p.parent.name in ("data", "videos") and "muted" not in p.name]
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((640, 480), (1280, 720)):
            paths.append(write_video(Path(tmp) / f"gen{w}x{h}.mp4", num_frames=300, width=w, height=h, fps=30))
        paths.append(_dark_video(Path(tmp) / "dark160x120.mp4"))  # PDQ quality < 50: the hook's worst case
        print("| video | size | seconds | decode CPU s, no hook | with PDQ hook | ratio | hashes |\n|---|---|---|---|---|---|---|")
        decode_cost(paths, a.reps)
    write_cost(a.videos)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
