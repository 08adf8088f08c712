"""Fixture videos for the video tests, written once per session with PyAV."""
from __future__ import annotations

import fractions
import os
from pathlib import Path

import numpy as np

from xclip_core.video.synth import write_audio_only, write_video

GOOD = {
    # name: (file, kwargs)
    "h264_mp4": ("h264.mp4", dict(num_frames=75, width=320, height=240, fps=30)),
    "hevc_mkv": ("hevc.mkv", dict(num_frames=64, width=320, height=240, fps=30, codec="libx265",
                                  options={"x265-params": "log-level=none"})),
    "hevc10_mkv": ("hevc10.mkv", dict(num_frames=40, width=320, height=240, fps=30,
                                      codec="libx265", pix_fmt="yuv420p10le",
                                      options={"x265-params": "log-level=none"})),
    "vp9_webm": ("vp9.webm", dict(num_frames=64, width=320, height=240, fps=30,
                                  codec="libvpx-vp9")),
    "mpeg4_avi": ("mpeg4.avi", dict(num_frames=64, width=320, height=240, fps=25, codec="mpeg4")),
    "portrait": ("portrait.mp4", dict(num_frames=64, width=180, height=320, fps=30)),
    "tiny": ("tiny16.mp4", dict(num_frames=64, width=16, height=16, fps=30)),
    "one_frame": ("one.mp4", dict(num_frames=1, width=64, height=48, fps=30)),
    "long_lowres": ("long.mp4", dict(num_frames=2400, width=64, height=48, fps=30)),
    "faststart": ("faststart.mp4", dict(num_frames=120, width=160, height=120, fps=30,
                                        container_options={"movflags": "faststart"})),
    "short_clip": ("short.mp4", dict(num_frames=12, width=64, height=48, fps=24)),
}

# Variable frame rate: 1 ms time base, frame gaps 20..80 ms (irregular), 90 frames.
VFR_TB = fractions.Fraction(1, 1000)
_rng = np.random.default_rng(7)
VFR_PTS = np.concatenate([[0], np.cumsum(_rng.integers(20, 81, size=89))]).tolist()


def build(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, (fname, kw) in GOOD.items():
        out[name] = write_video(root / fname, **kw)
    out["vfr"] = write_video(root / "vfr.mp4", num_frames=len(VFR_PTS), width=160, height=120,
                             fps=30, pts=VFR_PTS, time_base=VFR_TB)
    # --- broken inputs ---
    (root / "zero.mp4").write_bytes(b"")
    out["zero"] = root / "zero.mp4"
    (root / "random.mp4").write_bytes(np.random.default_rng(1).bytes(20000))
    out["random"] = root / "random.mp4"
    (root / "text.mp4").write_text("this is not a video, just text\n" * 50)
    out["text"] = root / "text.mp4"
    data = out["h264_mp4"].read_bytes()           # moov at the end: cut -> no index
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    out["truncated"] = root / "truncated.mp4"
    data = out["faststart"].read_bytes()          # moov first: cut -> partial read
    (root / "truncated_faststart.mp4").write_bytes(data[: int(len(data) * 0.6)])
    out["truncated_faststart"] = root / "truncated_faststart.mp4"
    out["audio_only"] = write_audio_only(root / "audio_only.m4a", seconds=1.0)
    avi = out["mpeg4_avi"].read_bytes()           # unknown fourcc: no decoder
    assert b"FMP4" in avi
    (root / "unknown_codec.avi").write_bytes(avi.replace(b"FMP4", b"QQQ9"))
    out["unknown_codec"] = root / "unknown_codec.avi"
    garbled = bytearray(out["faststart"].read_bytes())
    rng = np.random.default_rng(3)
    lo = len(garbled) // 3
    for pos in rng.integers(lo, len(garbled) - 100, size=40):
        garbled[pos:pos + 64] = rng.bytes(64)
    (root / "garbled.mp4").write_bytes(bytes(garbled))
    out["garbled"] = root / "garbled.mp4"
    return out


def cached(root: str | os.PathLike) -> dict[str, Path]:
    """Build once per directory (a stamp file marks completion)."""
    root = Path(root)
    stamp = root / ".complete"
    if not stamp.exists():
        build(root)
        stamp.write_text("ok")
    names = {**{k: v[0] for k, v in GOOD.items()}, "vfr": "vfr.mp4", "zero": "zero.mp4",
             "random": "random.mp4", "text": "text.mp4", "truncated": "truncated.mp4",
             "truncated_faststart": "truncated_faststart.mp4", "audio_only": "audio_only.m4a",
             "unknown_codec": "unknown_codec.avi", "garbled": "garbled.mp4"}
    return {k: root / v for k, v in names.items()}
