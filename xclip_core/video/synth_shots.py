"""Synthetic multi-shot videos with known cuts, for tests and demos (no sample clips needed).

Each shot is its own scene: a smooth random texture with its own palette, seen through a camera
that pans (``motion_px`` pixels per frame; large = fast motion) over it, with a small object
moving on top. Consecutive shots differ in content and colour, like a hard cut between scenes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ShotSpec:
    seconds: float
    motion_px: float = 2.0   # camera pan per frame (fast motion: 20+ at 320 px wide)
    seed: int = 0


def _texture(seed: int, width: int, height: int) -> np.ndarray:
    """A smooth colour texture 3x the frame size (room to pan), uint8 [3H, 3W, 3]."""
    rng = np.random.default_rng(seed)
    H, W = 3 * height, 3 * width
    coarse = rng.random((H // 16 + 2, W // 16 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, H)
    xs = np.linspace(0, coarse.shape[1] - 1.001, W)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    c = coarse
    img = (c[y0][:, x0] * (1 - fy) * (1 - fx) + c[y0 + 1][:, x0] * fy * (1 - fx)
           + c[y0][:, x0 + 1] * (1 - fy) * fx + c[y0 + 1][:, x0 + 1] * fy * fx)
    base = rng.random(3) * 0.7 + 0.15            # the shot's own palette
    tint = rng.random(3) * 0.6 + 0.2
    out = np.clip(base + (img - 0.5) * tint * 1.6, 0, 1)
    fine = rng.random((H, W, 1)) * 0.12 - 0.06    # grain, so motion moves detail
    return (np.clip(out + fine, 0, 1) * 255).astype(np.uint8)


def shot_frames(spec: ShotSpec, *, fps: int, width: int, height: int):
    """Frames of one shot (uint8 [H,W,3] RGB)."""
    tex = _texture(spec.seed, width, height)
    rng = np.random.default_rng(spec.seed + 1)
    angle = rng.random() * 2 * np.pi
    n = max(1, round(spec.seconds * fps))
    span_x, span_y = tex.shape[1] - width, tex.shape[0] - height
    for i in range(n):
        # bounce inside the texture so any pan speed stays in range
        px = (width + spec.motion_px * i * np.cos(angle)) % (2 * span_x)
        py = (height + spec.motion_px * i * np.sin(angle)) % (2 * span_y)
        x = int(px if px <= span_x else 2 * span_x - px)
        y = int(py if py <= span_y else 2 * span_y - py)
        frame = tex[y:y + height, x:x + width].copy()
        s = max(4, min(width, height) // 6)
        ox = int((i * 5) % max(1, width - s))
        oy = int((height - s) // 2 + (height // 4) * np.sin(i / 5))
        frame[oy:oy + s, ox:ox + s] = 255 - frame[oy:oy + s, ox:ox + s]
        yield frame


def write_shots(path: str | Path, shots: list[ShotSpec], *, fps: int = 25, width: int = 320,
                height: int = 180, codec: str = "libx264", options: dict | None = None) -> list[float]:
    """Write the shots back to back; returns the true cut times (start of every shot but the first),
    in seconds from the first frame."""
    from xclip_core.video.synth import write_frames

    cuts, n = [], 0

    def frames():
        nonlocal n
        for k, spec in enumerate(shots):
            if k:
                cuts.append(n / fps)
            for f in shot_frames(spec, fps=fps, width=width, height=height):
                n += 1
                yield f

    write_frames(path, frames(), fps=fps, codec=codec, options=options)
    return cuts
