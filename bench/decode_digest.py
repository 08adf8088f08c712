"""Decode digests: are the clips the same under another Python / PyAV / FFmpeg?

Generates the test videos (``tests/video_fixtures.py``: good, VFR, broken,
truncated), decodes each with ``xclip_core.video.decode_video`` and writes JSON:
per video its status and reason, per clip its segment index, start/end, frame
indices, timestamps, a sha256 and mean of the frames (with ``--frames``, also
the frames themselves, zlib + base64, for the pixel diff: ~1.7 MB).
The encoders are not deterministic across runs and FFmpeg builds (x264
threads), so compare runs that decode the SAME files: ``--videos DIR``
generates them there once and reuses them (each input's sha256 is recorded;
``--compare`` says when the inputs differ). The default DIR,
``bench/decode_digest_videos`` (840 KB, committed), holds the files the
committed digests were made from. Needs only PyAV + numpy (``xclip_core.video`` imports without torch).

    python bench/decode_digest.py --out bench/decode_digest_py311_av18.json
    python bench/decode_digest.py --frames --out /tmp/a.json   # + pixels
    python bench/decode_digest.py --compare A.json B.json

``--compare`` reports whether statuses, frame indices and timestamps are exactly
equal, which clips' frame digests differ, the max absolute pixel difference
(when both files have ``--frames``), and reasons that differ (FFmpeg's
wording may change between its versions); exit 1 when indices, timestamps or
statuses differ.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import platform
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# a small crop (resize to 36 then centre-crop 32) keeps the embedded frames small; the
# decode path (demux index, skipping, swscale resize + colour conversion) is the full one
GEOMETRY = dict(crop_size=32, shortest_edge=36)


def digest(out: str | None, approximate: bool, with_frames: bool = False, videos_dir: str | None = None) -> dict:
    import av

    import video_fixtures as vf
    from xclip_core.video import DecodeConfig, decode_video

    cfg = DecodeConfig(approximate=approximate, **GEOMETRY)
    videos = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = videos_dir or tmp
        paths = vf.cached(Path(root))
        for name in sorted(paths):
            r = decode_video(str(paths[name]), cfg)
            clips = []
            for c in r.clips:
                frames = np.ascontiguousarray(c.frames)
                clips.append({
                    "segment_index": int(c.segment_index), "start_s": float(c.start_s), "end_s": float(c.end_s),
                    "frame_indices": [int(i) for i in c.frame_indices],
                    "timestamps": [float(t) for t in c.timestamps],
                    "sha256": hashlib.sha256(frames.tobytes()).hexdigest(), "mean": round(float(frames.mean()), 6),
                    "frame_means": [round(float(f.mean()), 4) for f in frames], "shape": list(frames.shape)})
                if with_frames:
                    clips[-1]["frames_zlib_b64"] = base64.b64encode(zlib.compress(frames.tobytes(), 9)).decode()
            videos[name] = {"status": r.status, "reason": (r.reason or "").replace(str(root), "<root>") or None,
                            "input_sha256": hashlib.sha256(paths[name].read_bytes()).hexdigest(),
                            "meta": None if r.meta is None else vars(r.meta), "clips": clips}
    result = {"python": platform.python_version(), "av": av.__version__,
              "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
              "numpy": np.__version__, "decode_config": vars(cfg), "videos": videos}
    if out:
        Path(out).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def _frames(clip: dict) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(clip["frames_zlib_b64"])), np.uint8).reshape(clip["shape"])


def compare(a_path: str, b_path: str) -> int:
    a, b = (json.loads(Path(p).read_text()) for p in (a_path, b_path))
    print(f"A: {a_path}: Python {a['python']}, PyAV {a['av']}, libavcodec {a['ffmpeg']}")
    print(f"B: {b_path}: Python {b['python']}, PyAV {b['av']}, libavcodec {b['ffmpeg']}")
    problems, reasons, pixels, max_diff, n_clips, n_same_digest = [], [], [], None, 0, 0
    for name in sorted(set(a["videos"]) | set(b["videos"])):
        va, vb = a["videos"].get(name), b["videos"].get(name)
        if va is None or vb is None:
            problems.append(f"{name}: only in {'B' if va is None else 'A'}")
            continue
        if va["input_sha256"] != vb["input_sha256"]:
            problems.append(f"{name}: the input files differ (use the same --videos DIR for both runs)")
        if va["status"] != vb["status"]:
            problems.append(f"{name}: status {va['status']} vs {vb['status']}")
        if va["reason"] != vb["reason"]:
            reasons.append(f"{name}: reason {va['reason']!r} vs {vb['reason']!r}")
        if va["meta"] != vb["meta"]:
            problems.append(f"{name}: meta {va['meta']} vs {vb['meta']}")
        if len(va["clips"]) != len(vb["clips"]):
            problems.append(f"{name}: {len(va['clips'])} vs {len(vb['clips'])} clips")
            continue
        for ca, cb in zip(va["clips"], vb["clips"]):
            n_clips += 1
            for key in ("segment_index", "start_s", "end_s", "frame_indices", "timestamps"):
                if ca[key] != cb[key]:
                    problems.append(f"{name} clip {ca['segment_index']}: {key} {ca[key]} vs {cb[key]}")
            n_same_digest += ca["sha256"] == cb["sha256"]
            if ca["sha256"] != cb["sha256"]:
                d = ""
                if "frames_zlib_b64" in ca and "frames_zlib_b64" in cb:
                    diff = int(np.abs(_frames(ca).astype(np.int16) - _frames(cb).astype(np.int16)).max())
                    max_diff, d = max(max_diff or 0, diff), f", max abs diff {diff}"
                pixels.append(f"{name} clip {ca['segment_index']}: frames differ (mean {ca['mean']} vs "
                              f"{cb['mean']}{d})")
            elif "frames_zlib_b64" in ca and "frames_zlib_b64" in cb:
                max_diff = max_diff or 0
    print(f"videos: {len(a['videos'])} vs {len(b['videos'])}; clips compared: {n_clips}")
    print(f"statuses, meta, frame indices, timestamps: {'all equal' if not problems else 'DIFFER'}")
    print(f"frame digests equal: {n_same_digest} of {n_clips} clips; max abs pixel difference: "
          f"{'n/a (run both with --frames)' if max_diff is None else max_diff}")
    for line in problems + pixels + reasons:
        print("  " + line)
    return 1 if problems else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the digest JSON here")
    p.add_argument("--approximate", action="store_true", help="DecodeConfig(approximate=True)")
    p.add_argument("--frames", action="store_true", help="embed the frames (for the max pixel difference)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"))
    p.add_argument("--videos", metavar="DIR", default=str(ROOT / "bench" / "decode_digest_videos"),
                   help="generate the test videos here once and reuse them (default: %(default)s)")
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    r = digest(args.out, args.approximate, args.frames, args.videos)
    n = sum(len(v["clips"]) for v in r["videos"].values())
    print(f"Python {r['python']}, PyAV {r['av']}: {len(r['videos'])} videos, {n} clips"
          + (f" -> {args.out}" if args.out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
