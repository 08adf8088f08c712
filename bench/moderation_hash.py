"""Frame-hash cost against decode time, side by side on the same videos and frames.

    python bench/moderation_hash.py [--crop 224] [--videos 4] [--seconds 20]

Decodes generated 640x480 H.264 videos with the job's decoder (fixed 2 s windows, 8 frames per
clip, crop ``--crop``), then hashes exactly the frames it produced (``moderation.hashing``).
Prints both times and the ratio hash / decode.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from jobs.config import DecoderConfig
    from jobs.decoder import decode_config
    from moderation.hashing import frame_hashes
    from xclip_core.video import decode_video
    from xclip_core.video.synth import write_video

    ap = argparse.ArgumentParser()
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=20)
    a = ap.parse_args()
    dcfg = decode_config(DecoderConfig.from_settings(max_clips_per_video=None), frames_per_clip=8, crop_size=a.crop,
                         shortest_edge=a.crop)
    decode_s = hash_s = 0.0
    frames = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.videos):
            path = Path(tmp) / f"v{i}.mp4"
            write_video(path, num_frames=30 * a.seconds, width=640, height=480, fps=30)
            t0 = time.perf_counter()
            result = decode_video(str(path), dcfg)
            decode_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            for c in result.clips:
                frame_hashes(c.frames)
            hash_s += time.perf_counter() - t0
            frames += sum(len(c.frames) for c in result.clips)
    print(f"{a.videos} videos x {a.seconds} s (640x480 H.264), crop {a.crop}: {frames} sampled frames; "
          f"decode {decode_s:.2f} s, hash {hash_s:.3f} s ({1e3 * hash_s / max(frames, 1):.2f} ms/frame); "
          f"hash / decode = {hash_s / decode_s:.3f}")
    assert np.isfinite(hash_s)


if __name__ == "__main__":
    main()
