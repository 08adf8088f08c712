"""Decode capacity of one node, no Ray: CPU decoders alone, NVDEC alone, both at once.

On the same videos, side by side, for ``--seconds`` each:
  cpu     ``--processes`` single-threaded CPU decoders (``decode_video``, PyAV), one per core,
          as the job's decode tasks run
  nvdec   ``--decoders`` threads calling ``decode_nvdec`` (frames end on the GPU)
  both    the two at once (the NVDEC threads' demuxing shares the cores with the CPU decoders)
clips/s counts finished videos' clips; ``both / cpu`` is what NVDEC adds to a node. Output: a
table and one JSON line per mode. Needs a CUDA GPU and PyNvVideoCodec for ``nvdec``/``both``.

    python bench/nvdec_node.py /tmp/gpubench/360p --processes 16 --decoders 8 --seconds 20
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xclip_core.video.config import DecodeConfig

CFG = DecodeConfig(num_threads=1)  # 224 px crops, 8 frames per 2 s window: the job's defaults for B/32


def _cpu_one(path: str) -> int:
    from xclip_core.video.decode import decode_video

    return len(decode_video(path, CFG).clips)


def _cpu(paths: list[str], processes: int, stop_at: float, out: dict) -> None:
    """Keep ``processes`` videos in flight until ``stop_at``, then let them finish (no partial work
    is dropped: the rate is finished clips over the time until the last one finished)."""
    clips = videos = 0
    feed = itertools.cycle(paths)
    with mp.get_context("fork").Pool(processes) as pool:
        pending = [pool.apply_async(_cpu_one, (next(feed),)) for _ in range(processes)]
        while pending:
            done = [p for p in pending if p.ready()]
            if not done:
                time.sleep(0.01)
                continue
            for p in done:
                pending.remove(p)
                clips, videos = clips + p.get(), videos + 1
                if time.perf_counter() < stop_at:
                    pending.append(pool.apply_async(_cpu_one, (next(feed),)))
        out["end"] = time.perf_counter()
    out.update(clips=clips, videos=videos)


def _nvdec(paths: list[str], decoders: int, stop_at: float, out: dict) -> None:
    import torch

    from xclip_core.video.nvdec import decode_nvdec

    lock, counts, backends, errors = threading.Lock(), {"clips": 0, "videos": 0}, {}, []
    feed = itertools.cycle(paths)

    def worker():
        try:
            while time.perf_counter() < stop_at:
                with lock:
                    path = next(feed)
                r = decode_nvdec(path, CFG, device="cuda")
                torch.cuda.synchronize()
                with lock:
                    counts["clips"] += len(r.clips)
                    counts["videos"] += 1
                    backends[r.backend] = backends.get(r.backend, 0) + 1
        except BaseException as e:  # noqa: BLE001  re-raised by the caller: a bench must not hide it
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(decoders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    out.update(counts, end=time.perf_counter(), backends=backends)


def _guard(fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001  measure() re-raises it
        args[-1]["error"] = e


def measure(mode: str, paths: list[str], args) -> dict:
    t0 = time.perf_counter()
    stop_at = t0 + args.seconds
    parts = {}
    runs = []
    if mode in ("cpu", "both"):
        parts["cpu"] = {}
        runs.append(threading.Thread(target=_guard, args=(_cpu, paths, args.processes, stop_at, parts["cpu"])))
    if mode in ("nvdec", "both"):
        parts["nvdec"] = {}
        runs.append(threading.Thread(target=_guard, args=(_nvdec, paths, args.decoders, stop_at, parts["nvdec"])))
    for r in runs:
        r.start()
    for r in runs:
        r.join()
    for p in parts.values():
        if "error" in p:
            raise p["error"]
    wall = max(p["end"] for p in parts.values()) - t0
    clips = sum(p["clips"] for p in parts.values())
    return {"mode": mode, "clips_per_s": round(clips / wall, 1), "wall_s": round(wall, 1),
            **{f"{k}_clips": p["clips"] for k, p in parts.items()},
            **({"nvdec_backends": parts["nvdec"]["backends"]} if "nvdec" in parts else {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder")
    ap.add_argument("--processes", type=int, default=mp.cpu_count())
    ap.add_argument("--decoders", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--modes", nargs="+", default=["cpu", "nvdec", "both"])
    args = ap.parse_args()
    paths = sorted(str(p) for p in Path(args.folder).glob("*.mp4"))
    if not paths:
        raise SystemExit(f"no .mp4 under {args.folder}")
    _cpu_one(paths[0])  # warm-up: imports, page cache
    rows = [measure(m, paths, args) for m in args.modes]
    print(f"{args.folder}: {len(paths)} videos, {args.processes} CPU decoders, {args.decoders} NVDEC threads")
    base = next((r["clips_per_s"] for r in rows if r["mode"] == "cpu"), None)
    for r in rows:
        ratio = f"{r['clips_per_s'] / base:.2f}x cpu" if base else ""
        print(f"{r['mode']:>6}: {r['clips_per_s']:8.1f} clips/s  {ratio}")
    for r in rows:
        print(json.dumps({"folder": args.folder, **r}))


if __name__ == "__main__":
    main()
