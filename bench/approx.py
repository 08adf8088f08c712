"""Approximate mode (``DecodeConfig(approximate=True)``) vs exact sampling.

For each video: decode time (process CPU, best of N, num_threads=1), how far
the sampled frames move (frame index error), and how far the clip embeddings
move (cosine similarity of ``encode_video(...).video_embeds``, exact vs
approximate) with random-weight models from
``xclip_core.checkpoint.write_random_checkpoint``: preset "demo" and the
B/32-shaped "base-patch32". For scale, the cosine between neighbouring exact
clips (different 2 s windows) of the same video is printed too.

Usage: python bench/approx.py [--rounds 5] [--presets demo base-patch32] [--extra a.mp4 ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from xclip_core.video import DecodeConfig, decode_video


def best_cpu(fn, rounds):
    best = 9e9
    for _ in range(rounds):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def embeddings(model, pre, clips):
    import torch

    from xclip_core.preprocess import preprocess

    frames = torch.from_numpy(np.stack([c.frames for c in clips]))
    with torch.inference_mode():
        emb = model.encode_video(preprocess(frames, pre)).video_embeds
    return torch.nn.functional.normalize(emb.float(), dim=-1).numpy()


def main() -> None:
    from decode import make_videos  # bench/decode.py

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--presets", nargs="*", default=["demo", "base-patch32"])
    ap.add_argument("--cache", default=os.environ.get("XCLIP_BENCH_CACHE", "/tmp/xclip_bench"))
    ap.add_argument("--extra", nargs="*", default=[])
    args = ap.parse_args()
    videos = {**{k: str(v) for k, v in make_videos(Path(args.cache)).items()},
              **{Path(p).stem: p for p in args.extra}}
    exact_cfg, approx_cfg = DecodeConfig(num_threads=1), DecodeConfig(num_threads=1, approximate=True)

    results = {}
    print(f"decode time, process CPU, best of {args.rounds}, num_threads=1")
    for name, path in videos.items():
        te = best_cpu(lambda: decode_video(path, exact_cfg), args.rounds)
        ta = best_cpu(lambda: decode_video(path, approx_cfg), args.rounds)
        ex, ap_ = decode_video(path, exact_cfg), decode_video(path, approx_cfg)
        d = np.concatenate([a.frame_indices - e.frame_indices for a, e in zip(ap_.clips, ex.clips)])
        dt = np.concatenate([a.timestamps - e.timestamps for a, e in zip(ap_.clips, ex.clips)])
        results[name] = (ex.clips, ap_.clips)
        print(f"  {name}: exact {1e3 * te:.0f} ms, approximate {1e3 * ta:.0f} ms "
              f"(x{te / ta:.2f}); frame index error max {np.abs(d).max()} mean "
              f"{np.abs(d).mean():.2f}; time error max {1e3 * np.abs(dt).max():.0f} ms")

    import torch

    from xclip_core.checkpoint import write_random_checkpoint
    from xclip_core.model import XCLIP
    from xclip_core.preprocess import PreprocessConfig

    torch.manual_seed(0)
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = write_random_checkpoint(Path(tmp) / preset, preset=preset)
            model = XCLIP.from_pretrained(str(ckpt))
            pre = PreprocessConfig.from_pretrained(str(ckpt))
        print(f"\nclip embeddings, random '{preset}' model: cosine(exact, approximate)")
        for name, (ex, apx) in results.items():
            e, a = embeddings(model, pre, ex), embeddings(model, pre, apx)
            cos = (e * a).sum(-1)
            nb = (e[:-1] * e[1:]).sum(-1) if len(e) > 1 else np.array([np.nan])
            print(f"  {name}: min {cos.min():.5f} mean {cos.mean():.5f} over {len(cos)} clips; "
                  f"neighbouring exact clips for scale: mean {np.nanmean(nb):.5f}")


if __name__ == "__main__":
    main()
